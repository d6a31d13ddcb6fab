"""The console's home page: what needs attention, each with a link (failed lessons, drafts not published, signing
keys near expiry from the health warnings, devices not on their channel's current programme, and the fleet's
alerts in the user's township: devices silent for days, sync failures, low batteries, full storage, radios whose
member left)."""

from __future__ import annotations

from flask import Blueprint, render_template
from sqlalchemy import func, select

from server.accounts.auth import current_actor, require
from server.console.pages import page_errors
from server.devices import fleet, sync as device_sync
from server.health.checks import trust_warnings
from server.lessons.models import Lesson
from server.programmes.models import Programme
from server.services import app_services

bp = Blueprint("console_home", __name__)
page_errors(bp)


@bp.get("/")
@require("read.lessons")
def home():
    """What needs attention now."""
    services = app_services()
    actor = current_actor()
    with services.db.session() as session:
        failed = session.scalars(select(Lesson).where(Lesson.state == "failed").order_by(Lesson.id.desc())
                                 .limit(10)).all()
        failed_total = session.scalar(select(func.count(Lesson.id)).where(Lesson.state == "failed"))
        drafts = session.scalars(select(Programme).where(Programme.state == "draft").order_by(Programme.code)).all()
        lessons_total = session.scalar(select(func.count(Lesson.id)))
        programmes_total = session.scalar(select(func.count(Programme.id)))
        township = actor.scope.township
        sync = device_sync.summary(session, township)
        alerts = fleet.alerts(session, fleet.Thresholds.of(services), township, services.today()) \
            if actor.may("read.devices") else None
    return render_template("home.html", failed=failed, failed_total=failed_total, drafts=drafts,
                           warnings=trust_warnings(services), sync=sync, township=township, alerts=alerts,
                           offline_days=services.settings.device_offline_days,
                           lessons_total=lessons_total, programmes_total=programmes_total)
