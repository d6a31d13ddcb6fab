"""Job leases: the database row is the truth about a job, whatever the queue holds.

huey deletes a task when a worker dequeues it, so a worker killed mid-task would lose it. Instead every job is a
row. A worker *claims* a queued row atomically and holds a lease it renews while it works; a reaper puts rows whose
lease expired back in the queue. Completion is fenced by the lease owner, so a worker that stalled past its lease
and woke up again cannot finish a job that another worker has since taken: a job is never done twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator, Optional

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from server.db import Database
from server.jobs.models import Job

log = logging.getLogger(__name__)
# How often a running job renews its lease and records its progress.
TICK_S = 1.0


@dataclass(frozen=True)
class Claim:
    """A held lease: the job, who holds it and which attempt this is."""

    job_id: int
    owner: str
    attempt: int


def new_job(session: Session, *, kind: str, lesson_id: Optional[int], rendition_id: Optional[int],
            now: datetime) -> Job:
    """Add a queued job row (the caller commits, then enqueues its id)."""
    job = Job(kind=kind, lesson_id=lesson_id, rendition_id=rendition_id, state="queued", attempts=0,
              progress=0.0, enqueued_at=now)
    session.add(job)
    return job


def claim(db: Database, job_id: int, owner: str, lease_s: float, now: datetime) -> Optional[Claim]:
    """Take a queued job's lease; None when it is not queued (done, running elsewhere, or gone)."""
    with db.session() as session:
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == "queued")
            .values(state="running", lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease_s),
                    attempts=Job.attempts + 1, started_at=now, error=None, log_tail=None)
        )
        if result.rowcount != 1:
            return None
        attempt = session.scalar(select(Job.attempts).where(Job.id == job_id))
    return Claim(job_id, owner, attempt)


def renew(db: Database, c: Claim, lease_s: float, now: datetime, progress: Optional[float] = None) -> bool:
    """Extend the lease (and record progress); False when the lease was lost to the reaper."""
    values: dict[str, Any] = {"lease_expires_at": now + timedelta(seconds=lease_s)}
    if progress is not None:
        values["progress"] = progress
    with db.session() as session:
        result = session.execute(update(Job).where(*_held(c)).values(**values))
        return result.rowcount == 1


def finish(session: Session, c: Claim, now: datetime, *, state: str = "done", error: Optional[dict] = None,
           log_tail: Optional[str] = None) -> bool:
    """Close the job in the caller's transaction, only if this claim still holds it."""
    result = session.execute(
        update(Job).where(*_held(c)).values(
            state=state, finished_at=now, lease_owner=None, lease_expires_at=None, error=error, log_tail=log_tail,
            progress=1.0 if state == "done" else Job.progress))
    return result.rowcount == 1


def _held(c: Claim):
    return (Job.id == c.job_id, Job.state == "running", Job.lease_owner == c.owner, Job.attempts == c.attempt)


def retry(session: Session, job: Job, now: datetime) -> None:
    """Put a failed job back in the queue with a fresh attempt budget."""
    job.state = "queued"
    job.attempts = 0
    job.progress = 0.0
    job.error = None
    job.log_tail = None
    job.enqueued_at = now
    job.finished_at = None


@dataclass(frozen=True)
class Reaped:
    """What one reaper pass did: jobs to enqueue again, and jobs given up after too many attempts."""

    requeue: list[int]
    gave_up: list[int]


def reap(db: Database, now: datetime, *, lease_s: float, max_attempts: int) -> Reaped:
    """Return expired running jobs to the queue (or fail them past max attempts), and list queued jobs to re-send.

    A queued job whose queue message may have been lost (enqueued longer than a lease ago) is sent again: the
    claim makes a duplicate message harmless.
    """
    stale_queue = now - timedelta(seconds=lease_s)
    with db.session() as session:
        expired = session.scalars(
            select(Job).where(Job.state == "running", Job.lease_expires_at < now)).all()
        gave_up = []
        for job in expired:
            if job.attempts >= max_attempts:
                job.state = "failed"
                job.finished_at = now
                job.error = {"code": "worker_died",
                             "message": f"The worker running this job stopped {job.attempts} times. "
                                        "Check the worker log, then retry the job."}
                gave_up.append(job.id)
            else:
                job.state = "queued"
                job.enqueued_at = now
            job.lease_owner = None
            job.lease_expires_at = None
        session.flush()
        requeue = session.scalars(
            select(Job.id).where(or_(
                and_(Job.state == "queued", Job.enqueued_at <= stale_queue),
                and_(Job.state == "queued", Job.id.in_([j.id for j in expired]))))).all()
        session.execute(update(Job).where(Job.id.in_(requeue)).values(enqueued_at=now))
    return Reaped(list(requeue), gave_up)


def queued_ids(db: Database) -> list[int]:
    """Ids of every queued job, oldest first (a starting worker sends them all again; claims drop duplicates)."""
    with db.session() as session:
        return list(session.scalars(select(Job.id).where(Job.state == "queued").order_by(Job.id)))


def release(db: Database, owner_prefix: str, now: datetime) -> list[int]:
    """Put back in the queue the running jobs whose owner starts with OWNER_PREFIX (a worker shutting down)."""
    with db.session() as session:
        held = session.scalars(
            select(Job).where(Job.state == "running", Job.lease_owner.startswith(owner_prefix))).all()
        for job in held:
            job.state, job.lease_owner, job.lease_expires_at, job.enqueued_at = "queued", None, None, now
            job.attempts = max(0, job.attempts - 1)  # a clean shutdown is not the job's fault
        return [job.id for job in held]


def worker_id() -> str:
    """A lease owner name unique to this process and call."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Ticker:
    """Renews a lease and records progress every TICK_S seconds while a job runs; ON_BEAT(progress), when given,
    runs after each renewal (a render job shows its progress on the rendition)."""

    def __init__(self, services, claim: Claim, on_beat: Optional[Callable[[float], None]] = None):
        self.services, self.claim, self.on_beat = services, claim, on_beat
        self.progress = 0.0
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{claim.job_id}", daemon=True)

    def __call__(self, fraction: float) -> None:
        self.progress = max(0.0, min(1.0, fraction))

    def _loop(self) -> None:
        while not self._stop.wait(TICK_S):
            try:
                self._beat()
            except Exception:
                log.exception("could not renew the lease of job %s; will try again", self.claim.job_id)

    def _beat(self) -> None:
        now = self.services.clock()
        if not renew(self.services.db, self.claim, self.services.settings.job_lease, now, self.progress):
            self.lost = True
            return
        if self.on_beat is not None:
            self.on_beat(self.progress)

    @contextmanager
    def running(self) -> Iterator["Ticker"]:
        """Run the ticker for the duration of the block."""
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()
