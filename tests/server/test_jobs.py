"""Job leases: claims are exclusive, expired leases return to the queue, a stale worker cannot finish a job."""

from datetime import datetime, timedelta, timezone

from server.jobs import leases as jobs
from server.jobs.models import Job
from server.lessons.models import Lesson

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=timezone.utc)


def _job(services):
    with services.db.session() as session:
        lesson = Lesson(title="t", created_at=T0, updated_at=T0)
        session.add(lesson)
        session.flush()
        job = jobs.new_job(session, kind="analyse", lesson_id=lesson.id, rendition_id=None, now=T0)
        session.flush()
        return job.id


def _state(services, job_id):
    with services.db.session() as session:
        return session.get(Job, job_id)


def test_only_one_worker_claims_a_job(services):
    job_id = _job(services)
    first = jobs.claim(services.db, job_id, "a", 60, T0)
    assert first is not None and first.attempt == 1
    assert jobs.claim(services.db, job_id, "b", 60, T0) is None


def test_expired_lease_is_requeued_and_stale_worker_cannot_finish(services):
    job_id = _job(services)
    stale = jobs.claim(services.db, job_id, "a", 60, T0)
    assert jobs.reap(services.db, T0 + timedelta(seconds=30), lease_s=60, max_attempts=3).requeue == []
    reaped = jobs.reap(services.db, T0 + timedelta(seconds=61), lease_s=60, max_attempts=3)
    assert reaped.requeue == [job_id]
    fresh = jobs.claim(services.db, job_id, "b", 60, T0 + timedelta(seconds=62))
    assert fresh.attempt == 2
    assert not jobs.renew(services.db, stale, 60, T0 + timedelta(seconds=63))
    with services.db.session() as session:
        assert not jobs.finish(session, stale, T0 + timedelta(seconds=64))
    with services.db.session() as session:
        assert jobs.finish(session, fresh, T0 + timedelta(seconds=65))
    assert _state(services, job_id).state == "done"


def test_renewed_lease_is_not_reaped(services):
    job_id = _job(services)
    c = jobs.claim(services.db, job_id, "a", 60, T0)
    assert jobs.renew(services.db, c, 60, T0 + timedelta(seconds=50), progress=0.4)
    assert jobs.reap(services.db, T0 + timedelta(seconds=100), lease_s=60, max_attempts=3).requeue == []
    assert _state(services, job_id).progress == 0.4


def test_job_that_keeps_killing_workers_fails_with_a_reason(services):
    job_id = _job(services)
    now = T0
    for _ in range(3):
        assert jobs.claim(services.db, job_id, "a", 60, now)
        now += timedelta(seconds=61)
        reaped = jobs.reap(services.db, now, lease_s=60, max_attempts=3)
    assert reaped.gave_up == [job_id]
    job = _state(services, job_id)
    assert job.state == "failed" and job.error["code"] == "worker_died"


def test_queued_job_whose_message_was_lost_is_sent_again(services):
    job_id = _job(services)
    assert jobs.reap(services.db, T0 + timedelta(seconds=10), lease_s=60, max_attempts=3).requeue == []
    assert jobs.reap(services.db, T0 + timedelta(seconds=61), lease_s=60, max_attempts=3).requeue == [job_id]
