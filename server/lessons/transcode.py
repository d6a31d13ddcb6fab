"""Job bodies: analyse a lesson's source (full decode, loudness), then make each rendition.

Each job runs under a lease (see ``server.jobs.leases``). A ticker thread renews the lease and writes progress once a
second; results are written only if the lease is still ours, so a job is never done twice.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Optional

from sqlalchemy import delete, select

from media.analysis import analyse
from media.errors import FfmpegError, MediaError
from media.model import ProbeResult, SourceAnalysis
from media.profiles import PROFILES
from media.rendition import make_rendition
from server.jobs import leases as jobs
from server.jobs.models import Job
from server.lessons.models import Lesson, Rendition, SourceFile
from server.services import Services

log = logging.getLogger(__name__)


def run(services: Services, claim: jobs.Claim, kind: str, lesson_id: int, rendition_id: Optional[int]) -> None:
    """Run a claimed analyse or render job of lesson LESSON_ID."""
    try:
        if kind == "analyse":
            _analyse(services, claim, lesson_id)
        elif kind == "render":
            _render(services, claim, lesson_id, rendition_id)
        else:
            raise ValueError(f"unknown job kind {kind!r}")
    except Exception as exc:
        # Not a media problem but ours (a missing file, a full disk): keep the job failed and retryable, with
        # the reason on it, rather than leaving it running until its lease runs out.
        log.exception("job %s (%s, lesson %s) failed", claim.job_id, kind, lesson_id)
        _fail(services, claim, rendition_id if kind == "render" else None,
              {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}. Fix the cause, then retry."},
              None)


def _rendition_progress(services: Services, rendition_id: int):
    """What the ticker does after each renewal of a render job's lease: show the progress on the rendition."""
    def record(progress: float) -> None:
        with services.db.session() as session:
            rendition = session.get(Rendition, rendition_id)
            if rendition is not None and rendition.state == "running":
                rendition.progress = progress
    return record


def _source(services: Services, lesson_id: int) -> tuple[Lesson, SourceFile, Path]:
    with services.db.session() as session:
        lesson = session.get(Lesson, lesson_id)
        source = lesson.source
    path = services.sources.path(source.sha256, source.extension)
    if path is None:
        raise FileNotFoundError(f"source file of lesson {lesson_id} ({source.sha256}) is missing from the store")
    return lesson, source, path


def _analyse(services: Services, claim: jobs.Claim, lesson_id: int) -> None:
    lesson, source, path = _source(services, lesson_id)
    probe = ProbeResult.from_dict(source.probe)
    ticker = jobs.Ticker(services, claim)
    try:
        with ticker.running():
            result = analyse(path, probe, services.limits, source.original_name, on_progress=ticker)
    except MediaError as exc:
        _reject(services, claim, lesson_id, exc)
        return
    except FfmpegError as exc:
        _fail(services, claim, None, {"code": "ffmpeg_failed", "message": f"ffmpeg failed analysing the source: {exc}",
                                      "log": exc.tail}, "\n".join(exc.tail))
        return
    now = services.clock()
    render_ids = []
    with services.db.session() as session:
        if not jobs.finish(session, claim, now):
            log.warning("job %s lost its lease; another worker owns it now", claim.job_id)
            return
        session.get(SourceFile, source.id).analysis = result.to_dict()
        for rendition in session.scalars(select(Rendition).where(Rendition.lesson_id == lesson_id)):
            job = jobs.new_job(session, kind="render", lesson_id=lesson_id, rendition_id=rendition.id, now=now)
            session.flush()
            render_ids.append(job.id)
    for job_id in render_ids:
        services.queue.enqueue(job_id)


def _reject(services: Services, claim: jobs.Claim, lesson_id: int, exc: MediaError) -> None:
    """End the lesson as rejected and remove its stored files and pending work."""
    now = services.clock()
    with services.db.session() as session:
        if not jobs.finish(session, claim, now, state="failed", error=exc.to_dict()):
            return
        lesson = session.get(Lesson, lesson_id)
        source = lesson.source
        lesson.state, lesson.error, lesson.updated_at = "rejected", exc.to_dict(), now
        lesson.source = None
        session.execute(delete(Rendition).where(Rendition.lesson_id == lesson_id))
        session.flush()
        session.delete(source)
        sha, ext = source.sha256, source.extension
    services.sources.delete(sha, ext)
    log.info("lesson %s rejected: %s", lesson_id, exc.message)


