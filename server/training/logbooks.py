"""Site logbooks (四簿一册) for a site and a month, generated from what its devices and operators recorded, plus
the month's check of every site against the site rules (sessions and viewing hours a month, a class a quarter).

The five books:
- **viewing log** (收看记录): each session at the site's terminal (class, operator playback) and each day's
  loudspeaker broadcast: date, start and end, lessons, minutes, who checked in;
- **operating log** (运行维护记录): each day the terminal was in use (first start, last end), every remote command
  and its result, every failure the device reported (sync, playback), and the last status it reported (programme
  version, sync state);
- **equipment register** (设备登记簿): each device at the site: kind, name, enrolment date, agent version, storage,
  last seen;
- **learner roster** (学员花名册): the site's members with their role and study hours this year (``hours.collect``,
  so the roster and the study-hours report agree);
- **feedback log** (意见反馈记录): what operators wrote (``POST /api/v1/sites/<site>/feedback``).

Everything comes from the aggregates, the registry and two narrow event look-ups (commands and errors, on an index
by type), so a month's logbook costs the same however many plays the devices sent.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Optional

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.accounts.scope import Scope
from server.attendance.models import BroadcastDay, ClassSession, SessionAttendee
from server.attendance.report_export import Table
from server.attendance.rules import Rules
from server.devices.models import Device
from server.errors import Invalid, NotFound
from server.events.models import DeviceEvent, DeviceStatus
from server.i18n import _, _l, translator
from server.lessons.models import Lesson
from server.org.models import Member, Site, Township
from server.training import hours as hours_mod
from server.training.models import SiteFeedback
from server.training.rules import HourRules


@dataclass(frozen=True)
class SiteRules:
    """What a site must hold (settings ``LESSONCAST_LOGBOOK_*``)."""

    sessions_per_month: int = 2
    viewing_hours_per_month: float = 20.0
    classes_per_quarter: int = 1


def site_rules_from(settings) -> SiteRules:
    """The site rules of SETTINGS."""
    return SiteRules(int(settings.logbook_sessions_per_month), float(settings.logbook_viewing_hours_per_month),
                     int(settings.logbook_classes_per_quarter))


def parse_month(text: str) -> tuple[date, date]:
    """The first and last day of a month written 2026-10; Invalid otherwise."""
    try:
        first = datetime.strptime(str(text).strip(), "%Y-%m").date()
    except ValueError:
        raise Invalid("bad_month", _l("month {text!r}: write it as 2026-10.", text=text)) from None
    if not 2000 <= first.year <= 2099:
        raise Invalid("bad_month", _l("month {text!r} is outside 2000-2099.", text=text))
    last = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    return first, last


def _instants(first: date, last: date, rules: Rules) -> tuple[datetime, datetime]:
    lo = datetime.combine(first, time(0), rules.zone).astimezone(timezone.utc)
    hi = datetime.combine(last + timedelta(days=1), time(0), rules.zone).astimezone(timezone.utc)
    return lo, hi


VIEWING = (("date", _("Date")), ("start", _("Start")), ("end", _("End")), ("kind", _("Kind")),
           ("lessons", _("Lessons")), ("minutes", _("Minutes")), ("attendees", _("Checked in")))
OPERATING = (("at", _("Time")), ("event", _("Event")), ("detail", _("Detail")), ("device", _("Device")),
             ("version", _("Programme version")))
EQUIPMENT = (("kind", _("Kind")), ("name", _("Name")), ("device", _("Device")), ("enrolled", _("Enrolled on")),
             ("agent", _("Agent version")), ("storage", _("Storage free / total (MB)")),
             ("last_seen", _("Last seen")), ("state", _("State")))
ROSTER = (("member_no", _("Member number")), ("name", _("Name")), ("role", _("Role")), ("quota", _("Quota (hours)")),
          ("hours", _("Study hours")))
FEEDBACK = (("at", _("Time")), ("author", _("Written by")), ("source", _("Source")), ("text", _("Feedback")))


def _site(session: Session, code: str, scope: Scope) -> Site:
    site = session.scalar(select(Site).where(Site.code == code))
    if site is None:
        raise NotFound("site_not_found", _l("There is no site {code!r}. See GET /api/v1/sites.", code=code))
    return scope.check_site(site)


def logbook(session: Session, site_code: str, month: str, rules: Rules, hrules: HourRules,
            scope: Scope, language: Optional[str] = None) -> tuple[list[Table], dict[str, Any]]:
    """The five books of SITE_CODE for MONTH (2026-10) as tables (labels in LANGUAGE), and what they are about."""
    t = translator(language)
    site = _site(session, site_code, scope)
    first, last = parse_month(month)
    lo, hi = _instants(first, last, rules)
    local = lambda at: at.astimezone(rules.zone)  # noqa: E731
    devices = session.scalars(select(Device).where(Device.site_id == site.id).order_by(Device.kind, Device.uid)).all()
    terminals = [d.uid for d in devices if d.kind == "terminal"]
    sessions = session.scalars(select(ClassSession).where(ClassSession.site_id == site.id,
                                                          ClassSession.started_at >= lo, ClassSession.started_at < hi)
                               .order_by(ClassSession.started_at, ClassSession.key)).all()
    broadcasts = session.scalars(select(BroadcastDay).where(BroadcastDay.site_id == site.id,
                                                            BroadcastDay.day >= first, BroadcastDay.day <= last)
                                 .order_by(BroadcastDay.day, BroadcastDay.lesson_id)).all()
    titles = dict(session.execute(select(Lesson.id, Lesson.title).where(Lesson.id.in_(
        {s.lesson_id for s in sessions if s.lesson_id} | {b.lesson_id for b in broadcasts}))).all())
    present = _attendees(session, [s.key for s in sessions])
    viewing = []
    for s in sessions:
        kind = t(_("Class") if s.is_class else _("Playback"))
        viewing.append((local(s.started_at).date(), local(s.started_at).strftime("%H:%M"),
                        local(s.ended_at).strftime("%H:%M"), kind, s.title or titles.get(s.lesson_id, ""),
                        round(s.listened_s / 60.0, 1), "、".join(present.get(s.key, []))))
    for b in broadcasts:
        viewing.append((b.day, "", "", t(_("Broadcast")), titles.get(b.lesson_id, ""), round(b.listened_cs / 6000.0, 1),
                        ""))
    viewing.sort(key=lambda row: (row[0], row[1]))
    tables = [Table("viewing", _("Viewing log"), VIEWING, viewing),
              Table("operating", _("Operating log"), OPERATING,
                    _operating(session, terminals, sessions, lo, hi, local, t)),
              Table("equipment", _("Equipment register"), EQUIPMENT, _equipment(session, devices, local)),
              Table("roster", _("Learner roster"), ROSTER, _roster(session, site, first.year, rules, hrules)),
              Table("feedback", _("Feedback log"), FEEDBACK,
                    [(local(f.at).replace(tzinfo=None), f.author, f.source, f.text) for f in session.scalars(
                        select(SiteFeedback).where(SiteFeedback.site_id == site.id, SiteFeedback.at >= lo,
                                                   SiteFeedback.at < hi).order_by(SiteFeedback.at))])]
    meta = {"site": site.code, "name": site.name, "township": site.township.code, "period": month}
    return tables, meta


def _attendees(session: Session, keys: list[str]) -> dict[str, list[str]]:
    """Names of the members present at each session (an operator's removal outranks every source)."""
    state: dict[tuple[str, int], bool] = {}
    for key, member_id, removed in session.execute(
            select(SessionAttendee.session_key, SessionAttendee.member_id, SessionAttendee.removed)
            .where(SessionAttendee.session_key.in_(keys))):
        state[(key, member_id)] = state.get((key, member_id), True) and not removed
    ids = {m for (_k, m), here in state.items() if here}
    names = dict(session.execute(select(Member.id, Member.name).where(Member.id.in_(ids))).all()) if ids else {}
    out: dict[str, list[str]] = defaultdict(list)
    for (key, member_id), here in sorted(state.items(), key=lambda kv: (kv[0][0], names.get(kv[0][1], ""))):
        if here:
            out[key].append(names[member_id])
    return out


def _operating(session: Session, terminals: list[str], sessions, lo: datetime, hi: datetime, local,
               t) -> list[tuple]:
    rows = []
    days: dict[date, list] = {}
    for s in sessions:
        if s.device_uid:
            day = local(s.started_at).date()
            span = days.setdefault(day, [s.started_at, s.ended_at, s.device_uid])
            span[0], span[1] = min(span[0], s.started_at), max(span[1], s.ended_at)
    for day, (start, end, uid) in sorted(days.items()):
        rows.append((local(start).replace(tzinfo=None), t(_("In use")), f"{local(start):%H:%M}-{local(end):%H:%M}",
                     uid, ""))
    if terminals:
        for uid, at, kind, body in session.execute(
                select(DeviceEvent.device_uid, DeviceEvent.at, DeviceEvent.type, DeviceEvent.body)
                .where(DeviceEvent.type.in_(("command", "error")), DeviceEvent.device_uid.in_(terminals),
                       DeviceEvent.at >= lo, DeviceEvent.at < hi)):
            if kind == "command":
                detail = f"{body.get('name') or ''}: {body.get('result') or ''} {body.get('message') or ''}".strip()
                rows.append((local(at).replace(tzinfo=None), t(_("Command")), detail, uid, ""))
            else:
                rows.append((local(at).replace(tzinfo=None), t(_("Failure")),
                             f"{body.get('code') or ''}: {body.get('message') or ''}", uid, ""))
        for uid, body, received in session.execute(select(DeviceStatus.device_uid, DeviceStatus.body,
                                                          DeviceStatus.received_at)
                                                   .where(DeviceStatus.device_uid.in_(terminals))):
            if lo <= received < hi:
                state = t(_("Online") if body.get("online") else _("Offline"))
                rows.append((local(received).replace(tzinfo=None), state,
                             f"sync {body.get('sync', '')} {body.get('sync_reason', '')}".strip(), uid,
                             body.get("manifest_version")))
    rows.sort(key=lambda r: (r[0], r[1]))
    return rows


def _equipment(session: Session, devices, local) -> list[tuple]:
    status = {uid: (body, received) for uid, body, received in session.execute(
        select(DeviceStatus.device_uid, DeviceStatus.body, DeviceStatus.received_at)
        .where(DeviceStatus.device_uid.in_([d.uid for d in devices])))}
    rows = []
    for d in devices:
        body, seen = status.get(d.uid, ({}, None))
        storage = (f"{body['storage_free_mb']} / {body['storage_total_mb']}"
                   if "storage_free_mb" in body and "storage_total_mb" in body else "")
        rows.append((d.kind, d.name, d.uid, local(d.first_enrolled_at).date() if d.first_enrolled_at else None,
                     body.get("agent_version", ""), storage, local(seen).replace(tzinfo=None) if seen else None,
                     d.state))
    return rows


def _roster(session: Session, site: Site, year: int, rules: Rules, hrules: HourRules) -> list[tuple]:
    ids = list(session.scalars(select(Member.id).where(Member.site_id == site.id)))
    report = hours_mod.collect(session, year, rules, hrules, member_ids=ids)
    return [(m.member_no, m.name, m.role, m.quota, m.hours) for m in report.members]


def add_feedback(session: Session, site_code: str, text: str, author: str, now: datetime, scope: Scope,
                 source: str = "operator") -> SiteFeedback:
    """Record a feedback entry at SITE_CODE (an operator of another township is refused)."""
    site = _site(session, site_code, scope)
    text = (text or "").strip()
    if not text or len(text) > 1000:
        raise Invalid("bad_feedback", _l("text: write 1 to 1000 characters of feedback."))
    row = SiteFeedback(site_id=site.id, at=now, author=author, source=source, text=text)
    session.add(row)
    return row


# ---------------------------------------------------------------------------------------------------------------
# The month's check of every site


@dataclass
class SiteMonth:
    """One site's month against the site rules."""

    township: str
    site: str
    name: str
    sessions: int
    viewing_hours: float
    classes_in_quarter: int
    short: list[str]


def shortfalls(session: Session, month: str, rules: Rules, site_rules: SiteRules, *,
               township: Optional[str] = None) -> list[SiteMonth]:
    """Every site (of TOWNSHIP) with its month against the site rules; ``short`` names each rule it misses."""
    first, last = parse_month(month)
    lo, hi = _instants(first, last, rules)
    q_first = date(first.year, 3 * ((first.month - 1) // 3) + 1, 1)
    q_lo, q_hi = _instants(q_first, parse_month(f"{q_first.year}-{q_first.month + 2:02d}")[1], rules)
    sites = select(Site.id, Site.code, Site.name, Township.code).join(Township, Township.id == Site.township_id)
    if township:
        sites = sites.where(Township.code == township)
    held = dict(session.execute(select(ClassSession.site_id, func.count())
                                .where(ClassSession.is_class.is_(True), ClassSession.started_at >= lo,
                                       ClassSession.started_at < hi).group_by(ClassSession.site_id)).all())
    viewed = defaultdict(float)
    for site_id, seconds in session.execute(select(ClassSession.site_id, func.sum(ClassSession.listened_s))
                                            .where(ClassSession.started_at >= lo, ClassSession.started_at < hi)
                                            .group_by(ClassSession.site_id)):
        viewed[site_id] += float(seconds or 0)
    for site_id, cs in session.execute(select(BroadcastDay.site_id, func.sum(BroadcastDay.listened_cs))
                                       .where(BroadcastDay.day >= first, BroadcastDay.day <= last)
                                       .group_by(BroadcastDay.site_id)):
        viewed[site_id] += float(cs or 0) / 100.0
    quarter = dict(session.execute(select(ClassSession.site_id, func.count())
                                   .where(ClassSession.is_class.is_(True), ClassSession.started_at >= q_lo,
                                          ClassSession.started_at < q_hi).group_by(ClassSession.site_id)).all())
    out = []
    for site_id, code, name, town in session.execute(sites.order_by(Township.code, Site.code)):
        hours = round(viewed.get(site_id, 0.0) / 3600.0, 1)
        short = []
        if held.get(site_id, 0) < site_rules.sessions_per_month:
            short.append("sessions")
        if hours < site_rules.viewing_hours_per_month:
            short.append("viewing_hours")
        if quarter.get(site_id, 0) < site_rules.classes_per_quarter:
            short.append("class_per_quarter")
        out.append(SiteMonth(town, code, name, held.get(site_id, 0), hours, quarter.get(site_id, 0), short))
    return out
