"""Lesson API: upload a lesson (multipart, streamed), read it with its renditions, retry failed jobs."""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request
from sqlalchemy import func, select

from server import validation
from server.accounts.auth import current_actor, require
from server.errors import ApiError
from server.i18n import _l
from server.lessons import service as lessons, tus as uploads
from server.lessons.models import Lesson
from server.services import app_services

bp = Blueprint("lessons_api", __name__, url_prefix="/lessons")



@bp.post("")
@require("lessons.write")
def create():
    """Accept a multipart upload (fields 'file', 'title' and optional metadata); 201 new, 200 same bytes again."""
    services = app_services()
    # Checked before the body is read: a file the disk cannot hold is refused before any of it is written.
    uploads.ensure_room(services, request.content_length or 0)
    if "file" not in request.files:
        raise ApiError(400, "file_required", _l("Send the media as the multipart field 'file'."))
    meta = lessons.parse_meta(request.form)
    upload = request.files["file"]
    staged = upload.stream
    staged.close_file()
    g.staged_files.remove(staged)
    lesson, created = lessons.ingest(
        services,
        lessons.StagedFile(staged.path, staged.sha256, staged.size),
        lessons.display_name(upload.filename),
        meta,
        current_actor().name,
    )
    return jsonify(lessons.lesson_json(services, lesson)), 201 if created else 200


@bp.get("")
@require("read.lessons")
def index():
    """List lessons, newest first, 50 a page (?page=N, or ?limit= and ?offset=)."""
    services = app_services()
    page = validation.paging(50, 200)
    with services.db.session() as session:
        total = session.scalar(select(func.count(Lesson.id)))
        rows = session.scalars(select(Lesson).order_by(Lesson.id.desc()).limit(page.limit).offset(page.offset)).all()
        items = [lessons.lesson_json(services, lesson) for lesson in rows]
    return jsonify({"lessons": items, "total": total, "page": page.page})


@bp.get("/<int:lesson_id>")
@require("read.lessons")
def show(lesson_id: int):
    """One lesson with each rendition's state, progress, sha256 and URL."""
    services = app_services()
    return jsonify(lessons.lesson_json(services, lessons.get_lesson(services, lesson_id)))


@bp.post("/<int:lesson_id>/retry")
@require("lessons.write")
def retry(lesson_id: int):
    """Queue the lesson's failed jobs again."""
    services = app_services()
    return jsonify(lessons.lesson_json(services, lessons.retry(services, lesson_id)))