def _render(services: Services, claim: jobs.Claim, lesson_id: int, rendition_id: int) -> None:
    lesson, source, path = _source(services, lesson_id)
    with services.db.session() as session:
        rendition = session.get(Rendition, rendition_id)
        rendition.state, rendition.progress, rendition.updated_at = "running", 0.0, services.clock()
        profile = PROFILES[rendition.profile]
    probe = ProbeResult.from_dict(source.probe)
    analysis = SourceAnalysis.from_dict(source.analysis)
    # Tags come from the lesson alone, never from a programme: the bytes must not change between quarters.
    tags = {"title": lesson.title, "artist": lesson.speaker, "album": lesson.series}
    out_dir = services.work_dir / f"job-{claim.job_id}-{claim.attempt}"
    out_dir.mkdir(parents=True, exist_ok=True)
    ticker = jobs.Ticker(services, claim, _rendition_progress(services, rendition_id))
    try:
        with ticker.running():
            result = make_rendition(path, probe, analysis, profile, out_dir, tags=tags, on_progress=ticker,
                                    display_name=source.original_name)
        _store_rendition(services, claim, lesson_id, rendition_id, profile.extension, result)
    except MediaError as exc:
        _fail(services, claim, rendition_id, exc.to_dict(), None)
    except FfmpegError as exc:
        _fail(services, claim, rendition_id,
              {"code": "ffmpeg_failed", "message": f"ffmpeg failed making the {profile.name} rendition. "
                                                   "Its last lines are in 'log'; fix the cause, then retry.",
               "log": exc.tail},
              "\n".join(exc.tail))
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def _store_rendition(services: Services, claim: jobs.Claim, lesson_id: int, rendition_id: int, extension: str,
                     result) -> None:
    services.media.put(result.path, result.sha256, extension)
    if result.poster_path is not None:
        services.media.put(result.poster_path, result.poster_sha256, "jpg")
    now = services.clock()
    with services.db.session() as session:
        if not jobs.finish(session, claim, now):
            log.warning("job %s lost its lease; its result is discarded", claim.job_id)
            return
        r = session.get(Rendition, rendition_id)
        r.state, r.progress, r.updated_at = "ready", 1.0, now
        r.sha256, r.size_bytes, r.duration_s = result.sha256, result.size_bytes, result.duration_s
        r.loudness_lufs = result.loudness.integrated_lufs
        r.true_peak_dbtp = result.loudness.true_peak_dbtp
        r.poster_sha256 = result.poster_sha256
        r.error = None
        _update_lesson_state(session, lesson_id, now)


def _fail(services: Services, claim: jobs.Claim, rendition_id: Optional[int], error: dict,
          log_tail: Optional[str]) -> None:
    now = services.clock()
    with services.db.session() as session:
        if not jobs.finish(session, claim, now, state="failed", error=error, log_tail=log_tail):
            return
        job = session.get(Job, claim.job_id)
        if rendition_id is not None:
            r = session.get(Rendition, rendition_id)
            r.state, r.error, r.updated_at = "failed", error, now
        else:
            lesson = session.get(Lesson, job.lesson_id)
            lesson.error = error
            for r in lesson.renditions:
                r.state, r.error, r.updated_at = "failed", error, now
        _update_lesson_state(session, job.lesson_id, now)
    log.warning("job %s failed: %s", claim.job_id, error.get("message"))


def _update_lesson_state(session, lesson_id: int, now) -> None:
    # Two workers may finish the last two renditions of a lesson at once. Lock the lesson row first, then read the
    # renditions with a fresh statement: the second worker waits for the first to commit and sees its result, so
    # one of them always marks the lesson ready (on PostgreSQL; SQLite serialises writers anyway).
    session.flush()
    lesson = session.scalars(select(Lesson).where(Lesson.id == lesson_id).with_for_update()
                             .execution_options(populate_existing=True)).one()
    states = set(session.scalars(select(Rendition.state).where(Rendition.lesson_id == lesson_id)))
    if states == {"ready"}:
        lesson.state, lesson.error = "ready", None
    elif "failed" in states and not states & {"queued", "running"}:
        lesson.state = "failed"
    else:
        lesson.state = "processing"
    lesson.updated_at = now
