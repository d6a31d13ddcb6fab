"""Console pages for attendance: the county dashboard (participation by township against the target, the trend over
quarters, sites without a class, the home-visit list, broadcast days), its drill-down to a township and a site,
exports, and class sessions with their attendees.

Every number comes from ``server.attendance.reports.participation`` laid out by ``report_export.tables``, the
function the API and ``lessoncast report`` export from, so the page, the CSV and the XLSX cannot disagree. Scope is
the user's (``Scope.township_filter``): an operator asking for another township is refused.
"""

from __future__ import annotations

from datetime import date, time

from flask import Blueprint, Response, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from server import validation
from server.accounts.auth import current_actor, require
from server.api.attendance import _attachment
from server.attendance import edit as attendance_edit, report_export, reports, summary
from server.console.pages import page_errors, page_language
from server.errors import Invalid, NotFound, localise
from server.i18n import _l
from server.org.csv_rows import OrgImportError, decode_csv
from server.org.models import Site
from server.services import app_services

bp = Blueprint("console_attendance", __name__, url_prefix="/attendance")
page_errors(bp)
# Rows of the home-visit list the dashboard shows; the whole list is paged on its own page and in the exports (a
# county's list can hold thousands of members, more than a page should draw).
VISIT_ROWS = 50


def current_quarter(today: date) -> str:
    """The quarter TODAY falls in, as a period (2026-Q4)."""
    return summary.current_quarter(today)


def _period() -> str:
    return request.args.get("period") or current_quarter(app_services().today())


def _kept(period: str, township: str | None, *, year_list: bool = True,
          marks: summary.Marks | None = None) -> summary.Kept:
    """The participation report from the app's ``ReportCache``: current while its data is unchanged, else the kept
    one (at most ``report_max_age`` old, with the time of its figures) that the worker is refreshing. MARKS: what
    the page read once for all its reports (``summary.read_marks``)."""
    services = app_services()
    with services.db.session() as session:
        return current_app.extensions["lessoncast_reports"].participation(
            session, period, services.rules, township=township, now=services.clock(), year_list=year_list,
            max_age=services.settings.report_max_age, marks=marks)


def _marks() -> summary.Marks:
    """The fingerprints' organisation part and day marks, read once for a page of several reports."""
    with app_services().db.session() as session:
        return summary.read_marks(session)


def _report(period: str, township: str | None) -> reports.Report:
    """The report of a download or a list: always current (computed when its data moved)."""
    services = app_services()
    with services.db.session() as session:
        return current_app.extensions["lessoncast_reports"].participation(
            session, period, services.rules, township=township, now=services.clock()).report


def trend(period: str, township: str | None,
          marks: summary.Marks | None = None) -> tuple[list[dict], list[summary.Kept]]:
    """Participation of the county (or TOWNSHIP) and of each township in every quarter of PERIOD's year that has
    begun by PERIOD's end and by today: [{"period", "county": Row, "townships": [Row]}]; none for a programme. Each
    quarter is kept without the year's home-visit list, so a closed quarter keeps its report while new plays
    arrive. Also returns the kept reports (for the age of their figures)."""
    points, kept = [], []
    for label, _year_list in summary.dashboard_reports(period, app_services().today())[1:]:
        k = _kept(label, township, year_list=False, marks=marks)
        kept.append(k)
        points.append({"period": label, "county": k.report.county, "townships": k.report.townships})
    return points, kept


@bp.get("")
@require("read.attendance")
def dashboard():
    """The county's (or a ?township='s) participation in ?period= (default: this quarter)."""
    services, actor = app_services(), current_actor()
    period = _period()
    township = actor.scope.township_filter(request.args.get("township") or None)
    marks = _marks()
    kept = _kept(period, township, marks=marks)
    report = kept.report
    points, quarters = trend(period, township, marks)
    as_of = min(k.as_of for k in (kept, *quarters))
    return render_template("attendance.html", report=report, period=period, township=township,
                           target=services.settings.participation_target, trend=points, as_of=as_of,
                           refreshing=not all(k.current for k in (kept, *quarters)),
                           visits=report.untrained_this_year[:VISIT_ROWS],
                           county_name=services.rules.county_name or _("This county"))


