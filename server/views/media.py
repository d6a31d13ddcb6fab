"""Media downloads at content-addressed URLs: /media/<sha256>.<ext>, with Range, ETag and immutable caching."""

from __future__ import annotations

from flask import Blueprint, current_app, send_file

from server.auth import current_actor
from server.errors import ApiError
from server.media_store import EXTENSION, SHA256

bp = Blueprint("media", __name__)

MIMETYPES = {"mp3": "audio/mpeg", "m4a": "audio/mp4", "mp4": "video/mp4", "jpg": "image/jpeg"}
ONE_YEAR = 365 * 86400


@bp.get("/media/<name>")
def download(name: str):
    """Serve a stored rendition or poster; its name is its hash, so it never changes and caches forever."""
    services = current_app.extensions["lessoncast"]
    if services.settings.media_require_token:
        current_actor()
    sha256, _, extension = name.partition(".")
    if not SHA256.match(sha256) or not EXTENSION.match(extension):
        raise ApiError(404, "not_found", f"'{name}' is not a media file name (expected <sha256>.<ext>).")
    path = services.media.path(sha256, extension)
    if path is None:
        raise ApiError(404, "not_found", f"No media file {name}.")
    # conditional=True gives Range/206 and If-None-Match/304; a whole file goes out through the server's
    # file wrapper, which gunicorn turns into sendfile().
    response = send_file(path, mimetype=MIMETYPES.get(extension, "application/octet-stream"), conditional=True,
                         etag=sha256, max_age=ONE_YEAR, last_modified=None)
    response.headers["Cache-Control"] = f"public, max-age={ONE_YEAR}, immutable"
    response.headers["Accept-Ranges"] = "bytes"
    return response
