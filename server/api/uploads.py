"""tus 1.0.0 endpoints for resumable uploads of large files: /api/v1/uploads."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request, url_for

from server.accounts.auth import current_actor, require
from server.errors import ApiError
from server.i18n import _l
from server.lessons import tus as uploads
from server.services import app_services

bp = Blueprint("uploads_api", __name__, url_prefix="/uploads")



@bp.after_request
def _tus_headers(response: Response) -> Response:
    response.headers["Tus-Resumable"] = uploads.TUS_VERSION
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.before_request
def _check_version():
    if request.method != "OPTIONS" and request.headers.get("Tus-Resumable", uploads.TUS_VERSION) != uploads.TUS_VERSION:
        response = jsonify({"error": {"code": "tus_version", "message": "Only tus 1.0.0 is supported."}})
        response.status_code = 412
        response.headers["Tus-Version"] = uploads.TUS_VERSION
        return response
    return None


@bp.route("", methods=["OPTIONS"])
@bp.route("/<upload_id>", methods=["OPTIONS"])
def options(upload_id: str | None = None):
    """Advertise the tus version, extensions and maximum size."""
    response = Response(status=204)
    response.headers["Tus-Version"] = uploads.TUS_VERSION
    response.headers["Tus-Extension"] = "creation,termination,expiration"
    response.headers["Tus-Max-Size"] = str(app_services().settings.max_upload_size)
    return response


@bp.post("")
@require("lessons.write")
def create():
    """Create an upload: Upload-Length and Upload-Metadata (title, filename, speaker, series, language...)."""
    actor = current_actor()
    metadata = request.headers.get("Upload-Metadata", "")
    upload = uploads.create(app_services(), request.headers.get("Upload-Length"), metadata, actor.token_id,
                            actor.name)
    response = Response(status=201)
    response.headers["Location"] = url_for("uploads_api.head", upload_id=upload.id, _external=False)
    response.headers["Upload-Expires"] = upload.expires_at.strftime("%a, %d %b %Y %H:%M:%S GMT")
    return response


@bp.route("/<upload_id>", methods=["HEAD"])
@require("lessons.write")
def head(upload_id: str):
    """Report how many bytes are stored."""
    upload = uploads.get(app_services(), upload_id)
    response = Response(status=200)
    response.headers["Upload-Offset"] = str(upload.offset)
    response.headers["Upload-Length"] = str(upload.length)
    return response


@bp.patch("/<upload_id>")
@require("lessons.write")
def patch(upload_id: str):
    """Append bytes at Upload-Offset; on the last byte the file becomes a lesson (Lessoncast-Lesson-Id header)."""
    if request.mimetype != "application/offset+octet-stream":
        raise ApiError(415, "bad_content_type", _l("PATCH bodies must be 'application/offset+octet-stream'."))
    services = app_services()
    request.max_content_length = services.settings.max_upload_size
    upload = uploads.append(services, upload_id, request.headers.get("Upload-Offset"), request.stream,
                            request.content_length)
    response = Response(status=204)
    response.headers["Upload-Offset"] = str(upload.offset)
    if upload.lesson_id is not None:
        response.headers["Lessoncast-Lesson-Id"] = str(upload.lesson_id)
    return response


@bp.delete("/<upload_id>")
@require("lessons.write")
def delete(upload_id: str):
    """Cancel an upload."""
    uploads.terminate(app_services(), upload_id)
    return Response(status=204)


@bp.get("/<upload_id>")
@require("lessons.write")
def status(upload_id: str):
    """JSON view of an upload: offset, length, and the lesson it became or why it was refused."""
    upload = uploads.get(app_services(), upload_id)
    return jsonify({"id": upload.id, "offset": upload.offset, "length": upload.length, "filename": upload.filename,
                    "lesson_id": upload.lesson_id, "error": upload.error})
