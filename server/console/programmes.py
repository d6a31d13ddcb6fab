"""Console pages for programmes: create a quarter or campaign, edit its items and slots, the week view, the
publish preview and publish, supersede, and the live view of devices picking the new version up.

Every change goes through ``server.programmes.service`` (the same validation the API applies) and publishing
through ``server.programmes.publish``; the forms only turn fields into the data those functions take.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _, lazy_gettext as _l
from sqlalchemy import func, select

from playlists import model as pl
from server.accounts.auth import current_actor, require
from server.console.pages import page_errors
from server.devices import sync as device_sync
from server import i18n
from server.errors import Conflict, Invalid
from server.lessons.library import find
from server.lessons.models import Lesson
from server.org.models import Group
from server.programmes import publish, service as programmes
from server.programmes.models import Programme, ProgrammeItem
from server.services import app_services

bp = Blueprint("console_programmes", __name__)
page_errors(bp)
QUARTERS = {1: ("01-01", "03-31"), 2: ("04-01", "06-30"), 3: ("07-01", "09-30"), 4: ("10-01", "12-31")}
# (value a slot stores, label): the labels are 周一 … 周日 in Chinese. Monday first, as pl.WEEKDAYS.
WEEKDAYS = tuple(zip(pl.WEEKDAYS, (_l("Mon"), _l("Tue"), _l("Wed"), _l("Thu"), _l("Fri"), _l("Sat"), _l("Sun"))))


def quarter_window(label: str) -> tuple[str, str]:
    """The first and last day of a quarter written 2026-Q4; Invalid otherwise."""
    year, _sep, quarter = label.strip().upper().partition("-Q")
    if not (year.isdigit() and len(year) == 4 and quarter in ("1", "2", "3", "4")):
        raise Invalid("bad_quarter", i18n._l("quarter: '{label}' is not a quarter like 2026-Q4.", label=label),
                      field="quarter")
    first, last = QUARTERS[int(quarter)]
    return f"{year}-{first}", f"{year}-{last}"


def _items_data(programme: Programme) -> list[dict[str, Any]]:
    return [{"lesson": i.lesson_id, "mandatory": i.mandatory, "groups": list(i.groups),
             "variants": list(i.variant_lesson_ids)} for i in programme.items]


def _slots_data(programme: Programme) -> list[dict[str, Any]]:
    return [dict(s) for s in programme.slots]


@bp.get("/programmes")
@require("read.lessons")
def index():
    """Every programme, newest version first, and the form for a new one."""
    with app_services().db.session() as session:
        rows = session.scalars(select(Programme).order_by(Programme.code, Programme.version.desc())).all()
        counts = dict(session.execute(select(ProgrammeItem.programme_id, func.count(ProgrammeItem.id))
                                      .group_by(ProgrammeItem.programme_id)).all())
        listing = [{"p": p, "items": counts.get(p.id, 0)} for p in rows]
    return render_template("programmes.html", programmes=listing, today=app_services().today())


@bp.post("/programmes")
@require("programmes.write")
def create():
    """Create a draft quarter (its dates from 2026-Q4) or campaign (dates given)."""
    form = request.form
    data = {"code": form.get("code", ""), "title": form.get("title", "")}
    if form.get("kind") == "quarter":
        data["valid_from"], data["valid_until"] = quarter_window(form.get("quarter") or form.get("code", ""))
    else:
        data["valid_from"], data["valid_until"] = form.get("valid_from", ""), form.get("valid_until", "")
    programme_id = programmes.create(app_services(), data, current_actor().name)
    return redirect(url_for("console_programmes.edit", programme_id=programme_id))


def _load(programme_id: int) -> dict[str, Any]:
    services = app_services()
    with services.db.session() as session:
        programme = programmes.get(session, programme_id)
        ids = [i.lesson_id for i in programme.items] + [v for i in programme.items for v in i.variant_lesson_ids]
        lessons = find(session, ids)
        choices = session.execute(select(Lesson.id, Lesson.title, Lesson.state).order_by(Lesson.id.desc())).all()
        groups = session.execute(select(Group.key, Group.name).order_by(Group.key)).all()
        newer = session.scalar(select(Programme.id).where(Programme.code == programme.code,
                                                          Programme.version > programme.version).limit(1))
        return {"programme": programmes.programme_json(programme), "lessons": lessons, "choices": choices,
                "groups": groups, "newer": newer}


@bp.get("/programmes/<int:programme_id>")
@require("read.lessons")
def edit(programme_id: int):
    """A programme: its items and slots (editable while a draft), and the week view."""
    page = _load(programme_id)
    return render_template("programme.html", week=week_view(page["programme"]["slots"]), weekdays=WEEKDAYS, **page)


def week_view(slots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the week view: each slot time with, for each day Monday to Sunday, whether it plays."""
    return [{"time": s["time"], "kind": s["kind"], "item": s.get("item_position"),
             "days": [day in s["days"] for day in pl.WEEKDAYS]} for s in slots]


def _change(programme_id: int, change) -> None:
    services = app_services()
    with services.db.session() as session:
        programme = programmes.get(session, programme_id)
        items, slots = _items_data(programme), _slots_data(programme)
    data = change(items, slots)
    programmes.update(services, programme_id, data, current_actor().name)


def _position(items: list, field: str = "position") -> int:
    raw = request.form.get(field, "")
    if not raw.isdigit() or not 1 <= int(raw) <= len(items):
        raise Invalid("bad_position", i18n._l("{field}: there is no item {raw!r}.", field=field, raw=raw),
                      field=field)
    return int(raw) - 1


