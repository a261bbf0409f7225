import os
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app import crud
from app.models import ApiKey, Audit, AuditStatus, ClassResult, Verdict, utcnow


def _audit(session: Session, team_id: uuid.UUID, checkpoint_id: uuid.UUID) -> uuid.UUID:
    checkpoint = crud.get_checkpoint(session=session, team_id=team_id, checkpoint_id=checkpoint_id)
    assert checkpoint is not None
    audit = crud.create_audit(session=session, team_id=team_id, checkpoint=checkpoint, config={})
    session.commit()
    return audit.id


def test_api_keys_are_stored_hashed_and_resolve_to_their_team(session: Session) -> None:
    team = crud.get_or_create_team(session=session, name="red")
    key = crud.create_api_key(session=session, team=team)
    stored = session.scalars(select(ApiKey)).one()
    assert key.startswith("ba_") and len(key) > 40
    assert stored.key_hash != key and key not in stored.key_hash
    assert crud.get_team_for_key(session=session, key=key) == team
    assert crud.get_team_for_key(session=session, key=key + "x") is None
    assert crud.get_or_create_team(session=session, name="red").id == team.id


def test_reads_are_scoped_to_the_team(session: Session, make_checkpoint: Callable[..., uuid.UUID]) -> None:
    red = crud.get_or_create_team(session=session, name="red")
    blue = crud.get_or_create_team(session=session, name="blue")
    session.commit()
    checkpoint_id = make_checkpoint(red.id)
    assert crud.get_checkpoint(session=session, team_id=blue.id, checkpoint_id=checkpoint_id) is None
    assert crud.list_checkpoints(session=session, team_id=blue.id)[1] == 0
    assert crud.list_checkpoints(session=session, team_id=red.id)[1] == 1
    audit_id = _audit(session, red.id, checkpoint_id)
    assert crud.get_audit(session=session, team_id=blue.id, audit_id=audit_id) is None
    assert crud.get_audit(session=session, team_id=red.id, audit_id=audit_id) is not None


def test_class_results_upsert_by_audit_and_class_and_drive_progress(
    session: Session, make_checkpoint: Callable[..., uuid.UUID]
) -> None:
    team = crud.get_or_create_team(session=session, name="red")
    session.commit()
    audit_id = _audit(session, team.id, make_checkpoint(team.id, num_classes=3))
    for rate in (0.1, 0.9):  # the same class twice: a redelivered task
        crud.upsert_class_result(
            session=session, audit_id=audit_id, class_index=1, success_rate=rate, stability=1.0, map_key="k1"
        )
    crud.upsert_class_result(
        session=session, audit_id=audit_id, class_index=2, success_rate=0.5, stability=1.0, map_key="k2"
    )
    session.commit()
    results = crud.list_class_results(session=session, audit_id=audit_id)
    assert [(r.class_index, r.success_rate) for r in results] == [(1, 0.9), (2, 0.5)]
    audit = crud.get_audit_for_worker(session=session, audit_id=audit_id)
    assert audit is not None
    session.refresh(audit)
    assert (audit.progress_done, audit.progress_total) == (2, 3)


def test_fail_never_overwrites_a_finished_audit(session: Session, make_checkpoint: Callable[..., uuid.UUID]) -> None:
    team = crud.get_or_create_team(session=session, name="red")
    session.commit()
    audit_id = _audit(session, team.id, make_checkpoint(team.id))
    crud.complete_audit(
        session=session,
        audit_id=audit_id,
        verdict=Verdict.clean,
        probability=0.1,
        borderline=False,
        suspected_classes=[],
        class_scores={},
    )
    crud.fail_audit(session=session, audit_id=audit_id, error="late failure of a duplicate task")
    session.commit()
    audit = crud.get_audit(session=session, team_id=team.id, audit_id=audit_id)
    assert audit is not None
    session.refresh(audit)
    assert audit.status == AuditStatus.succeeded and audit.error is None
    assert crud.count_audits_by_status(session=session)[AuditStatus.succeeded] == 1


