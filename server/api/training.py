"""Training records API: study-hours reports and member records (JSON, CSV, XLSX), off-system trainings (one entry
or a roster CSV), a lesson's credited hours, and certificates (issue, list, print); ``/verify/<code>`` is public and
lives in ``verify_bp``."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from server import validation
from server.accounts.auth import current_actor, require
from server.api import json_body
from server.api.attendance import _language, _send, _township
from server.errors import ApiError, NotFound
from server.i18n import _l
from server.lessons.models import Lesson
from server.org.csv_rows import OrgImportError, decode_csv
from server.services import app_services
from server.attendance import reports
from server.training import (certificates, hours, hours_export, logbooks, makeup, makeup_export, printing,
                             trainings)

bp = Blueprint("training_api", __name__)


def _year() -> int:
    services = app_services()
    return hours.parse_year(request.args.get("year") or services.today().year)


@bp.get("/reports/study-hours")
@require("read.attendance")
def study_hours():
    """Every member's study hours of ?year= against their quota, members below quota, site and township totals
    [&township=] [&format=json|csv|xlsx] [&table=] [&lang=]."""
    services = app_services()
    year, township = _year(), _township()
    with services.db.session() as session:
        report = hours.collect(session, year, services.rules, hours.hour_rules_from(services.settings),
                               township=township, now=services.clock())
    return _send(hours_export.tables(report), hours_export.meta(report),
                 f"study-hours-{year}" + (f"-{township}" if township else ""), "members")


@bp.get("/members/<member_no>/study-hours")
@require("read.attendance")
def member_study_hours(member_no: str):
    """One member's study hours of ?year= with every source and its date [&format=json|csv|xlsx]."""
    services = app_services()
    year = _year()
    with services.db.session() as session:
        record = hours.member_hours(session, member_no, year, services.rules,
                                    hours.hour_rules_from(services.settings), current_actor().scope)
    return _send(hours_export.record_tables(record), {"member_no": member_no, "period": str(year)},
                 f"study-hours-{member_no}-{year}", "sources")


@bp.post("/trainings")
@require("attendance.write")
def add_trainings():
    """Off-system trainings: a roster CSV (multipart 'file' or text/csv body: member, title, date, hours) or JSON
    {"member", "title", "date", "hours"}; checked whole before anything is stored."""
    services = app_services()
    if request.mimetype == "application/json":
        body = json_body()
        rows = [trainings.TrainingRow(validation.text(body, "member", max_length=64, required=True),
                                      validation.text(body, "title", max_length=200, required=True),
                                      validation.day(body.get("date"), "date"),
                                      trainings.check_hours(body.get("hours"), "hours"))]
        name = "entry"
    else:
        upload = request.files.get("file")
        data = upload.read() if upload is not None else request.get_data()
        name = upload.filename if upload is not None and upload.filename else "trainings.csv"
        try:
            text = decode_csv(data)
        except OrgImportError as exc:
            raise ApiError(422, "csv_invalid", exc.summary(name), rows=[e.to_dict() for e in exc.errors]) from None
        rows = trainings.parse_roster(text, name)
    actor = current_actor()
    with services.db.session() as session:
        result = trainings.add_trainings(session, rows, actor.scope, actor.name, services.clock(), name)
    return jsonify(result), 201


@bp.put("/lessons/<int:lesson_id>/credited-hours")
@require("lessons.write")
def set_credited_hours(lesson_id: int):
    """Set a lesson's credited study hours {"hours": 1.5}, or {"hours": null} to use its duration."""
    body = json_body()
    value = body.get("hours")
    credited = None if value is None else trainings.check_hours(value, "hours")
    services = app_services()
    with services.db.session() as session:
        lesson = session.get(Lesson, lesson_id)
        if lesson is None:
            raise NotFound("lesson_not_found", _l("There is no lesson {lesson_id}.", lesson_id=lesson_id))
        lesson.credited_hours = credited
    return jsonify({"lesson": lesson_id, "credited_hours": credited})


# ---------------------------------------------------------------------------------------------------------------
# Certificates


def _cert_json(cert, member_no: str, site: str) -> dict:
    return {"number": cert.number, "member_no": member_no, "site": site, "name": cert.name,
            "programme": cert.programme, "programme_title": cert.programme_title, "hours": cert.hours,
            "completed_on": cert.completed_on.isoformat(), "issued_at": cert.issued_at.isoformat(),
            "prints": cert.prints, "print_url": f"/api/v1/certificates/{cert.number}/print"}


