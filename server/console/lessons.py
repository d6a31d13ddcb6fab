"""Console pages for lessons: the upload page (tus, from the browser), the library, a lesson, its live progress.

Uploads go to the API's tus endpoint (/api/v1/uploads) with the session cookie and the CSRF token; that endpoint
and the retry here call the same services, with the same permission, as any API client.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from server.accounts.auth import require
from server.lessons.library import LibraryQuery, facets, search, used_by
from server.console.pages import page_errors
from server.lessons import service as lessons
from server.services import app_services

bp = Blueprint("console_lessons", __name__)
page_errors(bp)
PAGE_SIZE = 25
# Bytes per tus PATCH from the browser: a dropped connection costs at most this much again.
CHUNK_BYTES = 8 * 1024 * 1024


@bp.get("/lessons/upload")
@require("lessons.write")
def upload():
    """Drag and drop or pick files; each gets an upload bar, then a bar per rendition."""
    services = app_services()
    return render_template("upload.html", chunk=request.args.get("chunk", type=int) or CHUNK_BYTES,
                           max_size=services.settings.max_upload_size)


@bp.get("/lessons")
@require("read.lessons")
def library():
    """The library: search title and speaker, filter series, language and state, paged."""
    query = LibraryQuery.from_args(request.args, PAGE_SIZE)
    services = app_services()
    with services.db.session() as session:
        result = search(session, query)
        choices = facets(session)
    return render_template("library.html", result=result, query=query, facets=choices)


@bp.get("/lessons/<int:lesson_id>")
@require("read.lessons")
def lesson(lesson_id: int):
    """One lesson: metadata, each rendition playable with its loudness, true peak, duration and size."""
    services = app_services()
    data = lessons.lesson_json(services, lessons.get_lesson(services, lesson_id))
    with services.db.session() as session:
        used = used_by(session, [lesson_id]).get(lesson_id, [])
    return render_template("lesson.html", lesson=data, used=used)


@bp.get("/lessons/<int:lesson_id>/progress")
@require("read.lessons")
def progress(lesson_id: int):
    """The htmx fragment of a lesson's rendition bars; it stops polling once nothing is queued or running."""
    services = app_services()
    data = lessons.lesson_json(services, lessons.get_lesson(services, lesson_id))
    return render_template("_progress.html", lesson=data)


@bp.post("/lessons/<int:lesson_id>/retry")
@require("lessons.write")
def retry(lesson_id: int):
    """Queue the lesson's failed renditions again."""
    lessons.retry(app_services(), lesson_id)
    flash(_("The failed renditions are queued again."), "ok")
    return redirect(url_for("console_lessons.lesson", lesson_id=lesson_id))

