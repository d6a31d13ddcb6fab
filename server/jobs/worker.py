"""The worker process: a huey consumer running jobs, a reaper for expired leases, and a heartbeat for /healthz."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
from datetime import timedelta
from typing import Optional

from sqlalchemy import delete

from server import models  # noqa: F401  every model, registered before any thread queries (a model module
# imported lazily in one thread while another configures the mappers breaks them for the process's life)
from server.attendance import summary
from server.attendance.exports import expire as expire_exports
from server.events.models import DeviceStatusHistory
from server.health.beats import Beater, clock_from_monotonic
from server.jobs import leases as jobs
from server.jobs.models import Job
from server.jobs.runner import run_job
from server.lessons.tus import expire as expire_uploads, sweep as sweep_uploads
from server.messaging import retained
from server.programmes import trust as trust_service
from server.services import Services

log = logging.getLogger(__name__)
BEAT_S = 5.0


def reap_once(services: Services) -> jobs.Reaped:
    """Run one reaper pass and send the jobs it freed back to the queue."""
    s = services.settings
    reaped = jobs.reap(services.db, services.clock(), lease_s=s.job_lease, max_attempts=s.job_max_attempts)
    for job_id in reaped.requeue:
        services.queue.enqueue(job_id)
    if reaped.requeue or reaped.gave_up:
        log.info("reaper: re-enqueued %s, gave up on %s", reaped.requeue, reaped.gave_up)
    return reaped


def clean_work_dirs(services: Services) -> list[str]:
    """Delete scratch directories left by attempts that are no longer running (a killed worker's leftovers)."""
    from sqlalchemy import select


    with services.db.session() as session:
        live = {f"job-{job_id}-{attempt}" for job_id, attempt in
                session.execute(select(Job.id, Job.attempts).where(Job.state == "running"))}
    removed = []
    for path in services.work_dir.iterdir():
        if path.name not in live:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


def keep_signed_and_delivered(services: Services) -> None:
    """Re-sign online TUF roles before they expire, and send retained messages the broker has not acknowledged."""
    resigned = trust_service.resign(services)
    if resigned:
        log.info("re-signed %s before expiry", ", ".join(resigned))
    with services.db.session() as session:
        waiting = retained.pending(session)
    if waiting:
        log.info("%d retained messages wait for the broker; sending", waiting)
        retained.flush_quietly(services)


def sweep_makeups(services: Services) -> None:
    """Record the make-ups of classes that are over and push them to the absent members' radios."""
    from server.training import makeup

    published = makeup.sweep(services, services.clock(), "worker")
    if published:
        log.info("make-ups published: %s", ", ".join(published))


def advance_rollouts(services: Services) -> None:
    """Apply agent rollouts' time limits (thresholds move them when devices report, in the ingest)."""
    from server.agent_releases import rollouts

    changed = rollouts.evaluate(services)
    if changed:
        log.info("agent rollouts moved: %s", ", ".join(map(str, changed)))


def prune_status_history(services: Services) -> None:
    """Delete minute statuses older than ``device_status_retention_days`` (the hourly rollup keeps their hours)."""
    before = services.clock() - timedelta(days=services.settings.device_status_retention_days)
    with services.db.session() as session:
        removed = session.execute(delete(DeviceStatusHistory).where(DeviceStatusHistory.at < before)).rowcount
    if removed:
        log.info("deleted %d minute statuses from before %s", removed, before.isoformat())


PRUNE_EVERY_S = 3600.0


class _Housekeeping:
    """The worker's housekeeping rounds, and when the current one started (for the heartbeat's state)."""

    def __init__(self, services: Services):
        self.services = services
        self.round_since: Optional[float] = None  # monotonic start of the round in progress
        self.pruned_at: Optional[float] = None  # monotonic time the minute statuses were last pruned

    def state(self) -> dict:
        """Busy while a round runs (it may wait for the database or the broker), idle between rounds."""
        now = time.monotonic()
        return {"state": "idle" if self.round_since is None else "busy",
                "busy_since": clock_from_monotonic(self.services, self.round_since, now)}

    def prune_hourly(self) -> None:
        """Prune old minute statuses once an hour (a scan of the whole table, not worth doing every round)."""
        now = time.monotonic()
        if self.pruned_at is None or now - self.pruned_at >= PRUNE_EVERY_S:
            prune_status_history(self.services)
            self.pruned_at = now

    def run(self, stop: threading.Event) -> None:
        services = self.services
        interval = min(BEAT_S, max(0.5, services.settings.job_lease / 4))
        while True:
            self.round_since = time.monotonic()
            for task in (lambda: reap_once(services), lambda: clean_work_dirs(services),
                         lambda: expire_uploads(services), lambda: sweep_uploads(services),
                         lambda: expire_exports(services), lambda: keep_signed_and_delivered(services),
                         lambda: sweep_makeups(services), lambda: advance_rollouts(services),
                         self.prune_hourly, lambda: summary.refresh(services), lambda: summary.warm(services)):
                try:
                    task()
                except Exception:  # logged with its traceback; the next round tries again
                    log.exception("worker housekeeping failed; trying again in %.1f s", interval)
            self.round_since = None
            if stop.wait(interval):
                return


def run(services: Services) -> None:
    """Run the worker until SIGINT or SIGTERM: jobs in parallel threads (ffmpeg does the work in subprocesses)."""
    consumer = services.queue.consumer(
        run_job, workers=services.settings.job_workers, worker_type="thread", max_delay=1.0, check_worker_health=True)
    # Whatever was queued before this worker started may have lost its queue message (a crash between
    # commit and enqueue, a wiped queue file): send every queued job again; claims drop the duplicates.
    for job_id in jobs.queued_ids(services.db):
        services.queue.enqueue(job_id)
    stop = threading.Event()
    housekeeping = _Housekeeping(services)
    keeper = threading.Thread(target=housekeeping.run, args=(stop,), name="housekeeping", daemon=True)
    keeper.start()
    # The heartbeat has its own thread: a housekeeping round that waits for the database is busy, not down.
    beater = Beater(services, "worker", housekeeping.state).start()
    try:
        consumer.run()
    finally:
        stop.set()
        beater.stop()
        keeper.join(timeout=5)
        released = jobs.release(services.db, f"{socket.gethostname()}:{os.getpid()}:", services.clock())
        if released:
            log.info("released jobs %s for the next worker", released)