def _html(text: str) -> Response:
    response = Response(text, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/certificates")
@require("attendance.write")
def issue_certificates():
    """Issue certificates for {"programme", "site"?, "hours"?} to every member who completed it and has none."""
    body = json_body()
    services = app_services()
    programme = validation.text(body, "programme", max_length=64, required=True)
    site = validation.text(body, "site", max_length=64, default=None)
    min_hours = None if body.get("hours") is None else trainings.check_hours(body.get("hours"), "hours")
    actor = current_actor()
    with services.db.session() as session:
        issued = certificates.issue(session, programme, services.rules, hours.hour_rules_from(services.settings),
                                    actor.scope, actor.name, services.clock(), site=site, min_hours=min_hours)
        numbers = [c.number for c in issued]
    return jsonify({"issued": numbers}), 201


@bp.get("/certificates")
@require("read.attendance")
def list_certificates():
    """Certificates issued [?programme=] [&site=], by number (an operator sees their township's)."""
    with app_services().db.session() as session:
        rows = certificates.listing(session, current_actor().scope, programme=request.args.get("programme"),
                                    site=request.args.get("site"))
        return jsonify({"certificates": [_cert_json(*row) for row in rows]})


@bp.get("/certificates/<number>/print")
@require("read.attendance")
def print_certificate(number: str):
    """One certificate as an A4 print page, to look at: not counted as a print (POST records one)."""
    return _certificate_page(number, printed=False)


@bp.post("/certificates/<number>/print")
@require("attendance.write")
def record_certificate_print(number: str):
    """Print (or reprint) one certificate: the print is counted in 'prints' and the A4 page is the answer."""
    return _certificate_page(number, printed=True)


def _certificate_page(number: str, printed: bool) -> Response:
    services = app_services()
    with services.db.session() as session:
        cert = certificates.for_print(session, current_actor().scope, number, printed=printed)
        page = printing.certificates_html([cert], services.settings.web_url, _language())
    return _html(page)


@bp.get("/certificates/print")
@require("read.attendance")
def print_batch():
    """Every certificate of ?programme= at ?site= as A4 pages, to look at: not counted (POST records the prints)."""
    return _batch_page(printed=False)


@bp.post("/certificates/print")
@require("attendance.write")
def record_batch_print():
    """Print a site's batch, ?programme= and ?site=: each certificate's print is counted, the A4 pages are the
    answer."""
    return _batch_page(printed=True)


def _batch_page(printed: bool) -> Response:
    services = app_services()
    programme, site = request.args.get("programme"), request.args.get("site")
    if not programme or not site:
        raise ApiError(400, "programme_and_site_required", _l("Add ?programme=<code>&site=<site code>."))
    with services.db.session() as session:
        certs = certificates.batch_for_print(session, current_actor().scope, programme, site, printed=printed)
        page = printing.certificates_html(certs, services.settings.web_url, _language())
    return _html(page)


verify_bp = Blueprint("verify", __name__)


@verify_bp.get("/verify/<path:code>")
def verify(code: str):
    """Public: whether a certificate is genuine, with only its holder's name, programme and date."""
    services = app_services()
    with services.db.session() as session:
        found = certificates.verify(session, code)
    response = _html(printing.verify_html(found, _language()))
    response.status_code = 200 if found else 404
    return response


@verify_bp.get("/training/print.css")
def print_css():
    """The print stylesheet of certificates and logbooks."""
    response = Response(printing.stylesheet(), mimetype="text/css")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


# ---------------------------------------------------------------------------------------------------------------
# Site logbooks


@bp.get("/sites/<site_code>/logbook")
@require("read.attendance")
def site_logbook(site_code: str):
    """The site's logbooks (四簿一册) of ?month=2026-10 [&format=json|csv|xlsx|html] [&table=] [&lang=]."""
    services = app_services()
    month = request.args.get("month")
    if not month:
        raise ApiError(400, "month_required", _l("Add ?month=2026-10."))
    with services.db.session() as session:
        tables, meta = logbooks.logbook(session, site_code, month, services.rules,
                                        hours.hour_rules_from(services.settings), current_actor().scope,
                                        _language())
    if request.args.get("format") == "html":
        return _html(printing.logbook_html(tables, meta, _language()))
    return _send(tables, meta, f"logbook-{site_code}-{month}", "viewing")


@bp.post("/sites/<site_code>/feedback")
@require("attendance.write")
def add_feedback(site_code: str):
    """Write an entry in the site's feedback log: {"text": "..."}."""
    body = json_body()
    services = app_services()
    actor = current_actor()
    with services.db.session() as session:
        row = logbooks.add_feedback(session, site_code, validation.text(body, "text", max_length=1000, default=""),
                                    actor.name, services.clock(), actor.scope)
        session.flush()
        return jsonify({"id": row.id, "at": row.at.isoformat()}), 201


@bp.get("/reports/site-rules")
@require("read.attendance")
def site_rules_report():
    """Every site's ?month= against the site rules (sessions, viewing hours, a class a quarter) [&township=]
    [&short=1 for only the sites falling short]."""
    services = app_services()
    month = request.args.get("month")
    if not month:
        raise ApiError(400, "month_required", _l("Add ?month=2026-10."))
    with services.db.session() as session:
        rows = logbooks.shortfalls(session, month, services.rules, logbooks.site_rules_from(services.settings),
                                   township=_township())
    if request.args.get("short") in ("1", "true"):
        rows = [r for r in rows if r.short]
    return jsonify({"month": month, "sites": [vars(r) for r in rows]})


# ---------------------------------------------------------------------------------------------------------------
# Make-up lessons


def _owed_json(o, now) -> dict:
    return {"session": o.session_key, "member_no": o.member_no, "name": o.name, "site": o.site,
            "township": o.township, "lesson": o.lesson_id, "radio": o.radio, "due_at": o.due_at.isoformat(),
            "done_at": o.done_at.isoformat() if o.done_at else None, "late": o.late, "state": o.state(now)}


@bp.post("/makeups/sweep")
@require("attendance.write")
def makeup_sweep():
    """Record the make-ups of every class that is over, and push them to the absent members' radios."""
    services = app_services()
    if current_actor().scope.township is not None:
        raise ApiError(403, "county_only", _l("The make-up sweep covers the county; ask a county administrator."))
    published = makeup.sweep(services, services.clock(), current_actor().name)
    return jsonify({"published": published})


@bp.post("/makeups/<path:session_key>/approve")
@require("attendance.write")
def makeup_approve(session_key: str):
    """Approve a class's make-ups (LESSONCAST_MAKEUP_MODE=approval): they are pushed to the radios now."""
    services = app_services()
    actor = current_actor()
    return jsonify({"published": makeup.approve(services, session_key, actor.scope, actor.name)})


@bp.get("/reports/makeups")
@require("read.attendance")
def makeup_report():
    """Make-ups owed, done, late and overdue per site, every owed make-up, and the participation of ?period=
    (e.g. a winter-training campaign 2026-11-01..2027-02-28) with and without make-ups [&township=]
    [&format=json|csv|xlsx] [&table=sites|owed|participation] [&lang=]."""
    services = app_services()
    now, township = services.clock(), _township()
    with services.db.session() as session:
        period = None
        if request.args.get("period"):
            period, _programme = reports.resolve_period(session, request.args["period"], services.rules)
        rows = makeup.owed(session, township=township, period=period, rules=services.rules)
        sites = makeup.by_site(rows, now)
        p = makeup.participation(session, period, services.rules, now, township=township) if period else None
    if request.args.get("format", "json") != "json":
        return _send(makeup_export.tables(sites, rows, now, services.rules.zone, (period.label, p) if p else None),
                     makeup_export.meta(period.label if period else "", township, now),
                     "makeups" + (f"-{period.label}" if period else "") + (f"-{township}" if township else ""),
                     "sites")
    body = {"sites": [vars(s) for s in sites], "owed": [_owed_json(o, now) for o in rows]}
    if p is not None:
        body["participation"] = dict(zip((key for key, _h in makeup_export.PARTICIPATION),
                                         makeup_export.participation_row(period.label, p)))
    return jsonify(body)


@bp.get("/makeups/visits")
@require("read.attendance")
def makeup_visits():
    """Make-ups of members without a radio, not done yet: the operator's list for a home visit or the next class."""
    services = app_services()
    with services.db.session() as session:
        rows = makeup.visit_list(session, current_actor().scope, services.clock())
    return jsonify({"visits": [_owed_json(o, services.clock()) for o in rows]})