def test_deleting_a_checkpoint_keeps_its_audits_and_reports_shared_bytes(
    session: Session, make_checkpoint: Callable[..., uuid.UUID]
) -> None:
    red = crud.get_or_create_team(session=session, name="red")
    blue = crud.get_or_create_team(session=session, name="blue")
    session.commit()
    red_checkpoint, blue_checkpoint = make_checkpoint(red.id), make_checkpoint(blue.id)  # same bytes, two teams
    audit_id = _audit(session, red.id, red_checkpoint)
    checkpoint = crud.get_checkpoint(session=session, team_id=red.id, checkpoint_id=red_checkpoint)
    assert checkpoint is not None
    assert crud.checkpoint_has_unfinished_audits(session=session, checkpoint_id=red_checkpoint)
    crud.delete_checkpoint(session=session, checkpoint=checkpoint)
    assert crud.checkpoint_bytes_in_use(session=session, sha256="ab" * 32)  # blue still uses the bytes
    session.commit()
    audit = crud.get_audit(session=session, team_id=red.id, audit_id=audit_id)
    assert audit is not None and audit.checkpoint_id is None and audit.checkpoint_sha256 == "ab" * 32
    other = crud.get_checkpoint(session=session, team_id=blue.id, checkpoint_id=blue_checkpoint)
    assert other is not None
    crud.delete_checkpoint(session=session, checkpoint=other)
    assert not crud.checkpoint_bytes_in_use(session=session, sha256="ab" * 32)
    assert crud.lock_checkpoint(session=session, checkpoint_id=blue_checkpoint) is False  # gone: the caller's 404


def test_stalled_audits_are_unfinished_ones_with_nothing_recorded_since_the_cutoff(
    session: Session, make_checkpoint: Callable[..., uuid.UUID]
) -> None:
    team = crud.get_or_create_team(session=session, name="red")
    session.commit()
    checkpoint_id = make_checkpoint(team.id)
    lost, progressing, requeued, finished, fresh = (_audit(session, team.id, checkpoint_id) for _ in range(5))
    hour_ago = utcnow() - timedelta(hours=1)
    session.execute(update(Audit).where(Audit.id != fresh).values(created_at=hour_ago, started_at=hour_ago))
    crud.upsert_class_result(  # a class finished just now: the audit is moving
        session=session, audit_id=progressing, class_index=0, success_rate=1.0, stability=1.0, map_key="k"
    )
    session.execute(update(ClassResult).where(ClassResult.audit_id == lost).values(created_at=hour_ago))
    crud.mark_audit_requeued(session=session, audit_id=requeued)
    crud.fail_audit(session=session, audit_id=finished, error="boom")
    session.commit()
    cutoff = utcnow() - timedelta(minutes=10)
    assert crud.list_stalled_audit_ids(session=session, idle_since=cutoff) == [lost]
    # a class result older than the cutoff does not count as progress
    crud.upsert_class_result(
        session=session, audit_id=lost, class_index=1, success_rate=1.0, stability=1.0, map_key="k"
    )
    session.execute(update(ClassResult).where(ClassResult.audit_id == lost).values(created_at=hour_ago))
    session.commit()
    assert crud.list_stalled_audit_ids(session=session, idle_since=cutoff) == [lost]
    crud.mark_audit_requeued(session=session, audit_id=lost)
    session.commit()
    assert crud.list_stalled_audit_ids(session=session, idle_since=cutoff) == []


def _held_while_another_waits(make_session: Callable[[], Session], sha256: str, other_sha256: str) -> list[str]:
    """Hold the bytes lock of ``sha256`` in one session; try it, and another hash's, from two threads."""
    events: list[str] = []
    holder = make_session()

    def take(name: str, sha: str) -> None:
        with make_session() as session, crud.checkpoint_bytes_lock(session=session, sha256=sha):
            events.append(name)
            session.commit()

    with crud.checkpoint_bytes_lock(session=holder, sha256=sha256):
        same = threading.Thread(target=take, args=("same hash", sha256))
        other = threading.Thread(target=take, args=("other hash", other_sha256))
        same.start()
        other.start()
        other.join(timeout=10)
        same.join(timeout=0.5)
        events.append("holder commits")
        holder.commit()
    same.join(timeout=10)
    holder.close()
    return events


def test_bytes_lock_serialises_one_hash_and_not_others(session: Session) -> None:
    bind = session.get_bind()
    events = _held_while_another_waits(lambda: Session(bind), "ab" * 32, "cd" * 32)
    assert events == ["other hash", "holder commits", "same hash"]


def test_bytes_lock_on_postgres_is_an_advisory_lock_across_connections() -> None:
    """The lock API processes share; needs Postgres (BACKDOOR_AUDIT_TEST_POSTGRES), skipped without it."""
    url = os.environ.get("BACKDOOR_AUDIT_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
    engine = create_engine(url)
    try:
        engine.connect().close()
    except OperationalError as exc:
        pytest.skip(f"Postgres not reachable at {url}: {exc.orig}")
    try:
        events = _held_while_another_waits(lambda: Session(engine), "ab" * 32, "cd" * 32)
    finally:
        engine.dispose()
    assert events == ["other hash", "holder commits", "same hash"]
