"""The fleet table (every device's last status and when it was last heard from), a device's ingest record
(stored, duplicate, quarantined and rejected batches, sequence gaps, events attendance could not count) and the
ingest's metrics."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from sqlalchemy import case, func, select

from server import validation
from server.accounts.auth import current_actor, require
from server.attendance.models import AttendanceExclusion
from server.devices import fleet as fleet_service, registry as devices
from server.devices.models import Device
from server.events.batches import gaps
from server.errors import Invalid
from server.events.models import DeviceEvent, DeviceSequence, DeviceStatus, QuarantinedBatch
from server.i18n import _l
from server.org.models import Site, Township
from server.programmes.models import Channel
from server.services import app_services

bp = Blueprint("fleet_api", __name__)
_STATUS = ("battery", "storage_free_mb", "firmware", "agent_version", "manifest_version", "sync_state", "stale",
           "outbox_depth")


def _iso(value):
    return value.isoformat() if value is not None else None


def _state_of_query() -> str | None:
    """The ``state`` asked for: ``?state=`` (one of ``fleet.STATES``), or its aliases ``?online=1`` (online),
    ``?online=0`` (offline) and ``?stale=1`` (stale); a 422 when the state is unknown or the aliases disagree."""
    state = request.args.get("state") or None
    fleet_service.check_filters(state, None)
    online, stale = validation.query_flag("online"), validation.query_flag("stale")
    aliases = ([("online" if online else "offline")] if online is not None else []) + (["stale"] if stale else [])
    for alias in aliases:
        if state is not None and state != alias:
            raise Invalid("state_conflict", _l("state: '{value}' and '{alias}' ask for different devices; give one.",
                                               value=state, alias=alias), field="state")
        state = alias
    return state


@bp.get("/fleet")
@require("read.devices")
def fleet():
    """Devices with their status: ?township= ?site= ?kind= ?state= (as the console's devices table; ?online=0|1 and
    ?stale=1 are aliases) ?limit= ?offset=. Each device's ``online`` and ``states`` come from the same conditions as
    the console's (``server.devices.fleet.conditions``)."""
    actor = current_actor()
    state = _state_of_query()
    page = validation.paging(200, 2000)
    conds = fleet_service.conditions(fleet_service.Thresholds.of(app_services()))
    last_events = (select(DeviceSequence.device_uid, func.max(DeviceSequence.last_event_at).label("last_event_at"),
                          func.sum(DeviceSequence.quarantined + DeviceSequence.rejected).label("refused"))
                   .group_by(DeviceSequence.device_uid).subquery())
    flags = [case((c, True), else_=False).label(name) for name, c in conds.items()]
    query = (select(Device, Site.code, Township.code, DeviceStatus, last_events.c.last_event_at,
                    last_events.c.refused, *flags)
             .join(Site, Site.id == Device.site_id).join(Township, Township.id == Site.township_id)
             .outerjoin(DeviceStatus, DeviceStatus.device_uid == Device.uid)
             .outerjoin(Channel, Channel.id == Device.channel)
             .outerjoin(last_events, last_events.c.device_uid == Device.uid))
    township = actor.scope.township_filter(request.args.get("township"))
    if township:
        query = query.where(Township.code == township)
    if request.args.get("site"):
        query = query.where(Site.code == request.args["site"])
    if request.args.get("kind"):
        query = query.where(Device.kind == request.args["kind"])
    if state:
        query = query.where(conds[state])
    with app_services().db.session() as session:
        total = session.scalar(select(func.count()).select_from(query.subquery()))
        rows = session.execute(query.order_by(Township.code, Site.code, Device.uid)
                               .limit(page.limit).offset(page.offset)).all()
        out = []
        for device, site, town, status, last_event, refused, *states in rows:
            seen = [t for t in (status.received_at if status else None, last_event) if t is not None]
            names = [name for name, flag in zip(conds, states) if flag]
            entry = {"id": device.uid, "name": device.name, "kind": device.kind, "site": site, "township": town,
                     "state": device.state, "online": "online" in names, "states": names,
                     "last_seen": _iso(max(seen)) if seen else None, "refused_batches": int(refused or 0)}
            entry.update({k: getattr(status, k) if status else None for k in _STATUS})
            out.append(entry)
    return jsonify({"total": total, "devices": out})


