"""Attendance API: participation reports in JSON, CSV or XLSX, member records, class sessions and their attendees
(operators add and remove attendees in their own township, with an audit trail), and roster imports."""

from __future__ import annotations

from datetime import time
from urllib.parse import quote

from flask import Blueprint, Response, jsonify, request

from server import validation
from server.accounts.auth import current_actor, require
from server.api import json_body
from server.attendance import edit as attendance_edit, exports, report_export, reports
from server.attendance.exports import ReportRequest
from server.errors import ApiError
from server.i18n import _l, normalise
from server.org.csv_rows import OrgImportError, decode_csv
from server.services import app_services

bp = Blueprint("attendance_api", __name__)


def _township(requested: str | None = None) -> str | None:
    """The township a listing or report covers: ?township= (or REQUESTED) for staff; an operator's own (asking for
    another is refused)."""
    return current_actor().scope.township_filter(requested or request.args.get("township"))


def _language(lang: str | None = None) -> str:
    try:
        return normalise(lang or request.args.get("lang")
                         or request.accept_languages.best_match(["zh_CN", "zh", "en"]))
    except ValueError:
        raise ApiError(400, "unknown_language", _l("language {language!r}: lessoncast speaks zh_CN (简体中文) and "
                                                   "en (English)", language=lang or request.args.get("lang"))) \
            from None


def _send(tables, meta, stem: str, default_table: str | None) -> Response:
    fmt = request.args.get("format", "json")
    table = request.args.get("table") or (default_table if fmt == "csv" else None)
    try:
        data, media_type = report_export.render(tables, meta, fmt, table=table, language=_language())
    except ValueError as exc:
        raise ApiError(400, "bad_format", str(exc)) from None
    response = Response(data, mimetype=media_type.split(";")[0],
                        content_type=media_type if "charset" in media_type else None)
    if fmt != "json":
        name = f"{stem}{'-' + table if fmt == 'csv' and table else ''}.{fmt}"
        response.headers["Content-Disposition"] = _attachment(name)
    return response


def _attachment(name: str) -> str:
    """A Content-Disposition for NAME: a programme's code may be Chinese (or hold a quote), and a header is
    Latin-1, so such a name goes in ``filename*`` (RFC 6266) with an ASCII ``filename`` for old clients."""
    fallback = "".join(c if " " <= c < "\x7f" and c not in '"\\' else "_" for c in name)
    if fallback == name:
        return f'attachment; filename="{name}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def _period_or_programme(args=None) -> tuple[str, bool]:
    """(?period= or ?programme=, whether it is a programme code): a programme may be coded like a period."""
    args = request.args if args is None else args
    period, programme = args.get("period"), args.get("programme")
    if period and programme:
        raise ApiError(400, "period_or_programme", _l("Give ?period= or ?programme=, not both."))
    if not period and not programme:
        raise ApiError(400, "period_required", _l("Add ?period=2026-Q4 (or 2026, 2026-01-01..2026-06-30, or a "
                                                  "programme code), or ?programme=<programme code>."))
    return (period or programme), bool(programme)


def accepted(export_id: int, message: str) -> Response:
    """202 with the export's state and its URL in Location: what every request for a worker-built report gets."""
    services = app_services()
    export, job = exports.get_for(services, export_id, current_actor())
    response = jsonify({**exports.export_json(export, job), "message": message})
    response.status_code = 202
    response.headers["Location"] = f"/api/v1/exports/{export_id}"
    response.headers["Cache-Control"] = "no-store"
    return response


def report_request(args, default_format: str = "json"):
    """The participation report ARGS ask for (query or JSON fields), scoped to what the actor may see."""
    period, programme = _period_or_programme(args)
    fmt = args.get("format") or default_format
    table = args.get("table") or ("sites" if fmt == "csv" else None)
    language = _language(args.get("lang"))
    return ReportRequest(period, programme, _township(args.get("township")), fmt, table, language)


@bp.get("/reports/participation")
@require("read.attendance")
def participation():
    """?period=2026-Q4|2026|A..B|<programme code> [&township=] [&format=json|csv|xlsx] [&table=] [&lang=].

    A report covering more than LESSONCAST_REPORT_INLINE_MEMBERS members answers 202 with an export the worker
    builds (see /api/v1/exports), so no web process ever holds a county's 100,000 member rows."""
    period, programme = _period_or_programme()
    services = app_services()
    township = _township()
    if exports.is_large(services, township):
        req = report_request(request.args)
        export_id = exports.request_export(services, current_actor(), req)
        return accepted(export_id, f"This report covers more than {services.settings.report_inline_members:,} "
                                   "members, so the worker builds it; poll 'url' for its progress and download "
                                   "'download_url' when 'state' is 'done'.")
    with services.db.session() as session:
        result = reports.participation(session, period, services.rules, township=township, now=services.clock(),
                                       programme=programme)
    return _send(report_export.tables(result), report_export.report_meta(result),
                 f"report-{period}" + (f"-{township}" if township else ""), "sites")


