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
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

from sqlalchemy import and_, case, func, not_, or_, select
from sqlalchemy.orm import Session

from server.devices.models import Device, DeviceAssignment
from server.errors import Invalid
from server.events.models import DeviceEvent, DeviceStatus, DeviceStatusHistory, DeviceStatusHourly
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


def _hour_of(at: datetime) -> datetime:
    return at.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def online_periods(hours: list[Any], until: datetime, silent_after_s: float) -> list[tuple[datetime, datetime]]:
    """Runs of online reports from HOURS, hourly rollup rows (``DeviceStatusHourly``) in time order.

    A run goes on from one hour's last online report to the next hour's first one when they are no more than
    SILENT_AFTER_S apart and no offline report (a last will) came between; it ends at the offline report that follows
    it within SILENT_AFTER_S, else at its last online report, or at UNTIL when it is still going then. The rollup
    keeps each hour's first and last online and offline times, so a break inside an hour is not seen here (the
    hour's online share in the chart shows it)."""
    gap = timedelta(seconds=silent_after_s)
    periods: list[tuple[datetime, datetime]] = []
    start = last = prev = None

    def end_of_run(next_hour) -> datetime:
        off = None
        if prev.last_offline_at is not None and prev.last_offline_at > last:
            off = prev.first_offline_at if prev.first_offline_at > last else prev.last_offline_at
        elif (next_hour is not None and next_hour.first_offline_at is not None
              and next_hour.hour - prev.hour == timedelta(hours=1)
              and (next_hour.first_online_at is None or next_hour.first_offline_at < next_hour.first_online_at)):
            off = next_hour.first_offline_at
        return off if off is not None and off - last <= gap else last

    for row in hours:
        if start is not None:
            broken = (row.first_online_at is None or row.first_online_at - last > gap
                      or (prev.last_offline_at is not None and prev.last_offline_at > last)
                      or (row.first_offline_at is not None and row.first_offline_at < row.first_online_at))
            if broken:
                periods.append((start, end_of_run(row)))
                start = None
        if row.first_online_at is None:
            continue
        if start is None:
            start = row.first_online_at
        last, prev = row.last_online_at, row
    if start is not None:
        end = end_of_run(None)
        periods.append((start, until if end == last and until - last <= gap else end))
    return periods


def status_week(session: Session, uid: str, since: datetime, until: datetime,
                silent_after_s: float) -> dict[str, Any]:
    """The device's statuses between SINCE and UNTIL, summed up for its page.

    - ``history``: per hour, the lowest battery (and the highest and latest), the lowest free storage, how many
      reports came and how many of them said online (the chart and its table), read from the hourly rollup that
      ingest writes with each status: a week is 168 rows, not 10,080 minute rows;
    - ``periods``: runs of reports saying online (``online_periods``), from the same rollup rows;
    - ``sync_log``: when the sync state or programme version changed over the last day (at most), newest first, with
      the outbox depth then, from the minute statuses."""
    hourly = session.execute(select(*DeviceStatusHourly.__table__.columns)  # plain rows: no ORM objects to build
                             .where(DeviceStatusHourly.device_uid == uid,
                                    DeviceStatusHourly.hour >= _hour_of(since),
                                    DeviceStatusHourly.hour <= until)
                             .order_by(DeviceStatusHourly.hour)).all()
    tz = since.tzinfo
    history = [{"hour": r.hour.astimezone(tz), "battery": r.min_battery, "max_battery": r.max_battery,
                "last_battery": r.last_battery, "storage_free_mb": r.min_storage_free_mb, "reports": r.reports,
                "online": r.online_reports} for r in hourly]
    periods = [(a.astimezone(tz), b.astimezone(tz)) for a, b in online_periods(hourly, until, silent_after_s)]
    h = DeviceStatusHistory
    rows = session.execute(select(h.at, h.sync_state, h.manifest_version, h.outbox_depth)
                           .where(*_window(uid, max(since, until - timedelta(days=1)), until),
                                  h.sync_state.is_not(None)).order_by(h.at)).all()
    log, last_sync = [], None
    for at, state, version, outbox in rows:
        if (state, version) != last_sync:
            log.append({"at": at.astimezone(tz), "sync": state, "manifest_version": version, "outbox_depth": outbox})
            last_sync = (state, version)
    return {"history": history, "periods": periods, "sync_log": log[::-1][:50]}


def recent_events(session: Session, uid: str, limit: int = 30) -> list[dict[str, Any]]:
    """The device's newest events (plays, check-ins, errors, command results), newest first."""
    rows = session.execute(select(DeviceEvent.type, DeviceEvent.body, DeviceEvent.device_time, DeviceEvent.received_at)
                           .where(DeviceEvent.device_uid == uid)
                           .order_by(DeviceEvent.epoch.desc(), DeviceEvent.seq.desc()).limit(limit))
    return [{"type": t, "body": b, "device_time": dt, "received_at": r} for t, b, dt, r in rows]

