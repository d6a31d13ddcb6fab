"""Device API: enrolment (the device's one call without a staff token), and devices for staff."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from sqlalchemy import func, select

from server import validation
from server.accounts.auth import current_actor, require
from server.api import json_body
from server.devices import enrolment, registry as devices
from server.devices.models import Device
from server.errors import ApiError
from server.events.models import DeviceStatus
from server.i18n import _l
from server.org.csv_rows import OrgImportError, decode_csv
from server.org.models import Site, Township
from server.programmes import publish
from server.services import app_services

bp = Blueprint("devices_api", __name__)



@bp.post("/enrol")
def enrol():
    """Exchange a one-time enrolment code for MQTT credentials, an HTTP token, the TUF root and the URLs."""
    body = json_body()
    code = body.get("code")
    if not isinstance(code, str) or not code.strip() or len(code) > 64:
        raise ApiError(400, "code_required", _l("Send {{\"code\": \"K7QX-M3TD-WA9F\"}}: the one-time code printed for "
                                                "this device."))
    return jsonify(enrolment.enrol(app_services(), code, address=request.remote_addr or ""))


@bp.get("/devices")
@require("read.devices")
def list_devices():
    """Devices, filtered by site, township, kind or state; operators see their township only."""
    actor = current_actor()
    page = validation.paging(100, 1000)
    query = select(Device).join(Site).join(Township)
    township = actor.scope.township_filter(request.args.get("township"))
    if township:
        query = query.where(Township.code == township)
    for arg, column in (("site", Site.code), ("kind", Device.kind), ("state", Device.state)):
        if request.args.get(arg):
            query = query.where(column == request.args[arg])
    with app_services().db.session() as session:
        total = session.scalar(select(func.count()).select_from(query.subquery()))
        rows = session.scalars(query.order_by(Device.uid).limit(page.limit).offset(page.offset)).all()
        return jsonify({"total": total, "devices": [devices.device_json(d) for d in rows]})


@bp.post("/devices")
@require("devices.manage")
def add_device():
    """Add a device; the answer holds its one-time enrolment code."""
    body = json_body()
    services = app_services()
    actor = current_actor()
    text = validation.text
    fields = dict(kind=text(body, "kind", default=""), name=text(body, "name", default=""),
                  site_code=text(body, "site"), language=text(body, "language", default="cmn", max_length=35),
                  groups=validation.strings(body, "groups") or (), member_no=text(body, "member"),
                  uid=text(body, "id", max_length=64))
    with services.db.session() as session:
        new = devices.add(services, session, **fields, actor=actor.name, scope=actor.scope)
        device = devices.get(session, new.uid)
        answer = devices.device_json(device) | {"enrol_code": new.code}
    return jsonify(answer), 201


@bp.post("/devices/import")
@require("devices.manage")
def import_devices():
    """Add devices from a CSV (multipart field 'file' or a text/csv body); all or nothing. Answers their codes."""
    upload = request.files.get("file")
    data = upload.read() if upload is not None else request.get_data()
    try:
        text = decode_csv(data)
    except OrgImportError as exc:
        raise ApiError(422, "csv_invalid", exc.summary("devices.csv")) from None
    added = devices.import_csv(app_services(), text, current_actor().name, scope=current_actor().scope)
    return jsonify({"added": [{"id": d.uid, "kind": d.kind, "name": d.name, "site": d.site, "enrol_code": d.code}
                              for d in added]}), 201


@bp.get("/devices/<uid>")
@require("read.devices")
def show_device(uid: str):
    """One device."""
    with app_services().db.session() as session:
        return jsonify(devices.device_json(devices.get(session, uid, current_actor().scope)))


@bp.patch("/devices/<uid>")
@require("devices.manage")
def edit_device(uid: str):
    """Change site, language, groups, radio holder or settings; a device that changes audience moves channel at once."""
    services = app_services()
    publish.edit_device(services, uid, json_body(), current_actor().name, scope=current_actor().scope)
    with services.db.session() as session:
        return jsonify(devices.device_json(devices.get(session, uid)))


@bp.post("/devices/<uid>/commands")
@require("devices.manage")
def command(uid: str):
    """Send resync, play-now, stop, set-volume or reboot; it expires after 24 hours if the device is offline."""
    actor = current_actor()
    return jsonify(devices.send_command(app_services(), uid, json_body(), actor.name, scope=actor.scope)), 202


@bp.get("/devices/<uid>/status")
@require("read.devices")
def device_status(uid: str):
    """The device's last reported status (battery, storage, programme, sync, stale, queue) and when it arrived."""
    services = app_services()
    with services.db.session() as session:
        devices.get(session, uid, current_actor().scope)
        row = session.get(DeviceStatus, uid)
        if row is None:
            return jsonify({"id": uid, "online": False, "status": None, "received_at": None})
        return jsonify({"id": uid, "online": row.online, "status": row.body,
                        "received_at": row.received_at.isoformat()})


@bp.post("/devices/<uid>/code")
@require("devices.manage")
def new_code(uid: str):
    """Issue a new one-time enrolment code (the device enrols again with it)."""
    actor = current_actor()
    return jsonify({"id": uid, "enrol_code": devices.reissue_code(app_services(), uid, actor.name, actor.scope)})


@bp.post("/devices/<uid>/revoke")
@require("devices.manage")
def revoke(uid: str):
    """Revoke a device: the broker and every device endpoint refuse its credentials from now on."""
    services, actor = app_services(), current_actor()
    body = request.get_json(silent=True) or {}
    reason = validation.text(body, "reason", default="", max_length=500) if isinstance(body, dict) else ""
    devices.revoke(services, uid, actor.name, reason, actor.scope)
    with services.db.session() as session:
        return jsonify(devices.device_json(devices.get(session, uid)))