@bp.post("/programmes/<int:programme_id>/items")
@require("programmes.write")
def items(programme_id: int):
    """Add, move, remove or change one item (mandatory or optional, groups, language variants)."""
    action = request.form.get("action", "")

    def change(items: list, slots: list) -> dict[str, Any]:
        if action == "add":
            lesson = request.form.get("lesson", "")
            if not lesson.isdigit():
                raise Invalid("lesson_required", i18n._l("Choose a lesson to add."), field="lesson")
            items.append({"lesson": int(lesson), "mandatory": request.form.get("mandatory", "1") == "1",
                          "groups": [], "variants": []})
        elif action in ("up", "down"):
            n = _position(items)
            m = n - 1 if action == "up" else n + 1
            if 0 <= m < len(items):
                items[n], items[m] = items[m], items[n]
        elif action == "remove":
            items.pop(_position(items))
            slots[:] = [s for s in slots if s.get("item_position") is None]
        elif action == "set":
            item = items[_position(items)]
            item["mandatory"] = request.form.get("mandatory") == "1"
            item["groups"] = request.form.getlist("groups")
            item["variants"] = [int(v) for v in re.split(r"[\s,，]+", request.form.get("variants", "")) if v.isdigit()]
        else:
            raise Invalid("bad_action", i18n._l("Unknown item action {action!r}.", action=action))
        return {"items": items, "slots": slots}

    _change(programme_id, change)
    return redirect(url_for("console_programmes.edit", programme_id=programme_id) + "#items")


@bp.post("/programmes/<int:programme_id>/slots")
@require("programmes.write")
def slots(programme_id: int):
    """Add a broadcast or class slot on the days ticked, change a slot's days, or remove a slot."""
    action = request.form.get("action", "")

    def change(items: list, slots: list) -> dict[str, Any]:
        # No day ticked is an empty list, which the service refuses with its own message (no second copy here).
        if action == "add":
            slots.append({"time": request.form.get("time", ""), "kind": request.form.get("kind", "broadcast"),
                          "item_position": None, "days": request.form.getlist("days")})
        elif action == "days":
            slots[_position(slots)]["days"] = request.form.getlist("days")
        elif action == "remove":
            slots.pop(_position(slots))
        else:
            raise Invalid("bad_action", i18n._l("Unknown slot action {action!r}.", action=action))
        return {"slots": slots}

    _change(programme_id, change)
    return redirect(url_for("console_programmes.edit", programme_id=programme_id) + "#slots")


@bp.get("/programmes/<int:programme_id>/preview")
@require("read.lessons")
def preview(programme_id: int):
    """The publish page: the preview per channel loads after the page (htmx), then the confirmation."""
    page = _load(programme_id)
    return render_template("publish.html", **page)


@bp.get("/programmes/<int:programme_id>/preview/plan")
@require("read.lessons")
def preview_plan(programme_id: int):
    """The htmx fragment of the preview: devices affected, items added and removed, download per device."""
    plan = publish.preview(app_services(), programme_id)
    with app_services().db.session() as session:
        state = programmes.get(session, programme_id).state
    return render_template("_preview.html", plan=plan, programme_id=programme_id, state=state)


@bp.post("/programmes/<int:programme_id>/publish")
@require("programmes.write")
def do_publish(programme_id: int):
    """Publish after the confirmation; refused when the device count confirmed is no longer the real one."""
    services = app_services()
    expected = publish.preview(services, programme_id)["devices_affected"]
    confirmed = request.form.get("devices", "")
    if confirmed != str(expected):
        raise Conflict("preview_changed", i18n._l("The preview changed: this publish now reaches {expected} devices, "
                                                "not {confirmed}. Look at the preview again and confirm.",
                                                expected=expected, confirmed=confirmed))
    result = publish.publish(services, programme_id, current_actor().name, urgent=request.form.get("urgent") == "1")
    flash(_("Published to %(n)s devices.", n=result["devices_affected"]), "ok")
    return redirect(url_for("console_programmes.live", programme_id=programme_id))


@bp.post("/programmes/<int:programme_id>/new-version")
@require("programmes.write")
def new_version(programme_id: int):
    """A new draft of a published programme; publishing it supersedes this one."""
    new_id = programmes.new_version(app_services(), programme_id, current_actor().name)
    flash(_("A new draft version is ready to edit."), "ok")
    return redirect(url_for("console_programmes.edit", programme_id=new_id))


@bp.get("/programmes/<int:programme_id>/live")
@require("read.lessons")
def live(programme_id: int):
    """After publishing: devices picking the new version up, live."""
    page = _load(programme_id)
    return render_template("live.html", **page)


@bp.get("/sync")
@require("read.devices")
def sync():
    """Devices and whether they hold their channel's current manifest, for the user's township scope."""
    township = current_actor().scope.township_filter(request.args.get("township") or None)
    return render_template("sync.html", township=township)


@bp.get("/sync/table")
@require("read.lessons")
def sync_table():
    """The htmx fragment of the sync table (polled every two seconds)."""
    actor = current_actor()
    township = actor.scope.township_filter(request.args.get("township") or None) if actor.may("read.devices") \
        else None
    with app_services().db.session() as session:
        rows = device_sync.status(session, township) if actor.may("read.devices") else None
        summary = device_sync.summary(session, township)
    return render_template("_sync.html", rows=rows, summary=summary, township=township,
                           poll=request.args.get("poll", "1") == "1")