def device_record(session, uid: str) -> dict:
    """What ingest did with a device's events, per epoch, and what attendance could not count."""
    epochs = []
    for seq in session.scalars(select(DeviceSequence).where(DeviceSequence.device_uid == uid)
                               .order_by(DeviceSequence.epoch)):
        stored = session.execute(select(DeviceEvent.seq, DeviceEvent.seq_last).where(
            DeviceEvent.device_uid == uid, DeviceEvent.epoch == seq.epoch, DeviceEvent.seq > seq.acked)).all()
        stored += session.execute(select(QuarantinedBatch.seq_first, QuarantinedBatch.seq_last).where(
            QuarantinedBatch.device_uid == uid, QuarantinedBatch.epoch == seq.epoch,
            QuarantinedBatch.seq_first > seq.acked)).all()
        epochs.append({"epoch": seq.epoch, "acked": seq.acked, "events": seq.events, "duplicates": seq.duplicates,
                       "quarantined_batches": seq.quarantined, "rejected_batches": seq.rejected,
                       "clock_flagged": seq.clock_flagged, "last_event_at": _iso(seq.last_event_at),
                       "gaps": [{"first": a, "last": b} for a, b in gaps(seq.acked, stored)],
                       "highest_stored": max([b for _a, b in stored] + [seq.acked])})
    quarantined = [{"id": q.id, "epoch": q.epoch, "seq_first": q.seq_first, "seq_last": q.seq_last,
                    "reason": q.reason, "bytes": len(q.payload), "received_at": _iso(q.received_at)}
                   for q in session.scalars(select(QuarantinedBatch).where(QuarantinedBatch.device_uid == uid)
                                            .order_by(QuarantinedBatch.id.desc()).limit(50))]
    excluded = {r.reason: r.events for r in session.scalars(
        select(AttendanceExclusion).where(AttendanceExclusion.device_uid == uid))}
    return {"epochs": epochs, "quarantined": quarantined, "not_counted": excluded}


@bp.get("/devices/<uid>/record")
@require("read.devices")
def record(uid: str):
    """A device's ingest record: per epoch its ack, counts and sequence gaps; quarantined batches; events that
    attendance did not count and why."""
    with app_services().db.session() as session:
        devices.get(session, uid, current_actor().scope)
        status = session.get(DeviceStatus, uid)
        return jsonify({"id": uid, **device_record(session, uid),
                        "status": None if status is None else {
                            "online": status.online, "received_at": _iso(status.received_at),
                            **{k: getattr(status, k) for k in _STATUS}}})


@bp.get("/ingest/metrics")
@require("read.devices")
def metrics():
    """Totals over all devices (an operator's: their township's): events stored, duplicates dropped, batches
    quarantined or rejected, clock flags."""
    totals = select(func.coalesce(func.sum(DeviceSequence.events), 0),
                    func.coalesce(func.sum(DeviceSequence.duplicates), 0),
                    func.coalesce(func.sum(DeviceSequence.quarantined), 0),
                    func.coalesce(func.sum(DeviceSequence.rejected), 0),
                    func.coalesce(func.sum(DeviceSequence.clock_flagged), 0))
    excluded = select(AttendanceExclusion.reason, func.sum(AttendanceExclusion.events))
    township = current_actor().scope.township_filter(None)
    if township:
        uids = select(Device.uid).join(Site).join(Township).where(Township.code == township)
        totals = totals.where(DeviceSequence.device_uid.in_(uids))
        excluded = excluded.where(AttendanceExclusion.device_uid.in_(uids))
    with app_services().db.session() as session:
        row = session.execute(totals).one()
        excluded = dict(session.execute(excluded.group_by(AttendanceExclusion.reason)).all())
    names = ("events", "duplicates", "quarantined_batches", "rejected_batches", "clock_flagged")
    return jsonify({**dict(zip(names, (int(v) for v in row))),
                    "not_counted": {k: int(v) for k, v in sorted(excluded.items())}})
