"""CI's services: ``scripts/services.sh`` installs, starts and opens Postgres and Redis on a fresh machine
and only checks a ready one; and under CI (``CI=true``) a test that would skip for want of them fails.

The script runs against stand-ins for apt-get, the Postgres and Redis commands and runuser, which record
their calls and keep the machine's state in files, so nothing is installed or started here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVICES = REPO / "scripts" / "services.sh"
# the script's own tools, and the stand-ins' (mkdir, ln)
TOOLS = ("bash", "find", "cut", "sort", "tail", "ls", "grep", "cat", "mv", "chmod", "chown", "seq", "mkdir", "ln")

# each stand-in appends "name args" to $S/log; $S/state holds what is running, trusted, created
STANDINS = {
    "sleep": "",
    "id": '[ "$1" = -u ] && echo "${FAKE_UID:-0}"',
    "apt-get": '[ "$1" = install ] && for f in "$S"/pkg/*; do ln -sf "$f" "$S/bin/${f##*/}"; done; true',
}
PACKAGES = {
    "pg_ctlcluster": '[[ "$*" == *start* ]] && : > "$S/state/pg_running"; true',
    "pg_createcluster": 'mkdir -p "$S/etc/$1/$2"',
    "pg_isready": '[ -f "$S/state/pg_running" ] || exit 2; [ "$1" = -q ] || echo accepting connections',
    "redis-server": ': > "$S/state/redis_running"',
    "redis-cli": '[ -f "$S/state/redis_running" ] && echo PONG',
    "runuser": (
        'shift 3; if [[ "$*" == *"show hba_file"* ]]; then echo "$S/pg_hba.conf"; '
        'elif [[ "$*" == *pg_reload_conf* ]] && grep -q "^host all postgres 127.0.0.1/32 trust" "$S/pg_hba.conf"; '
        'then : > "$S/state/trusted"; fi'
    ),
    "psql": (
        '[ -f "$S/state/pg_running" ] && [ -f "$S/state/trusted" ] || exit 2\n'
        'case "$*" in *"from pg_database"*) [ -f "$S/state/test_db" ] && echo 1;; '
        '*"create database"*) : > "$S/state/test_db";; *) echo 1;; esac'
    ),
}
HBA = "local all postgres peer\nhost all all 127.0.0.1/32 scram-sha-256\n"


def _machine(root: Path, *, installed: bool) -> Path:
    for folder in ("bin", "pkg", "etc", "lib/15", "state"):
        (root / folder).mkdir(parents=True)
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, f"{tool} is needed to run services.sh"
        (root / "bin" / tool).symlink_to(found)
    for folder, scripts in (("bin", STANDINS), ("pkg", PACKAGES)):
        for name, body in scripts.items():
            path = root / folder / name
            path.write_text(f'#!{shutil.which("bash")}\nS={root}\necho "{name} $*" >> "$S/log"\n{body}\n')
            path.chmod(0o755)
            if installed and folder == "pkg":
                (root / "bin" / name).symlink_to(path)
    (root / "pg_hba.conf").write_text(HBA)
    return root


def _services(root: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": str(root / "bin"), "PG_ETC": str(root / "etc"), "PG_LIB": str(root / "lib"), **env}
    return subprocess.run(
        [str(root / "bin" / "bash"), str(SERVICES)], env=environment, capture_output=True, text=True, timeout=60
    )


def _calls(root: Path) -> list[str]:
    log = root / "log"
    calls = log.read_text().splitlines() if log.is_file() else []
    log.write_text("")
    return calls


def test_services_install_start_and_open_postgres_and_redis_on_a_fresh_machine(tmp_path: Path) -> None:
    root = _machine(tmp_path, installed=False)
    done = _services(root)
    assert done.returncode == 0, done.stderr
    calls = _calls(root)
    assert calls[:2] == ["apt-get update -q", "apt-get install -y -q postgresql redis-server"]
    assert "pg_createcluster 15 main" in calls and "pg_ctlcluster --skip-systemctl-redirect 15 main start" in calls
    assert any(c.startswith("redis-server --daemonize yes --bind 127.0.0.1") for c in calls)
    assert calls[-1] == 'psql -w -h 127.0.0.1 -p 5432 -U postgres -d postgres -Atq -c create database "test"'
    hba = (root / "pg_hba.conf").read_text()
    assert hba.splitlines()[1:3] == ["host all postgres 127.0.0.1/32 trust", "host all postgres ::1/128 trust"]
    assert hba.endswith(HBA), "the machine's own lines stay, after the ones that must match first"

    again = _services(root)  # a ready machine: checked, nothing installed, started or changed
    assert again.returncode == 0, again.stderr
    assert not [c for c in _calls(root) if not c.startswith(("pg_isready", "redis-cli", "psql"))]
    assert (root / "pg_hba.conf").read_text() == hba


def test_services_start_the_newest_cluster_and_refuse_to_open_postgres_unless_root(tmp_path: Path) -> None:
    root = _machine(tmp_path, installed=True)
    for version in ("9.6", "13", "15"):
        (root / "etc" / version / "main").mkdir(parents=True)
    (root / "state" / "redis_running").write_text("")
    done = _services(root, FAKE_UID="1000")
    assert done.returncode == 1
    assert "cannot connect to Postgres as postgres@127.0.0.1:5432 without a password; run this as root" in done.stderr
    calls = _calls(root)
    assert "pg_ctlcluster --skip-systemctl-redirect 15 main start" in calls
    assert not [c for c in calls if c.startswith(("apt-get", "pg_createcluster", "runuser", "redis-server"))]
    assert (root / "pg_hba.conf").read_text() == HBA


UNREACHABLE_SERVICES = """
import pytest

def test_needs_redis():
    pytest.skip("Redis not reachable at redis://127.0.0.1:1: refused")

def test_needs_a_gpu():
    pytest.skip("needs a CUDA device")

def test_needs_postgres(postgres_url):
    pass
"""


@pytest.mark.parametrize(("ci", "expected"), [("", "3 skipped"), ("true", "1 failed, 1 skipped, 1 error")])
def test_under_ci_an_unreachable_postgres_or_redis_fails_the_tests_that_need_it(
    ci: str, expected: str, tmp_path: Path
) -> None:
    (tmp_path / "test_services.py").write_text(UNREACHABLE_SERVICES)
    env = {**os.environ, "CI": ci, "BACKDOOR_AUDIT_TEST_POSTGRES": "postgresql+psycopg2://postgres@127.0.0.1:1/test"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest", "-p",
         "tests.integration.conftest", "--rootdir", str(tmp_path), str(tmp_path / "test_services.py")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.stdout.strip().splitlines()[-1].startswith(expected), done.stdout
    if ci:
        assert "FAILED" in done.stdout and "test_needs_redis - Redis not reachable" in done.stdout
        assert "ERROR" in done.stdout and "test_needs_postgres - Failed: Postgres not reachable" in done.stdout
