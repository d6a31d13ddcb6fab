"""Run one job: claim its lease, then hand it to the domain that does that kind of work.

Lessons' analyse and render jobs go to ``server.lessons.transcode``, report exports to
``server.attendance.exports``. The worker gives this function to the queue's consumer; tests call it directly.
"""

from __future__ import annotations

import logging

from server.attendance import exports
from server.jobs import leases
from server.jobs.models import Job
from server.lessons import transcode
from server.services import Services

log = logging.getLogger(__name__)


def run_job(services: Services, job_id: int) -> None:
    """Claim and run one job; does nothing when the job is not queued (already done or held elsewhere)."""
    claim = leases.claim(services.db, job_id, leases.worker_id(), services.settings.job_lease, services.clock())
    if claim is None:
        log.info("job %s is not queued; skipping", job_id)
        return
    with services.db.session() as session:
        job = session.get(Job, job_id)
        kind, lesson_id, rendition_id = job.kind, job.lesson_id, job.rendition_id
    log.info("job %s (%s, lesson %s) attempt %s", job_id, kind, lesson_id, claim.attempt)
    if kind == "export":
        exports.run(services, claim)
    else:
        transcode.run(services, claim, kind, lesson_id, rendition_id)
