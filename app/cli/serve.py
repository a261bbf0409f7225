"""``backdoor-audit serve``: the whole service in one command, no servers to install.

It migrates the database, makes sure an API key exists, starts ONE Celery worker as a subprocess and
runs the API with uvicorn in this process; Ctrl-C or SIGTERM stops both. With nothing configured it
uses SQLite, a filesystem broker and local storage under the data directory; ``DATABASE_URL``,
``BROKER_URL`` and ``STORAGE_DIR`` point the same command at Postgres, Redis and a shared volume.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading

from app import crud
from app.cli.common import EXIT_ERROR, CommandError
from app.cli.deployment import add_data_dir_argument, database_errors, settings_from_args
from app.core.db import migrate_database, session_scope
from app.core.queue import CPU_QUEUE, GPU_QUEUE, AuditQueue
from app.core.settings import Settings

BOOTSTRAP_TEAM = "default"
BOOTSTRAP_KEY_FILE = "bootstrap-api-key"
WORKER_STOP_GRACE_S = 10.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the API and one worker (embedded mode)",
        description="Run the REST API, the dashboard and one audit worker. Without configuration everything "
        "lives in the data directory (SQLite, a filesystem job queue, local artifacts).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    add_data_dir_argument(parser)
    parser.set_defaults(handler=run)


def ensure_api_key(settings: Settings) -> str | None:
    """With no API key at all, create one for team "default", save it (mode 0600) and return it.

    A fresh install must be usable without reading docs first, but never open: the key is printed
    once and kept in ``<data-dir>/bootstrap-api-key`` for later look-up.
    """
    with session_scope(settings.database_url_resolved) as session:
        if crud.count_api_keys(session=session) > 0:
            return None
        key = crud.create_api_key(session=session, team=crud.get_or_create_team(session=session, name=BOOTSTRAP_TEAM))
    path = settings.data_dir / BOOTSTRAP_KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(key + "\n")
    return key


def requeue_unfinished_audits(settings: Settings, queue: AuditQueue) -> int:
    """Embedded broker only: empty the queues and send every unfinished audit again.

    The filesystem broker cannot redeliver the task of a worker that was killed, so an audit in flight
    at the last shutdown would wait forever. Orchestration computes only the classes still missing, so
    resending is safe, and purging first avoids running twice what was still queued. No worker runs
    yet, so the in-flight progress shares that killed workers left behind are cleared too.
    """
    with queue.celery.connection_for_write() as connection:
        for name in (CPU_QUEUE, GPU_QUEUE):
            connection.default_channel.queue_purge(name)
    with session_scope(settings.database_url_resolved) as session:
        audit_ids = crud.list_unfinished_audit_ids(session=session)
        crud.clear_partial_progress(session=session, audit_ids=audit_ids)
    for audit_id in audit_ids:
        queue.enqueue_audit(audit_id)
    return len(audit_ids)


def worker_command() -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
        "-Q", f"{GPU_QUEUE},{CPU_QUEUE}", "-c", "1", "--loglevel", "INFO",
        # the filesystem broker has no broadcast: skip the cluster chatter that needs one
        "--without-mingle", "--without-gossip", "--without-heartbeat",
    ]  # fmt: skip


def _die_with_parent() -> None:
    """In the worker child: get SIGTERM if serve dies, even by SIGKILL (Linux), instead of living on."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)


def start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    env = dict(os.environ, BACKDOOR_AUDIT_DATA_DIR=str(settings.data_dir))
    # its own session: a terminal's Ctrl-C reaches serve only, which then stops the worker in order
    return subprocess.Popen(worker_command(), env=env, start_new_session=True, preexec_fn=_die_with_parent)


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    """Warm shutdown (finish the current task) for a few seconds, then cold, then kill the whole group.

    An interrupted audit loses only its unfinished class group: results are committed per class.
    """
    for sig in (signal.SIGTERM, signal.SIGQUIT):
        if worker.poll() is not None:
            return
        worker.send_signal(sig)
        try:
            worker.wait(timeout=WORKER_STOP_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from app.main import create_app

    settings = settings_from_args(args)
    # the start-up steps; once running, the API answers a database outage per request (and /readyz)
    with database_errors(settings):
        migrate_database(settings.database_url_resolved)
        key = ensure_api_key(settings)
    if key is not None:
        print(f"created team {BOOTSTRAP_TEAM!r} with API key (also saved in {settings.data_dir / BOOTSTRAP_KEY_FILE}):")
        print(f"  export BACKDOOR_AUDIT_API_KEY={key}")
        print(f"  export BACKDOOR_AUDIT_SERVER=http://{args.host}:{args.port}", flush=True)
    queue = AuditQueue(settings)
    if settings.broker_url is None:
        with database_errors(settings):
            resent = requeue_unfinished_audits(settings, queue)
        if resent:
            print(f"resuming {resent} unfinished audit(s)", flush=True)

    server = uvicorn.Server(uvicorn.Config(create_app(settings, queue), host=args.host, port=args.port))
    worker = start_worker(settings)

    worker_died = threading.Event()

    def watch_worker() -> None:
        # a dead worker means audits would queue forever: stop the API too, loudly
        worker.wait()
        if not server.should_exit:
            worker_died.set()
            print(f"error: the audit worker exited with code {worker.returncode}; stopping", file=sys.stderr)
            server.should_exit = True

    threading.Thread(target=watch_worker, daemon=True).start()
    # uvicorn re-raises the signal that stopped it once it is done; with these (no-op) handlers in place
    # that returns here, so the worker is stopped below instead of the process dying with it running
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    try:
        server.run()
    finally:
        server.should_exit = True
        stop_worker(worker)
    if not server.started:
        raise CommandError(f"the API could not start on {args.host}:{args.port} (is the port in use?)")
    return EXIT_ERROR if worker_died.is_set() else 0
