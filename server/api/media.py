"""Media downloads at content-addressed URLs: /media/<sha256>.<ext>, with Range, ETag and immutable caching."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, current_app, request, send_file

from server.accounts.auth import current_actor
from server.errors import ApiError
from server.i18n import _l
from server.lessons.media_store import CACHE_FOREVER, EXTENSION, MIMETYPES, ONE_YEAR, SHA256
from server.nginx import MEDIA_INTERNAL
from server.services import app_services

bp = Blueprint("media", __name__)



@bp.get("/media/<name>")
def download(name: str):
    """Serve a stored rendition or poster; its name is its hash, so it never changes and caches forever."""
    services = app_services()
    if services.settings.media_require_token:
        current_actor()
    sha256, _, extension = name.partition(".")
    if not SHA256.match(sha256) or not EXTENSION.match(extension):
        raise ApiError(404, "not_found", _l("'{name}' is not a media file name (expected <sha256>.<ext>).", name=name))
    path = services.media.path(sha256, extension)
    if path is None:
        raise ApiError(404, "not_found", _l("No media file {name}.", name=name))
    if current_app.config.get("LESSONCAST_BEHIND_NGINX"):
        return _nginx_sends(path, services.media.root, sha256, extension)
    # conditional=True gives Range/206 and If-None-Match/304; a whole file goes out through the server's
    # file wrapper, which gunicorn turns into sendfile().
    response = send_file(path, mimetype=MIMETYPES.get(extension, "application/octet-stream"), conditional=True,
                         etag=sha256, max_age=ONE_YEAR, last_modified=None)
    response.headers["Cache-Control"] = CACHE_FOREVER
    response.headers["Accept-Ranges"] = "bytes"
    return response


def _nginx_sends(path: Path, root: Path, sha256: str, extension: str) -> Response:
    """Hand the file to the nginx in front (server/nginx.py) with this view's headers; nginx adds Accept-Ranges
    and answers Range requests.

    The checks above stay the one copy of the media rules; the file's bytes never pass through a web worker.
    """
    response = Response(status=304 if request.if_none_match.contains_weak(sha256) else 200)
    response.set_etag(sha256)
    response.headers["Cache-Control"] = CACHE_FOREVER
    if response.status_code == 200:
        response.headers["Content-Type"] = MIMETYPES.get(extension, "application/octet-stream")
        response.headers["X-Accel-Redirect"] = MEDIA_INTERNAL + path.relative_to(root).as_posix()
    return response
