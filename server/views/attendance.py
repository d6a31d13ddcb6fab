"""Attendance API: participation reports in JSON, CSV or XLSX, member records, class sessions and their attendees
(operators add and remove attendees in their own township, with an audit trail), and roster imports."""

from __future__ import annotations

from datetime import date, time
from urllib.parse import quote

from flask import Blueprint, Response, jsonify, request

from server import attendance_edit, report_export, reports
from server.auth import current_actor, require
from server.errors import ApiError
from server.i18n import normalise
from server.views import app_services, json_body

bp = Blueprint("attendance_api", __name__, url_prefix="/api/v1")


def _scope(requested: str | None = None) -> str | None:
    """The township the actor may see: an operator's own, whatever they ask for; staff choose."""
    actor = current_actor()
    return actor.township if actor.role == "operator" else requested


def _language() -> str:
    try:
        return normalise(request.args.get("lang") or request.accept_languages.best_match(["zh_CN", "zh", "en"]))
    except ValueError as exc:
        raise ApiError(400, "unknown_language", str(exc)) from None


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


def _period_or_programme() -> tuple[str, bool]:
    """(?period= or ?programme=, whether it is a programme code): a programme may be coded like a period."""
    period, programme = request.args.get("period"), request.args.get("programme")
    if period and programme:
        raise ApiError(400, "period_or_programme", "Give ?period= or ?programme=, not both.")
    if not period and not programme:
        raise ApiError(400, "period_required", "Add ?period=2026-Q4 (or 2026, 2026-01-01..2026-06-30, or a "
                                               "programme code), or ?programme=<programme code>.")
    return (period or programme), bool(programme)


@bp.get("/reports/participation")
@require("read")
def participation():
    """?period=2026-Q4|2026|A..B|<programme code> [&township=] [&format=json|csv|xlsx] [&table=] [&lang=]."""
    period, programme = _period_or_programme()
    services = app_services()
    township = _scope(request.args.get("township"))
    with services.db.session() as session:
        result = reports.participation(session, period, services.rules, township=township, now=services.clock(),
                                       programme=programme)
    return _send(report_export.tables(result), report_export.report_meta(result),
                 f"report-{period}" + (f"-{township}" if township else ""), "sites")


@bp.get("/members/<member_no>/record")
@require("read")
def member_record(member_no: str):
    """One member's lessons completed and classes attended in ?period= or ?programme= (default: this year)."""
    services = app_services()
    if request.args.get("period") or request.args.get("programme"):
        period, programme = _period_or_programme()
    else:
        period, programme = str(services.today().year), False
    with services.db.session() as session:
        record = reports.member_record(session, member_no, period, services.rules, programme=programme)
        township = _scope()
        if township and record.township != township:
            raise ApiError(403, "other_township", f"Member {member_no} belongs to another township.")
    return _send(report_export.record_tables(record), report_export.record_meta(record, period),
                 f"member-{member_no}-{period}", "lessons")


@bp.get("/sessions")
@require("read")
def list_sessions():
    """Class sessions of ?period= at ?site= or ?township=, with attendee counts (?classes_only=1)."""
    services = app_services()
    period = request.args.get("period")
    if not period:
        raise ApiError(400, "period_required", "Add ?period=2026-Q4 (or 2026, or 2026-10-01..2026-10-31).")
    with services.db.session() as session:
        p, _programme = reports.resolve_period(session, period, services.rules)
        rows = attendance_edit.list_sessions(session, services.rules, p.start, p.end,
                                             township=_scope(request.args.get("township")),
                                             site=request.args.get("site"),
                                             classes_only=request.args.get("classes_only") in ("1", "true"))
    return jsonify({"period": p.label, "sessions": rows})


@bp.post("/sessions")
@require("attendance.write")
def add_session():
    """Record a class held without a terminal: {"site", "date": "YYYY-MM-DD", "time": "HH:MM", "title"}."""
    body = json_body()
    services = app_services()
    try:
        day = date.fromisoformat(str(body.get("date", "")))
        at = time.fromisoformat(str(body.get("time") or "09:00"))
    except ValueError:
        raise ApiError(422, "bad_date", 'Send "date": "2026-11-20" and optionally "time": "19:30".') from None
    actor = current_actor()
    with services.db.session() as session:
        row = attendance_edit.add_session(session, services.rules, str(body.get("site", "")), day, at,
                                          str(body.get("title", "")), actor.name, services.clock(), _scope())
        key = row.key
    return jsonify({"key": key}), 201


@bp.get("/sessions/<path:key>/attendees")
@require("read")
def session_attendees(key: str):
    """Who attended, by source (checkin, roster, operator), and who an operator removed."""
    with app_services().db.session() as session:
        return jsonify({"session": key, "attendees": attendance_edit.attendees(session, key, _scope())})


def _set(key: str, member_no: str, present: bool):
    services = app_services()
    body = request.get_json(silent=True) or {}
    with services.db.session() as session:
        attendance_edit.set_attendee(session, key, member_no, present, current_actor().name, services.clock(),
                                     _scope(), str(body.get("reason", "")))
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
    from server.org_csv import OrgImportError, decode_csv

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
                                               services.clock(), _scope(), name)
    return jsonify({"sessions": result.sessions, "attendees": result.attendees,
                    "created_sessions": result.created_sessions}), 201
