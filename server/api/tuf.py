"""The county's TUF repository over HTTP: /tuf/metadata/<file> and /tuf/targets/<path>.

Public by design: signatures, not secrecy, protect it. Versioned files never change, so they cache forever;
``timestamp.json`` and ``root.json`` change and are never cached.
"""

from __future__ import annotations

import re

from flask import Blueprint, send_file

from server.errors import ApiError
from server.i18n import _l
from server.programmes.trust import repo_dir
from server.services import app_services

bp = Blueprint("tuf", __name__, url_prefix="/tuf")
METADATA_NAME = re.compile(r"(\d+\.)?(root|targets|snapshot|timestamp)\.json")
TARGET_PATH = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")


def _send(path, cache_forever: bool):
    if not path.is_file():
        raise ApiError(404, "not_found", _l("No such repository file: {name}.", name=path.name))
    response = send_file(path, mimetype="application/json" if path.suffix == ".json" else None, conditional=True,
                         max_age=0)
    response.headers["Cache-Control"] = ("public, max-age=31536000, immutable" if cache_forever
                                         else "no-cache, max-age=0")
    return response


@bp.get("/metadata/<name>")
def metadata(name: str):
    """A metadata file: versioned ones are immutable, timestamp.json and root.json are always revalidated."""
    match = METADATA_NAME.fullmatch(name)
    if not match:
        raise ApiError(404, "not_found", _l("'{name}' is not a TUF metadata file name.", name=name))
    services = app_services()
    return _send(repo_dir(services) / "metadata" / name, cache_forever=match.group(1) is not None)


@bp.get("/targets/<path:target>")
def targets(target: str):
    """A target file (a channel manifest) under its consistent-snapshot name, which never changes."""
    if not TARGET_PATH.fullmatch(target) or ".." in target.split("/"):
        raise ApiError(404, "not_found", _l("Not a target path."))
    services = app_services()
    return _send(repo_dir(services) / "targets" / target, cache_forever=True)
