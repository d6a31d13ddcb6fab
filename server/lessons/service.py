"""Lesson service: take an uploaded file and its metadata, check it, store it, and queue its processing."""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Mapping, Optional

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from media.errors import MediaError
from media.model import ProbeResult
from media.probe import probe
from media.profiles import profiles_for
from server.errors import Conflict, Invalid, NotFound
from server.i18n import _l
from server.jobs import leases as jobs
from server.jobs.models import Job
from server.lessons.models import Lesson, Rendition, SourceFile
from server.services import Services

log = logging.getLogger(__name__)

# BCP 47: a primary language subtag (cmn, bo, nan, cdo, zh ...) and optional subtags (zh-Hans-CN, yue-HK).
LANGUAGE_TAG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
FIELD_LIMITS = {"title": 200, "speaker": 100, "series": 200, "description": 4000}


@dataclass(frozen=True)
class LessonMeta:
    """Metadata staff give a lesson."""

    title: str
    speaker: str = ""
    series: str = ""
    language: str = "cmn"
    description: str = ""


@dataclass(frozen=True)
class StagedFile:
    """An uploaded file on local disk with its sha256 and size, not yet accepted."""

    path: Path
    sha256: str
    size: int


def parse_meta(fields: Mapping[str, Any]) -> LessonMeta:
    """Validate lesson metadata from a form or tus metadata; Invalid naming the bad field."""
    values = {name: str(fields.get(name) or "").strip() for name in ("title", "speaker", "series", "description")}
    if not values["title"]:
        raise Invalid("title_required", _l("A lesson needs a title: send the 'title' field."))
    for name, limit in FIELD_LIMITS.items():
        if len(values[name]) > limit:
            raise Invalid("field_too_long", _l("'{name}' is {count} characters; the limit is {limit}.",
                                               name=name, count=len(values[name]), limit=limit),
                          field=name, limit=limit)
        if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in values[name]):
            raise Invalid("bad_characters", _l("'{name}' contains control characters.", name=name), field=name)
    language = str(fields.get("language") or "cmn").strip()
    if not LANGUAGE_TAG.match(language):
        raise Invalid("bad_language",
                      _l("'{language}' is not a BCP 47 language tag. Use e.g. cmn (Mandarin), bo (Tibetan), nan "
                         "(Minnan), cdo (Fuzhou).",
                         language=language), field="language")
    return LessonMeta(language=language, **values)


def display_name(filename: Optional[str]) -> str:
    """A safe name to show for an uploaded file: its last path component, no control characters, ≤ 200 chars.

    The name is only ever shown, never used as a path: files are stored by hash.
    """
    raw = str(filename or "")
    name = PurePosixPath(PureWindowsPath(raw).name).name
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip().lstrip(".")
    return name[:200] or "upload"


def ingest(services: Services, staged: StagedFile, name: str, meta: LessonMeta, actor: str) -> tuple[Lesson, bool]:
    """Accept a staged file as a lesson; return (lesson, created). Same bytes again return the existing lesson.

    Probe refusals raise MediaError and delete the staged file, so nothing is left behind.
    """
    existing = _lesson_for_sha(services, staged.sha256)
    if existing is not None:
        staged.path.unlink(missing_ok=True)
        return get_lesson(services, existing.id), False
    try:
        info = probe(staged.path, services.limits, name)
    except MediaError:
        staged.path.unlink(missing_ok=True)
        raise
    return _store(services, staged, name, meta, actor, info)


def _lesson_for_sha(services: Services, sha256: str) -> Optional[Lesson]:
    with services.db.session() as session:
        return session.scalar(select(Lesson).join(SourceFile).where(SourceFile.sha256 == sha256))


def _store(services: Services, staged: StagedFile, name: str, meta: LessonMeta, actor: str,
           info: ProbeResult) -> tuple[Lesson, bool]:
    extension = PROFILE_SOURCE_EXT.get(info.format_name.split(",")[0], "bin")
    now = services.clock()
    services.sources.put(staged.path, staged.sha256, extension)
    try:
        with services.db.session() as session:
            source = SourceFile(sha256=staged.sha256, original_name=name, extension=extension,
                                size_bytes=staged.size, probe=info.to_dict(), created_at=now)
            lesson = Lesson(title=meta.title, speaker=meta.speaker, series=meta.series, language=meta.language,
                            description=meta.description, state="processing", source=source, created_by=actor,
                            created_at=now, updated_at=now)
            session.add(lesson)
            for profile in profiles_for(info):
                session.add(Rendition(lesson=lesson, profile=profile.name, state="queued", progress=0.0,
                                      extension=profile.extension, updated_at=now))
            session.flush()
            job = jobs.new_job(session, kind="analyse", lesson_id=lesson.id, rendition_id=None, now=now)
            session.flush()
            job_id = job.id
    except IntegrityError:
        # The same bytes arrived twice at once; the other request stored them first. Its file is the same
        # content under the same name, so nothing needs deleting.
        existing = _lesson_for_sha(services, staged.sha256)
        if existing is None:
            raise
        return get_lesson(services, existing.id), False
    except BaseException:
        services.sources.delete(staged.sha256, extension)
        raise
    services.queue.enqueue(job_id)
    return get_lesson(services, lesson.id), True


