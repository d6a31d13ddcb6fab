"""Console pages for admins: staff accounts (create, reset password, enable or disable, role and township) and the
audit log, filterable by who, what and when."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import func, select

from server.accounts import users as accounts
from server.accounts.auth import current_actor, require
from server.accounts.models import ROLES, User
from server.audit import AuditEntry
from server.console.pages import page_errors
from server.org.models import Township
from server.services import app_services

bp = Blueprint("console_admin", __name__, url_prefix="/admin")
page_errors(bp)
AUDIT_PAGE = 50


@bp.get("/users")
@require("tokens.manage")
def users():
    """Every account, and the form for a new one."""
    with app_services().db.session() as session:
        rows = session.scalars(select(User).order_by(User.username)).all()
        townships = session.execute(select(Township.code, Township.name).order_by(Township.code)).all()
    return render_template("users.html", users=rows, roles=ROLES, townships=townships)


@bp.post("/users")
@require("tokens.manage")
def create_user():
    """Create an account; its password is shown once."""
    form = request.form
    _id, password = accounts.create_user(app_services(), form.get("username", ""), form.get("role", ""),
                                         form.get("township") or None, current_actor().name)
    flash(_("Account %(name)s created. Its password, shown only now: %(password)s",
            name=form.get("username", "").strip(), password=password), "ok secret")
    return redirect(url_for("console_admin.users"))


@bp.post("/users/<int:user_id>")
@require("tokens.manage")
def update_user(user_id: int):
    """Set role, township and enabled, or reset the password."""
    services, actor = app_services(), current_actor().name
    if request.form.get("action") == "reset":
        password = accounts.reset_password(services, user_id, actor)
        flash(_("New password, shown only now: %(password)s", password=password), "ok secret")
    else:
        accounts.update_user(services, user_id, request.form.get("role", ""), request.form.get("township") or None,
                             request.form.get("enabled") == "1", actor)
        flash(_("The account is saved."), "ok")
    return redirect(url_for("console_admin.users"))


@bp.get("/audit")
@require("tokens.manage")
def audit():
    """The audit log, newest first, filtered by actor, action and county-time day range."""
    services = app_services()
    args = request.args
    zone = ZoneInfo(services.settings.county_timezone)
    stmt = select(AuditEntry)
    if args.get("actor"):
        stmt = stmt.where(AuditEntry.actor == args["actor"])
    if args.get("action"):
        stmt = stmt.where(AuditEntry.action.startswith(args["action"]))
    for name, shift, compare in (("from", 0, AuditEntry.at.__ge__), ("until", 1, AuditEntry.at.__lt__)):
        try:
            day = datetime.fromisoformat(args.get(name, "")).date()
        except ValueError:
            continue
        stmt = stmt.where(compare(datetime.combine(day + timedelta(days=shift), time(), zone)))
    page = args.get("page", "1")
    page = int(page) if page.isdigit() and 0 < int(page) < 100000 else 1
    with services.db.session() as session:
        total = session.scalar(select(func.count()).select_from(stmt.subquery()))
        rows = session.scalars(stmt.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(AUDIT_PAGE)
                               .offset((page - 1) * AUDIT_PAGE)).all()
        actions = session.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action)).all()
    return render_template("audit.html", rows=rows, total=total, page=page, pages=max(1, -(-total // AUDIT_PAGE)),
                           actions=actions, args=args)
