"""Console pages for the fleet: the devices table (filters, counts per state, rows that update live, bulk
actions), a device's page (status history, events, sync log, holder, actions), and enrolment (add one device or a
CSV with a preview of its row errors, and the QR label sheet).

States and counts come from ``server.devices.fleet``; every change goes through ``server.devices.registry`` (the
same functions, validation and township scope as the API and the command line).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _, lazy_gettext as _l
from sqlalchemy import select

from server.accounts.auth import current_actor, require
from server.console.fleet_words import command_name
from server.console.labels import make_labels
from server.console.pages import page_errors, page_language
from server.devices import fleet, registry as devices
from server.devices.models import DEVICE_KINDS, Device
from server.errors import DomainError, Invalid
from server.events.models import DeviceStatus
from server.org.csv_rows import OrgImportError, decode_csv
from server.org.models import Member, Site, Township
from server.programmes import publish
from server.programmes.models import Channel, Programme
from server.services import app_services

bp = Blueprint("console_devices", __name__)
page_errors(bp)
BULK_ACTIONS = ("resync", "set-volume", "revoke")
PAGE_SIZE = 100


def _filters() -> dict[str, Any]:
    args = request.values
    township = current_actor().scope.township_filter(args.get("township") or None)
    state, sort = args.get("state") or None, args.get("sort") or None
    fleet.check_filters(state, sort)
    kind = args.get("kind") or None
    if kind and kind not in DEVICE_KINDS:
        raise Invalid("bad_kind", _l("kind: radio or terminal."), field="kind")
    page = args.get("page", "1")
    return {"township": township, "site": args.get("site") or None, "kind": kind, "state": state,
            "sort": sort or "seen", "page": int(page) if page.isdigit() and int(page) >= 1 else 1}


def _table(f: dict[str, Any]) -> dict[str, Any]:
    services = app_services()
    t = fleet.Thresholds.of(services)
    with services.db.session() as session:
        counts = fleet.counts(session, t, f["township"], f["site"], f["kind"])
        total, rows = fleet.listing(session, t, township=f["township"], site=f["site"], kind=f["kind"],
                                    state=f["state"], sort=f["sort"], limit=PAGE_SIZE,
                                    offset=(f["page"] - 1) * PAGE_SIZE)
    return {"counts": counts, "total": total, "rows": rows, "f": f, "selected": set(request.values.getlist("uid")),
            "pages": max(1, -(-total // PAGE_SIZE)), "states": fleet.STATES,
            "now": t.now}


def _choices() -> dict[str, Any]:
    actor = current_actor()
    with app_services().db.session() as session:
        townships = session.execute(select(Township.code, Township.name).order_by(Township.code)).all()
        sites = session.execute(select(Site.code, Site.name, Township.code).join(Township)
                                .order_by(Site.code)).all()
    if actor.scope.township:
        townships = [t for t in townships if t[0] == actor.scope.township]
        sites = [s for s in sites if s[2] == actor.scope.township]
    return {"townships": townships, "sites": sites}


@bp.get("/devices")
@require("read.devices")
def table():
    """The devices table: filters, counts per state, rows that refresh themselves, bulk actions."""
    return render_template("devices.html", kinds=DEVICE_KINDS, **_choices(), **_table(_filters()))


@bp.get("/devices/live")
@require("read.devices")
def live():
    """The counts and rows of the devices table, as the page polls them (selected rows stay selected)."""
    return render_template("_devices_live.html", **_table(_filters()))


@bp.post("/devices/bulk")
@require("devices.manage")
def bulk():
    """Resync, set the volume of, or revoke (after a confirmation) the selected devices, one by one through the
    same services as the API; the result says which were done and why others were not."""
    actor, services = current_actor(), app_services()
    action, uids = request.form.get("action", ""), request.form.getlist("uid")
    if action not in BULK_ACTIONS:
        raise Invalid("bad_action", _l("Choose resync, set volume or revoke."), field="action")
    if not uids:
        flash(_("Select at least one device first."), "error")
        return redirect(url_for("console_devices.table"))
    with services.db.session() as session:  # one device out of scope refuses the whole action (403), as a link
        listed = [(d.uid, d.name) for d in (devices.get(session, uid, actor.scope) for uid in uids)]
    if action == "revoke" and request.form.get("confirm") != "yes":
        return render_template("revoke_confirm.html", devices=listed)
    body: dict[str, Any] = {"type": action}
    if action == "set-volume":
        raw = request.form.get("volume", "")
        body["volume"] = int(raw) if raw.isdigit() else raw
    done, refused = [], []
    for uid in uids:
        try:
            if action == "revoke":
                devices.revoke(services, uid, actor.name, request.form.get("reason", ""), actor.scope)
            else:
                devices.send_command(services, uid, body, actor.name, scope=actor.scope)
            done.append(uid)
        except DomainError as exc:
            refused.append(f"{uid}: {exc.localised(page_language())}")
    if done:
        flash(_("%(action)s sent to %(n)s devices: %(uids)s", action=command_name(action), n=len(done),
                uids=", ".join(done)), "ok")
    for line in refused:
        flash(line, "error")
    return redirect(url_for("console_devices.table"))


def _device_page(uid: str) -> dict[str, Any]:
    services, actor = app_services(), current_actor()
    t = fleet.Thresholds.of(services)
    since = t.now - timedelta(days=7)
    with services.db.session() as session:
        device = devices.get(session, uid, actor.scope)
        _total, rows = fleet.listing(session, t, uids=[uid], limit=1)
        status = session.get(DeviceStatus, uid)
        channel = session.get(Channel, device.channel) if device.channel else None
        site = session.get(Site, device.site_id)
        week = fleet.status_week(session, uid, since, t.now, t.silent_after_s)
        history, periods, sync_log = week["history"], week["periods"], week["sync_log"]
        events = fleet.recent_events(session, uid)
        holders = [{"member_no": a.member.member_no, "name": a.member.name, "from": a.from_date,
                    "until": a.until_date, "left_on": a.member.left_on} for a in device.assignments]
        members = session.execute(select(Member.member_no, Member.name).where(Member.site_id == device.site_id,
                                                                              Member.left_on.is_(None))
                                  .order_by(Member.member_no)).all() if device.kind == "radio" else []
        programmes = session.execute(select(Programme.code, Programme.title).where(Programme.state == "published")
                                     .order_by(Programme.code)).all()
        info = {"uid": device.uid, "name": device.name, "kind": device.kind, "state": device.state,
                "language": device.language, "site": site, "township": site.township.code,
                "created_at": device.created_at, "enrolled_at": device.enrolled_at, "revoked_at": device.revoked_at,
                "volume": (device.settings or {}).get("volume"), "channel": device.channel}
    chart = {"hours": [h["hour"].isoformat() for h in history], "battery": [h["battery"] for h in history],
             "storage": [h["storage_free_mb"] for h in history],
             "online": [round(100 * h["online"] / h["reports"]) for h in history]}
    return {"d": info, "row": rows[0] if rows else None, "status": status.body if status else None,
            "received_at": status.received_at if status else None, "current": channel.manifest_version if channel
            else None, "history": history, "periods": periods, "events": events, "sync_log": sync_log,
            "holders": holders, "members": members, "programmes": programmes, "chart": chart,
            "today": services.today()}


@bp.get("/devices/<uid>")
@require("read.devices")
def device(uid: str):
    """One device: status and its history chart, programme version, events, sync log, holder, actions."""
    return render_template("device.html", **_device_page(uid))


@bp.post("/devices/<uid>/command")
@require("devices.manage")
def command(uid: str):
    """Send resync, play now, stop or set volume to the device."""
    actor, form = current_actor(), request.form
    kind = form.get("type", "")
    body: dict[str, Any] = {"type": kind}
    if kind == "set-volume":
        body["volume"] = int(form["volume"]) if form.get("volume", "").isdigit() else form.get("volume")
    if kind == "play-now":
        body["programme"] = form.get("programme") or None
        body["position"] = int(form["position"]) if form.get("position", "").isdigit() else form.get("position")
    sent = devices.send_command(app_services(), uid, body, actor.name, scope=actor.scope)
    flash(_("%(action)s sent (command %(id)s); the device reports its outcome among its events.",
            action=command_name(kind), id=sent["id"]), "ok")
    return redirect(url_for("console_devices.device", uid=uid))


@bp.post("/devices/<uid>/holder")
@require("devices.manage")
def holder(uid: str):
    """Hand the radio over to another member from a date (the previous holder's time ends the day before)."""
    actor, form = current_actor(), request.form
    changes = {"member": form.get("member", "")}
    if form.get("member_from"):
        changes["member_from"] = form["member_from"]
    publish.edit_device(app_services(), uid, changes, actor.name, scope=actor.scope)
    flash(_("The radio is handed over."), "ok")
    return redirect(url_for("console_devices.device", uid=uid) + "#holder")


@bp.post("/devices/<uid>/revoke")
@require("devices.manage")
def revoke(uid: str):
    """Revoke the device once the confirmation box is ticked."""
    actor = current_actor()
    if request.form.get("confirm") != "yes":
        raise Invalid("confirm_required", _l("Tick the box to confirm: a revoked device cannot be used again."),
                      field="confirm")
    devices.revoke(app_services(), uid, actor.name, request.form.get("reason", ""), actor.scope)
    flash(_("The device is revoked."), "ok")
    return redirect(url_for("console_devices.device", uid=uid))


@bp.post("/devices/<uid>/code")
@require("devices.manage")
def new_code(uid: str):
    """Issue a new enrolment code and show its label to print."""
    services, actor = app_services(), current_actor()
    code = devices.reissue_code(services, uid, actor.name, actor.scope)
    with services.db.session() as session:
        d = devices.get(session, uid, actor.scope)
        new = devices.NewDevice(d.uid, d.name, d.kind, session.get(Site, d.site_id).code, code)
        labels = make_labels(services, session, [new])
    return render_template("labels.html", labels=labels)


@bp.get("/devices/new")
@require("devices.manage")
def new():
    """Add one device, or many from a CSV."""
    return render_template("device_new.html", kinds=DEVICE_KINDS, **_choices())


@bp.post("/devices/new")
@require("devices.manage")
def add():
    """Add one device and show its label."""
    services, actor, form = app_services(), current_actor(), request.form
    with services.db.session() as session:
        made = devices.add(services, session, kind=form.get("kind", ""), name=form.get("name", ""),
                           site_code=form.get("site") or None, language=form.get("language") or "cmn",
                           member_no=form.get("member") or None, actor=actor.name, scope=actor.scope)
        session.flush()
        labels = make_labels(services, session, [made])
    return render_template("labels.html", labels=labels)


@bp.post("/devices/import")
@require("devices.manage")
def import_csv():
    """Preview a devices CSV (every row checked, nothing stored; each bad row listed), then import it in one go and
    show the labels."""
    services, actor = app_services(), current_actor()
    upload = request.files.get("file")
    if upload is not None and upload.filename:
        try:
            text = decode_csv(upload.read())
        except OrgImportError as exc:  # not a readable CSV (an Excel workbook, a bad encoding): say which
            return render_template("device_import.html", csv="", errors=[(e.line, e.message) for e in exc.errors],
                                   summary=exc.summary(upload.filename).translate(page_language()), added=[]), 422
    else:
        text = request.form.get("csv", "")
    if not text.strip():
        raise Invalid("csv_required", _l("Choose a CSV file of devices (columns kind, name, site, ...)."),
                      field="file")
    commit = request.form.get("step") == "import"
    try:
        added = devices.import_csv(services, text, actor.name, actor.scope, dry_run=not commit)
    except DomainError as exc:
        rows = [(line, e.localised(page_language())) for line, e in getattr(exc, "row_errors", [])]
        return render_template("device_import.html", csv=text, errors=rows,
                               summary=exc.localised(page_language()) if not rows else None, added=[]), 422
    if not commit:
        return render_template("device_import.html", csv=text, errors=[], summary=None, added=added)
    with services.db.session() as session:
        labels = make_labels(services, session, added)
    flash(_("%(n)s devices added. Print their labels now: the codes are shown only once.", n=len(added)), "ok")
    return render_template("labels.html", labels=labels)

