"""Report exports built by the worker: ask with POST /api/v1/exports, poll GET /api/v1/exports/<id> for the
progress, then download GET /api/v1/exports/<id>/file. Large participation reports answer 202 with the same."""

from __future__ import annotations

from flask import Blueprint, jsonify, send_file

from server.accounts.auth import current_actor, require
from server.api import json_body
from server.api.attendance import accepted, report_request
from server.attendance import exports
from server.errors import ApiError
from server.i18n import _l
from server.services import app_services

bp = Blueprint("exports_api", __name__, url_prefix="/exports")


@bp.post("")
@require("read.attendance")
def create():
    """{"report": "participation", "period" or "programme", "township", "format": xlsx|csv|json, "table", "lang"}."""
    body = json_body()
    report = body.get("report", "participation")
    if report not in exports.REPORTS:
        raise ApiError(400, "unknown_report", _l("report {report!r}: exports exist for {choices}.",
                                                 report=report, choices=', '.join(exports.REPORTS)))
    fields = {}
    for key in ("period", "programme", "township", "format", "table", "lang"):
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise ApiError(400, "bad_field", _l("{key!r} must be text, such as \"2026-Q4\" or \"qs\"; got {name__}.",
                                                key=key, name__=type(value).__name__), field=key)
        if value:
            fields[key] = value
    req = report_request(fields, default_format="xlsx")
    export_id = exports.request_export(app_services(), current_actor(), req)
    return accepted(export_id, "The worker builds this report; poll 'url' for its progress and download "
                               "'download_url' when 'state' is 'done'.")


@bp.get("/<int:export_id>")
@require("read.attendance")
def show(export_id: int):
    """The export's state, progress (percent) and, when done, its download link."""
    export, job = exports.get_for(app_services(), export_id, current_actor())
    response = jsonify(exports.export_json(export, job))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/<int:export_id>/file")
@require("read.attendance")
def download(export_id: int):
    """The finished file, to the token that asked for it (or an admin)."""
    services = app_services()
    export, job = exports.get_for(services, export_id, current_actor())
    path = exports.file_path(services, export)
    if path is None:
        raise ApiError(409, "export_not_ready", _l("Export {export_id} is {state} ({value}%); download it when GET "
                                                   "/api/v1/exports/{export_id} says 'done'.",
                                                   export_id=export_id,
                                                   state=job.state,
                                                   value=round(100 * job.progress)), state=job.state)
    media_type = exports.MEDIA_TYPES[export.params["format"]]
    response = send_file(path, mimetype=media_type, as_attachment=True, download_name=export.filename,
                         conditional=False, etag=False)
    response.headers["Cache-Control"] = "no-store"
    return response