# Extension a stored original keeps, by the demuxer ffprobe named (only for operators browsing the store).
PROFILE_SOURCE_EXT = {"mp3": "mp3", "wav": "wav", "flac": "flac", "ogg": "ogg", "mov": "mp4", "matroska": "mkv",
                      "aac": "aac", "avi": "avi", "asf": "asf", "amr": "amr", "mpegts": "ts", "w64": "w64"}


def get_lesson(services: Services, lesson_id: int) -> Lesson:
    """The lesson with its renditions loaded; NotFound when there is none."""
    with services.db.session() as session:
        lesson = session.get(Lesson, lesson_id)
        if lesson is None:
            raise NotFound("lesson_not_found", _l("There is no lesson {lesson_id}.", lesson_id=lesson_id))
        _ = lesson.renditions, lesson.source
        return lesson


def retry(services: Services, lesson_id: int) -> Lesson:
    """Queue every failed job of a lesson again; Conflict when nothing failed or the lesson was rejected."""
    now = services.clock()
    with services.db.session() as session:
        lesson = session.get(Lesson, lesson_id)
        if lesson is None:
            raise NotFound("lesson_not_found", _l("There is no lesson {lesson_id}.", lesson_id=lesson_id))
        if lesson.state == "rejected":
            raise Conflict("lesson_rejected",
                           _l("This lesson's file was refused, so there is nothing to retry. Upload a corrected file."))
        failed = session.scalars(select(Job).where(Job.lesson_id == lesson_id, Job.state == "failed")).all()
        if not failed:
            raise Conflict("nothing_to_retry", _l("No job of this lesson has failed."))
        for job in failed:
            jobs.retry(session, job, now)
            # A failed analysis failed every rendition with it; a failed render, just its own.
            affected = lesson.renditions if job.rendition_id is None else [session.get(Rendition, job.rendition_id)]
            for rendition in affected:
                rendition.state, rendition.progress, rendition.error = "queued", 0.0, None
                rendition.updated_at = now
        lesson.state, lesson.error, lesson.updated_at = "processing", None, now
        ids = [job.id for job in failed]
    for job_id in ids:
        services.queue.enqueue(job_id)
    return get_lesson(services, lesson_id)


def lesson_json(services: Services, lesson: Lesson) -> dict[str, Any]:
    """The API representation of a lesson and its renditions."""
    base = services.settings.media_base_url.rstrip("/")
    source = lesson.source
    return {
        "id": lesson.id,
        "title": lesson.title,
        "speaker": lesson.speaker,
        "series": lesson.series,
        "language": lesson.language,
        "description": lesson.description,
        "state": lesson.state,
        "error": lesson.error,
        "created_at": lesson.created_at.isoformat(),
        "source": None if source is None else {
            "sha256": source.sha256, "filename": source.original_name, "size": source.size_bytes,
            "duration": source.probe.get("duration_s"), "has_video": source.probe.get("has_video"),
        },
        "renditions": [_rendition_json(r, base) for r in lesson.renditions],
    }


def _rendition_json(r: Rendition, base: str) -> dict[str, Any]:
    ready = r.state == "ready" and r.sha256
    return {
        "profile": r.profile,
        "state": r.state,
        "progress": round(100 * (1.0 if r.state == "ready" else r.progress), 1),
        "sha256": r.sha256,
        "url": f"{base}/media/{r.sha256}.{r.extension}" if ready else None,
        "size": r.size_bytes,
        "duration": r.duration_s,
        "loudness_lufs": r.loudness_lufs,
        "true_peak_dbtp": r.true_peak_dbtp,
        "poster_url": f"{base}/media/{r.poster_sha256}.jpg" if ready and r.poster_sha256 else None,
        "error": r.error,
    }


