"""The fleet as staff look at it: each device's state (online, offline, offline for long, stale, sync failed,
behind the current programme, low battery, storage nearly full), counts per state, the device's status history
and online periods, and the alerts the home page lists.

Each state is one SQL condition (``conditions``) used three ways: to filter the table, to count per state and to
flag each row, so the counts at the top and the rows below cannot disagree. The thresholds are settings
(``device_silent_after``, ``device_offline_days``, ``device_low_battery``, ``device_storage_low_mb``). The caller
narrows the township with ``Scope.township_filter`` first, as for every listing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Optional

from sqlalchemy import String, and_, case, func, not_, or_, select, type_coerce
from sqlalchemy.orm import Session

from server.devices.models import Device, DeviceAssignment
from server.errors import Invalid
from server.events.models import DeviceEvent, DeviceStatus, DeviceStatusHistory
from server.i18n import _l
from server.org.models import Member, Site, Township
from server.programmes.models import Channel

STATES = ("online", "offline", "offline_long", "stale", "sync_failed", "behind", "low_battery", "storage_low")
SORTS = ("seen", "-seen", "name")


@dataclass(frozen=True)
class Thresholds:
    """When a device counts as offline, offline for long, low on battery or nearly full, at time NOW."""

    now: datetime
    silent_after_s: float
    offline_days: float
    low_battery: int
    storage_low_mb: int

    @classmethod
    def of(cls, services) -> "Thresholds":
        """The thresholds from SERVICES' settings, at its clock's now."""
        s = services.settings
        return cls(services.clock(), s.device_silent_after, s.device_offline_days, s.device_low_battery,
                   s.device_storage_low_mb)


def conditions(t: Thresholds) -> dict[str, Any]:
    """Each state's SQL condition over devices joined with their status and channel (see ``_base``)."""
    enrolled = Device.state == "enrolled"
    heard = and_(DeviceStatus.online.is_(True), DeviceStatus.received_at >= t.now - timedelta(seconds=t.silent_after_s))
    long_cut = t.now - timedelta(days=t.offline_days)
    return {
        "online": and_(enrolled, heard),
        "offline": and_(enrolled, not_(func.coalesce(heard, False))),
        "offline_long": and_(enrolled, or_(DeviceStatus.received_at < long_cut,
                                           and_(DeviceStatus.received_at.is_(None), Device.enrolled_at < long_cut))),
        "stale": and_(enrolled, DeviceStatus.stale.is_(True)),
        "sync_failed": and_(enrolled, DeviceStatus.sync_state == "error"),
        "behind": and_(enrolled, Channel.manifest_version > 0,
                       or_(DeviceStatus.manifest_version.is_(None),
                           DeviceStatus.manifest_version != Channel.manifest_version)),
        "low_battery": and_(enrolled, DeviceStatus.battery <= t.low_battery),
        "storage_low": and_(enrolled, DeviceStatus.storage_free_mb <= t.storage_low_mb),
    }


def _base(columns, township: Optional[str], site: Optional[str], kind: Optional[str]):
    query = (select(*columns).select_from(Device)
             .join(Site, Site.id == Device.site_id).join(Township, Township.id == Site.township_id)
             .outerjoin(DeviceStatus, DeviceStatus.device_uid == Device.uid)
             .outerjoin(Channel, Channel.id == Device.channel))
    if township:
        query = query.where(Township.code == township)
    if site:
        query = query.where(Site.code == site)
    if kind:
        query = query.where(Device.kind == kind)
    return query


def check_filters(state: Optional[str], sort: Optional[str]) -> None:
    """Refuse an unknown state or sort with a 422 naming the choices."""
    if state and state not in STATES:
        raise Invalid("bad_state", _l("state: '{value}' is not one of {choices}.", value=state,
                                      choices=", ".join(STATES)), field="state")
    if sort and sort not in SORTS:
        raise Invalid("bad_sort", _l("sort: '{value}' is not one of {choices}.", value=sort,
                                     choices=", ".join(SORTS)), field="sort")


def counts(session: Session, t: Thresholds, township: Optional[str] = None, site: Optional[str] = None,
           kind: Optional[str] = None) -> dict[str, int]:
    """How many devices (of TOWNSHIP, SITE, KIND) are in each state, and how many there are: ``{"total": n, ...}``."""
    conds = conditions(t)
    columns = [func.count(Device.id).label("total")] + \
        [func.coalesce(func.sum(case((c, 1), else_=0)), 0).label(name) for name, c in conds.items()]
    row = session.execute(_base(columns, township, site, kind)).one()
    return {k: int(v) for k, v in row._mapping.items()}


