"""docker-compose.yml and the Dockerfile, checked statically (no container engine in CI)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


def _stages() -> dict[str, str]:
    """Dockerfile stage name -> its instructions."""
    text = (REPO / "Dockerfile").read_text()
    parts = re.split(r"^FROM .* AS (\w+)$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_compose_has_every_service_wired_in_order() -> None:
    services = _compose()["services"]
    assert {"postgres", "redis", "migrate", "api", "worker"} <= set(services)
    assert "healthcheck" in services["postgres"] and "healthcheck" in services["redis"]
    assert services["migrate"]["command"] == ["backdoor-audit", "migrate"]
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]
    assert "-Q" in services["worker"]["command"] and "gpu" in services["worker"]["command"]
    queues = {services[s]["command"][services[s]["command"].index("-Q") + 1] for s in ("worker", "worker-cpu")}
    assert queues == {"gpu", "cpu"}, "every queue the API sends to needs a consumer"
    assert services["flower"]["profiles"] == ["monitoring"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "worker.celery_app", "beat"]
    assert services["beat"].get("deploy", {}).get("replicas", 1) == 1, "two beats would reap twice"


def test_the_beat_schedules_the_reaper_of_stalled_audits() -> None:
    from app.core.queue import CPU_QUEUE, REAP_STALLED_AUDITS, TASK_ROUTES, make_celery
    from app.core.settings import Settings

    schedule = make_celery(Settings(reap_interval_s=120)).conf.beat_schedule
    assert [entry["task"] for entry in schedule.values()] == [REAP_STALLED_AUDITS]
    assert [entry["schedule"] for entry in schedule.values()] == [120.0]
    assert TASK_ROUTES[REAP_STALLED_AUDITS] == {"queue": CPU_QUEUE}


def test_no_secret_is_baked_in() -> None:
    compose = _compose()
    env = compose["services"]["api"]["environment"]
    assert "${POSTGRES_PASSWORD:?" in env["DATABASE_URL"], "the password must come from the environment"
    assert compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert env["BACKDOOR_AUDIT_ENVIRONMENT"] == "production"  # refuses placeholder passwords at start
    assert "PASSWORD" not in (REPO / "Dockerfile").read_text()


def test_api_image_has_no_torch_and_worker_image_has_cuda_torch() -> None:
    stages = _stages()
    assert {"api", "worker"} <= set(stages)
    api_installs = [line for line in stages["api"].splitlines() if "pip install" in line]
    assert api_installs and not any("torch" in line or "worker" in line for line in api_installs)
    assert "CHECKPOINT_VALIDATION=queue" in stages["api"]
    assert "download.pytorch.org/whl/cu" in stages["worker"] and ".[postgres,worker]" in stages["worker"]
    for target in ("api", "worker"):
        assert "USER audit" in stages[target], f"{target} must not run as root"