@bp.get("/home-visits")
@require("read.attendance")
def home_visits():
    """The whole home-visit list of ?period='s year (and ?township=), paged."""
    services, actor = app_services(), current_actor()
    period = _period()
    township = actor.scope.township_filter(request.args.get("township") or None)
    kept = _kept(period, township)
    report = kept.report
    page = request.args.get("page", "1")
    page = int(page) if page.isdigit() and 0 < int(page) < 100000 else 1
    size = VISIT_ROWS * 2
    rows = report.untrained_this_year
    return render_template("attendance_visits.html", report=report, period=period, township=township,
                           visits=rows[(page - 1) * size:page * size], page=page, pages=max(1, -(-len(rows) // size)),
                           as_of=kept.as_of, refreshing=not kept.current,
                           county_name=services.rules.county_name or _("This county"))


@bp.get("/sites/<code>")
@require("read.attendance")
def site(code: str):
    """One site's members in ?period=: who is trained, by lessons and classes, each linked to their page."""
    services, actor = app_services(), current_actor()
    period = _period()
    with services.db.session() as session:
        row = session.query(Site).filter(Site.code == code).one_or_none()
        if row is None:
            raise NotFound("unknown_site", _l("There is no site {code}.", code=code))
        actor.scope.check_site(row)
        township = row.township.code
    kept = _kept(period, township)
    report = kept.report
    site_row = next(s for s in report.sites if s.code == code)
    members = [m for m in report.members if m.site == code]
    untrained = [m for m in report.untrained_this_year if m.site == code]
    with services.db.session() as session:
        p, _programme = reports.resolve_period(session, period, services.rules)
        sessions = attendance_edit.list_sessions(session, services.rules, p.start, p.end, site=code)
    return render_template("attendance_site.html", report=report, site=site_row, members=members,
                           untrained=untrained, sessions=sessions, period=period, as_of=kept.as_of,
                           refreshing=not kept.current,
                           county_name=services.rules.county_name or _("This county"))


def _send(tables, meta, stem: str, default_table: str | None) -> Response:
    """The export as a download: the same ``report_export.render`` as the API and the command line."""
    fmt = request.args.get("format", "xlsx")
    table = request.args.get("table") or (default_table if fmt == "csv" else None)
    try:
        data, media_type = report_export.render(tables, meta, fmt, table=table, language=page_language())
    except ValueError as exc:
        raise Invalid("bad_format", str(exc), field="format") from None
    response = Response(data, mimetype=media_type.split(";")[0],
                        content_type=media_type if "charset" in media_type else None)
    if fmt != "json":
        response.headers["Content-Disposition"] = _attachment(
            f"{stem}{'-' + table if fmt == 'csv' and table else ''}.{fmt}")
    return response


@bp.get("/export")
@require("read.attendance")
def export():
    """The participation report of ?period= (and ?township=) as ?format=xlsx|csv (&table= for CSV)."""
    period = _period()
    township = current_actor().scope.township_filter(request.args.get("township") or None)
    report = _report(period, township)
    return _send(report_export.tables(report), report_export.report_meta(report),
                 f"report-{period}" + (f"-{township}" if township else ""), "sites")


@bp.get("/members/<member_no>/export")
@require("read.attendance")
def member_export(member_no: str):
    """One member's record for ?period= as ?format=xlsx|csv."""
    services = app_services()
    period = request.args.get("period") or str(services.today().year)
    with services.db.session() as session:
        record = reports.member_record(session, member_no, period, services.rules, scope=current_actor().scope)
    return _send(report_export.record_tables(record), report_export.record_meta(record, period),
                 f"member-{member_no}-{period}", "lessons")


# ---------------------------------------------------------------------------------------------------------------
# Class sessions


@bp.get("/sessions")
@require("read.attendance")
def sessions():
    """Class sessions of ?period= in the user's scope (?site=, ?township=, ?classes_only=1)."""
    services, actor = app_services(), current_actor()
    period = _period()
    township = actor.scope.township_filter(request.args.get("township") or None)
    with services.db.session() as session:
        p, _programme = reports.resolve_period(session, period, services.rules)
        rows = attendance_edit.list_sessions(session, services.rules, p.start, p.end, township=township,
                                             site=request.args.get("site") or None,
                                             classes_only=request.args.get("classes_only") == "1")
        sites = session.query(Site).order_by(Site.code).all()
        site_codes = [(s.code, s.name) for s in sites if actor.scope.covers(s.township.code)]
    return render_template("attendance_sessions.html", sessions=rows, period=period, args=request.args,
                           sites=site_codes)


@bp.post("/sessions")
@require("attendance.write")
def add_session():
    """Record a class held without a terminal (audited), then open it to enter its attendees."""
    services, actor = app_services(), current_actor()
    day = validation.day(request.form.get("date"), "date")
    clock = request.form.get("time") or "09:00"
    try:
        at = time.fromisoformat(clock) if len(clock) == 5 else None
    except ValueError:
        at = None
    if at is None:
        raise Invalid("bad_date", _l("time: {clock} is not a time like 19:30.", clock=clock), field="time")
    with services.db.session() as session:
        row = attendance_edit.add_session(session, services.rules, request.form.get("site", ""), day, at,
                                          request.form.get("title", "")[:200], actor.name, services.clock(),
                                          actor.scope)
        key = row.key
    flash(_("The class is recorded. Add who attended."), "ok")
    return redirect(url_for("console_attendance.session_page", key=key))


@bp.post("/sessions/roster")
@require("attendance.write")
def roster():
    """Store a roster CSV; every row is checked before any is stored."""
    services, actor = app_services(), current_actor()
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise Invalid("file_required", _l("Choose a CSV file to import."), field="file")
    data = upload.read()
    try:
        text = decode_csv(data)
        with services.db.session() as session:
            result = attendance_edit.import_roster(session, services.rules, text, actor.name, services.clock(),
                                                   actor.scope, upload.filename)
    except OrgImportError as exc:
        return render_template("attendance_sessions.html", sessions=[], period=_period(), args=request.args,
                               sites=[], errors=localise([e.to_dict() for e in exc.errors], page_language()),
                               summary=exc.summary(upload.filename).translate(page_language())), 422
    flash(_("Roster stored: %(attendees)s attendees in %(sessions)s sessions.", attendees=result.attendees,
            sessions=result.sessions), "ok")
    return redirect(url_for("console_attendance.sessions"))


@bp.get("/sessions/<path:key>")
@require("read.attendance")
def session_page(key: str):
    """One session: when, where, what played, and who attended by which record."""
    services, actor = app_services(), current_actor()
    with services.db.session() as session:
        row = attendance_edit.get_session(session, key, actor.scope)
        people = attendance_edit.attendees(session, key, actor.scope)
        site_row = session.get(Site, row.site_id)
        info = {"key": row.key, "site": site_row.code, "site_name": site_row.name, "source": row.source,
                "started_at": row.started_at, "ended_at": row.ended_at, "title": row.title,
                "is_class": row.is_class, "device": row.device_uid, "lesson": row.lesson_id,
                "listened_s": row.listened_s}
    return render_template("attendance_session.html", info=info, attendees=people)


@bp.post("/sessions/<path:key>/attendees")
@require("attendance.write")
def set_attendee(key: str):
    """Add or remove a member at a session (an operator's entry, audited, with the reason)."""
    services, actor = app_services(), current_actor()
    present = request.form.get("present") == "1"
    member_no = request.form.get("member", "").strip()
    with services.db.session() as session:
        attendance_edit.set_attendee(session, key, member_no, present, actor.name, services.clock(), actor.scope,
                                     request.form.get("reason", "")[:500], rules=services.rules)
    flash(_("%(member)s added.", member=member_no) if present else _("%(member)s removed.", member=member_no), "ok")
    return redirect(url_for("console_attendance.session_page", key=key))