def listing(session: Session, t: Thresholds, *, township: Optional[str] = None, site: Optional[str] = None,
            kind: Optional[str] = None, state: Optional[str] = None, sort: Optional[str] = None,
            uids: Optional[list[str]] = None, limit: int = 100, offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
    """The devices matching the filters (all of them, or only UIDS), sorted by last seen (``seen``: longest silent
    first, ``-seen``: most recent first) or by name; with the total before paging. Each row carries its states."""
    check_filters(state, sort)
    conds = conditions(t)
    flags = [case((c, True), else_=False).label(name) for name, c in conds.items()]
    query = _base([Device.uid, Device.name, Device.kind, Device.state, Site.code.label("site"),
                   Site.name.label("site_name"), Township.code.label("township"), DeviceStatus.received_at,
                   DeviceStatus.battery, DeviceStatus.storage_free_mb, DeviceStatus.manifest_version,
                   DeviceStatus.sync_state, DeviceStatus.outbox_depth, Channel.manifest_version.label("current"),
                   *flags], township, site, kind)
    if state:
        query = query.where(conds[state])
    if uids is not None:
        query = query.where(Device.uid.in_(uids))
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    seen = DeviceStatus.received_at
    order = {"seen": (seen.is_(None).desc(), seen.asc(), Device.uid),
             "-seen": (seen.is_(None).asc(), seen.desc(), Device.uid),
             "name": (Device.name, Device.uid)}[sort or "seen"]
    rows = session.execute(query.order_by(*order).limit(limit).offset(offset)).all()
    out = []
    for row in rows:
        m = dict(row._mapping)
        m["states"] = [name for name in STATES if m.pop(name)]
        out.append(m)
    return total, out


def radios_of_departed(session: Session, township: Optional[str], day) -> list[dict[str, Any]]:
    """Radios still assigned to a member who left (the member's ``left_on`` is on or before DAY)."""
    query = (select(Device.uid, Device.name, Member.member_no, Member.name.label("member_name"))
             .join(DeviceAssignment, DeviceAssignment.device_id == Device.id)
             .join(Member, Member.id == DeviceAssignment.member_id)
             .join(Site, Site.id == Device.site_id).join(Township, Township.id == Site.township_id)
             .where(Device.state != "revoked", DeviceAssignment.until_date.is_(None),
                    Member.left_on.is_not(None), Member.left_on <= day))
    if township:
        query = query.where(Township.code == township)
    return [dict(r._mapping) for r in session.execute(query.order_by(Device.uid))]


def alerts(session: Session, t: Thresholds, township: Optional[str], day) -> dict[str, Any]:
    """What the home page asks an operator to look at: counts of devices silent for long, with sync failures, low
    batteries and nearly full storage, and the radios whose member left."""
    c = counts(session, t, township)
    return {"offline_long": c["offline_long"], "sync_failed": c["sync_failed"], "low_battery": c["low_battery"],
            "storage_low": c["storage_low"], "departed": radios_of_departed(session, township, day)}


def _window(uid: str, since: datetime, until: datetime):
    h = DeviceStatusHistory
    return h.device_uid == uid, h.at >= since, h.at <= until


def status_week(session: Session, uid: str, since: datetime, until: datetime,
                silent_after_s: float) -> dict[str, Any]:
    """The device's statuses between SINCE and UNTIL, read once and summed up for its page.

    - ``history``: per hour, the lowest battery, the lowest free storage, how many reports came and how many of
      them said online (the chart and its table);
    - ``periods``: runs of reports saying online, each no more than SILENT_AFTER_S after the one before; a report
      saying offline (a last will) ends a run, and a run still going at UNTIL ends there;
    - ``sync_log``: when the sync state or programme version changed, newest first, with the outbox depth then.

    A week of minute reports is 10,080 rows scattered among the other devices' rows: they are read in one pass,
    their times as plain values (SQLAlchemy's per-row datetime conversion on SQLite cost more than the rest of the
    page) converted with ``datetime.fromisoformat``."""
    h = DeviceStatusHistory
    rows = session.connection().execute(select(type_coerce(h.at, String), h.online, h.battery, h.storage_free_mb,
                                               h.sync_state, h.manifest_version, h.outbox_depth)
                                        .where(*_window(uid, since, until)).order_by(h.at)).all()
    gap, tz = timedelta(seconds=silent_after_s), since.tzinfo
    naive_until = until.astimezone(tz).replace(tzinfo=None)
    hours: dict[datetime, dict[str, Any]] = {}
    periods, log, start, last_at, last_sync = [], [], None, None, None
    for raw, online, battery, storage, state, version, outbox in rows:  # naive UTC inside the loop
        at = datetime.fromisoformat(raw) if isinstance(raw, str) else raw.replace(tzinfo=None)
        hour = at.replace(minute=0, second=0, microsecond=0)
        bucket = hours.get(hour)
        if bucket is None:
            bucket = hours[hour] = {"hour": hour.replace(tzinfo=tz), "battery": None, "storage_free_mb": None,
                                    "reports": 0, "online": 0}
        bucket["reports"] += 1
        bucket["online"] += bool(online)
        if battery is not None and (bucket["battery"] is None or battery < bucket["battery"]):
            bucket["battery"] = battery
        if storage is not None and (bucket["storage_free_mb"] is None or storage < bucket["storage_free_mb"]):
            bucket["storage_free_mb"] = storage
        if state is not None and (state, version) != last_sync:
            log.append({"at": at.replace(tzinfo=tz), "sync": state, "manifest_version": version,
                        "outbox_depth": outbox})
            last_sync = (state, version)
        if start is not None and (not online or at - last_at > gap):
            periods.append((start, at if not online and at - last_at <= gap else last_at))
            start = None
        if online and start is None:
            start = at
        last_at = at
    if start is not None:
        periods.append((start, naive_until if naive_until - last_at <= gap else last_at))
    return {"history": list(hours.values()), "periods": [(a.replace(tzinfo=tz), b.replace(tzinfo=tz))
                                                         for a, b in periods],
            "sync_log": log[::-1][:50]}


def recent_events(session: Session, uid: str, limit: int = 30) -> list[dict[str, Any]]:
    """The device's newest events (plays, check-ins, errors, command results), newest first."""
    rows = session.execute(select(DeviceEvent.type, DeviceEvent.body, DeviceEvent.device_time, DeviceEvent.received_at)
                           .where(DeviceEvent.device_uid == uid)
                           .order_by(DeviceEvent.epoch.desc(), DeviceEvent.seq.desc()).limit(limit))
    return [{"type": t, "body": b, "device_time": dt, "received_at": r} for t, b, dt, r in rows]

