"""Training records API: study-hours reports and member records (JSON, CSV, XLSX), off-system trainings (one entry
or a roster CSV), a lesson's credited hours, and certificates (issue, list, print); ``/verify/<code>`` is public and
lives in ``verify_bp``."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from server import validation
from server.accounts.auth import current_actor, require
from server.api import json_body
from server.api.attendance import _send, _township
from server.errors import ApiError, NotFound
from server.lessons.models import Lesson
from server.org.csv_rows import OrgImportError, decode_csv
from server.services import app_services
from server.training import hours, hours_export, trainings

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
    return _send(hours_export.record_tables(record), {"member_no": member_no, "year": year},
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
            raise NotFound("lesson_not_found", f"There is no lesson {lesson_id}.")
        lesson.credited_hours = credited
    return jsonify({"lesson": lesson_id, "credited_hours": credited})