@bp.get("/members/<member_no>/record")
@require("read.attendance")
def member_record(member_no: str):
    """One member's lessons completed and classes attended in ?period= or ?programme= (default: this year)."""
    services = app_services()
    if request.args.get("period") or request.args.get("programme"):
        period, programme = _period_or_programme()
    else:
        period, programme = str(services.today().year), False
    with services.db.session() as session:
        record = reports.member_record(session, member_no, period, services.rules, programme=programme,
                                       scope=current_actor().scope)
    return _send(report_export.record_tables(record), report_export.record_meta(record, period),
                 f"member-{member_no}-{period}", "lessons")


@bp.get("/sessions")
@require("read.attendance")
def list_sessions():
    """Class sessions of ?period= at ?site= or ?township=, with attendee counts (?classes_only=1)."""
    services = app_services()
    period = request.args.get("period")
    if not period:
        raise ApiError(400, "period_required", _l("Add ?period=2026-Q4 (or 2026, or 2026-10-01..2026-10-31)."))
    with services.db.session() as session:
        p, _programme = reports.resolve_period(session, period, services.rules)
        rows = attendance_edit.list_sessions(session, services.rules, p.start, p.end,
                                             township=_township(),
                                             site=request.args.get("site"),
                                             classes_only=request.args.get("classes_only") in ("1", "true"))
    return jsonify({"period": p.label, "sessions": rows})


@bp.post("/sessions")
@require("attendance.write")
def add_session():
    """Record a class held without a terminal: {"site", "date": "YYYY-MM-DD", "time": "HH:MM", "title"}."""
    body = json_body()
    services = app_services()
    day = validation.day(body.get("date"), "date")
    clock = validation.text(body, "time", default="09:00", max_length=16)
    try:
        at = time.fromisoformat(clock) if len(clock) == 5 else None
    except ValueError:
        at = None
    if at is None:
        raise ApiError(422, "bad_date", _l("time: {clock!r} is not a time like \"19:30\".", clock=clock), field="time")
    site, title = validation.text(body, "site", default=""), validation.text(body, "title", default="")
    actor = current_actor()
    with services.db.session() as session:
        row = attendance_edit.add_session(session, services.rules, site, day, at, title, actor.name,
                                          services.clock(), actor.scope)
        key = row.key
    return jsonify({"key": key}), 201


@bp.get("/sessions/<path:key>/attendees")
@require("read.attendance")
def session_attendees(key: str):
    """Who attended, by source (checkin, roster, operator), and who an operator removed."""
    with app_services().db.session() as session:
        return jsonify({"session": key, "attendees": attendance_edit.attendees(session, key,
                                                                                current_actor().scope)})


def _set(key: str, member_no: str, present: bool):
    services = app_services()
    body = request.get_json(silent=True) or {}
    reason = validation.text(body, "reason", default="", max_length=500) if isinstance(body, dict) else ""
    with services.db.session() as session:
        attendance_edit.set_attendee(session, key, member_no, present, current_actor().name, services.clock(),
                                     current_actor().scope, reason, rules=services.rules)
    with services.db.session() as session:
        return jsonify({"session": key, "attendees": attendance_edit.attendees(session, key)})


@bp.put("/sessions/<path:key>/attendees/<member_no>")
@require("attendance.write")
def add_attendee(key: str, member_no: str):
    """Add a member to a session (an operator's entry, audited)."""
    return _set(key, member_no, True)


@bp.delete("/sessions/<path:key>/attendees/<member_no>")
@require("attendance.write")
def remove_attendee(key: str, member_no: str):
    """Remove a member from a session, whatever recorded them (audited; {"reason": "..."} is kept)."""
    return _set(key, member_no, False)


@bp.post("/sessions/roster")
@require("attendance.write")
def import_roster():
    """A roster CSV (multipart field 'file' or a text/csv body); all rows are checked before any is stored."""
    upload = request.files.get("file")
    data = upload.read() if upload is not None else request.get_data()
    name = upload.filename if upload is not None and upload.filename else "roster.csv"
    try:
        text = decode_csv(data)
    except OrgImportError as exc:
        raise ApiError(422, "csv_invalid", exc.summary(name), rows=[e.to_dict() for e in exc.errors]) from None
    services = app_services()
    with services.db.session() as session:
        result = attendance_edit.import_roster(session, services.rules, text, current_actor().name,
                                               services.clock(), current_actor().scope, name)
    return jsonify({"sessions": result.sessions, "attendees": result.attendees,
                    "created_sessions": result.created_sessions}), 201
