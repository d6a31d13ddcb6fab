"""What staff enter about classes: sessions held without a terminal, rosters (CSV), and attendees an operator adds
or removes. Every change is audited, and moves the change mark of the class's county day (``marks.bump``: kept
reports whose window reaches that day are computed again); none is touched by ``lessoncast attendance rebuild``.

Operators act only on their own township (server/accounts/scope.py): the session's site and every member they add or
remove must be in it. A roster is checked whole before anything is stored.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Optional

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.accounts.scope import COUNTY, Scope
from server.attendance import marks
from server.attendance.models import ClassSession, SessionAttendee
from server.attendance.rules import FIRST_DAY, LAST_DAY, Rules
from server.audit import AuditEntry
from server.errors import DomainError, Forbidden, Invalid, NotFound
from server.i18n import _l
from server.org.models import Member, Site, Township

# English or Chinese headers, as an Excel sheet from a township office would have them.
ROSTER_HEADERS = {
    "session": "session", "会议": "session", "场次": "session",
    "site": "site", "村": "site", "村（点）代码": "site", "站点": "site",
    "date": "date", "日期": "date",
    "time": "time", "时间": "time",
    "member": "member", "党员编号": "member", "member_no": "member",
    "title": "title", "课程名称": "title", "主题": "title",
}


def _site(session: Session, code: str, scope: Scope) -> Site:
    site = session.scalar(select(Site).where(Site.code == code))
    if site is None:
        raise Invalid("unknown_site", _l("There is no site {code!r}. See GET /api/v1/sites.", code=code))
    return scope.check_site(site)


def manual_key(site: str, day: date, at: time) -> str:
    """The key of a class entered by staff at SITE on DAY at AT (one per site and start time)."""
    return f"manual:{site}:{day.isoformat()}T{at.strftime('%H:%M')}"


def add_session(session: Session, rules: Rules, site_code: str, day: date, at: time, title: str, actor: str,
                now: datetime, scope: Scope = COUNTY) -> ClassSession:
    """A class held at a site (in SCOPE) without a terminal's record (a DVD, a speaker); it counts as a class."""
    site = _site(session, site_code, scope)
    key = manual_key(site.code, day, at)
    row = session.scalar(select(ClassSession).where(ClassSession.key == key))
    if row is None:
        started = datetime.combine(day, at, rules.zone)
        row = ClassSession(key=key, site_id=site.id, source="manual", started_at=started, ended_at=started,
                           listened_s=0.0, is_class=True, trigger="manual", title=title[:200], created_by=actor,
                           clock_flagged=0)
        session.add(row)
        session.add(AuditEntry(at=now, actor=actor, action="session.add", subject=key, details={"title": title}))
        session.flush()
        marks.bump(session, [day])
    return row


def get_session(session: Session, key: str, scope: Scope = COUNTY) -> ClassSession:
    """The class session KEY, or NotFound (Forbidden when it was held outside SCOPE)."""
    row = session.scalar(select(ClassSession).where(ClassSession.key == key))
    if row is None:
        raise NotFound("unknown_session", _l("There is no session {key!r}. See GET /api/v1/sessions.", key=key))
    scope.check_site_id(session, row.site_id, f"Session {key}")
    return row


def _member(session: Session, member_no: str, scope: Scope) -> Member:
    member = session.scalar(select(Member).where(Member.member_no == member_no))
    if member is None:
        raise Invalid("unknown_member", _l("There is no member {member_no!r}. Import the members first.",
                                           member_no=member_no))
    return scope.check_member(session, member)


def set_attendee(session: Session, key: str, member_no: str, present: bool, actor: str, now: datetime,
                 scope: Scope = COUNTY, reason: str = "", *, rules: Optional[Rules] = None) -> None:
    """Add (PRESENT) or remove a member at a session, as an operator; a removal outranks a check-in or roster.
    The session and the member must both be in SCOPE: either way the member's township's report changes. The
    mark moved is the session's county day under RULES (without them, the day before its UTC day: no zone is
    more than a day behind UTC, so that mark reaches every window the session is in)."""
    held = get_session(session, key, scope)
    member = _member(session, member_no, scope)
    row = session.scalar(select(SessionAttendee).where(SessionAttendee.session_key == key,
                                                       SessionAttendee.member_id == member.id,
                                                       SessionAttendee.source == "operator"))
    if row is None:
        row = SessionAttendee(session_key=key, member_id=member.id, source="operator")
        session.add(row)
    row.removed, row.at, row.actor = not present, now, actor
    session.add(AuditEntry(at=now, actor=actor, action="attendee.add" if present else "attendee.remove",
                           subject=key, details={"member": member_no}, note=reason[:500]))
    session.flush()
    marks.bump(session, [rules.local_day(held.started_at) if rules is not None
                         else held.started_at.astimezone(timezone.utc).date() - timedelta(days=1)])


def attendees(session: Session, key: str, scope: Scope = COUNTY) -> list[dict[str, Any]]:
    """Who attended a session (held in SCOPE), with every source that says so and whether an operator removed
    them."""
    get_session(session, key, scope)
    by_member: dict[str, dict[str, Any]] = {}
    for no, name, source, removed, at, actor in session.execute(
            select(Member.member_no, Member.name, SessionAttendee.source, SessionAttendee.removed, SessionAttendee.at,
                   SessionAttendee.actor).join(Member, Member.id == SessionAttendee.member_id)
            .where(SessionAttendee.session_key == key).order_by(Member.member_no, SessionAttendee.source)):
        entry = by_member.setdefault(no, {"member": no, "name": name, "sources": [], "removed": False})
        if removed:
            entry["removed"] = True
            entry["removed_by"] = actor
        else:
            entry["sources"].append(source)
    for entry in by_member.values():
        entry["present"] = bool(entry["sources"]) and not entry["removed"]
    return list(by_member.values())


@dataclass(frozen=True)
class RosterResult:
    sessions: int
    attendees: int
    created_sessions: int


def import_roster(session: Session, rules: Rules, text: str, actor: str, now: datetime,
                  scope: Scope = COUNTY, filename: str = "roster.csv") -> RosterResult:
    """Store a roster CSV: one member per row, for an existing session (``session``) or a class at ``site`` on
    ``date`` (``time`` optional, default 09:00), created if needed. All rows are checked before any is stored;
    every session, site and member must be in SCOPE (else a 403 naming the lines, and nothing is stored)."""
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if not header:
        raise Invalid("csv_invalid", _l("{filename}: empty; the first line names the columns (session or "
                                        "site,date[,time]; member).",
                                        filename=filename))
    columns = [ROSTER_HEADERS.get(h.strip().lstrip("\ufeff").lower(), ROSTER_HEADERS.get(h.strip().lstrip("\ufeff")))
               for h in header]
    unknown = [h for h, c in zip(header, columns) if c is None]
    if unknown or "member" not in columns or not ({"session"} <= set(columns) or {"site", "date"} <= set(columns)):
        raise Invalid("csv_invalid", _l("{filename}:1: columns must be member plus either session or site and date "
                                        "(and optionally time, title); unknown: {value}",
                                        filename=filename, value=', '.join(unknown) or '-'))
    errors: list[str] = []
    planned: list[tuple[Any, str, str]] = []
    lines: dict[Any, int] = {}  # the first line naming each session or class, for the refusal
    towns: dict[str, str] = {}
    members: dict[str, int] = {}
    for no, member_id, town in session.execute(select(Member.member_no, Member.id, Township.code)
                                               .join(Site, Site.id == Member.site_id)
                                               .join(Township, Township.id == Site.township_id)):
        members[no], towns[no] = member_id, town
    foreign: list[str] = []
    for line, raw in enumerate(reader, 2):
        if not any(cell.strip() for cell in raw):
            continue
        row = {c: (raw[i].strip() if i < len(raw) else "") for i, c in enumerate(columns)}
        member = row.get("member", "")
        if member not in members:
            errors.append(f"{filename}:{line}: member: {member!r} is not a known member number")
        elif not scope.covers(towns[member]):
            foreign.append(f"{filename}:{line}: {scope.refuse(f'Member {member}').message}")
        if row.get("session"):
            target: Any = row["session"]
        else:
            try:
                day = date.fromisoformat(row.get("date", ""))
                at = time.fromisoformat(row["time"]) if row.get("time") else time(9, 0)
                if not FIRST_DAY <= day <= LAST_DAY:
                    raise ValueError
            except ValueError:
                errors.append(f"{filename}:{line}: date/time: {row.get('date')!r} {row.get('time', '')!r} is not "
                              "YYYY-MM-DD [HH:MM]")
                continue
            target = (row.get("site", ""), day, at)
        planned.append((target, member, row.get("title", "")))
        lines.setdefault(target, line)
    if errors:
        raise Invalid("csv_invalid", _l("{count} problem(s), nothing was stored:\n{problems}",
                                        count=len(errors), problems="\n".join(errors[:50])))
    if foreign:
        raise Forbidden("other_township", _l("{count} member(s) of another township, nothing was stored:\n{rows}",
                                             count=len(foreign), rows="\n".join(foreign[:50])))
    if not planned:
        raise Invalid("csv_invalid", _l("{filename}: no rows below the header", filename=filename))
    keys: dict[Any, str] = {}
    created = 0
    for target, _member_no, title in planned:
        if target in keys:
            continue
        try:
            if isinstance(target, str):
                keys[target] = get_session(session, target, scope).key
            else:
                existed = session.scalar(select(func.count()).select_from(ClassSession).where(
                    ClassSession.key == manual_key(target[0], target[1], target[2])))
                keys[target] = add_session(session, rules, target[0], target[1], target[2], title, actor, now,
                                           scope).key
                created += 0 if existed else 1
        except DomainError as exc:
            raise type(exc)(exc.code, f"{filename}:{lines[target]}: {exc.message} Nothing was stored.") from None
    count = 0
    for target, member_no, _title in planned:
        key = keys[target]
        exists = session.scalar(select(SessionAttendee.id).where(
            SessionAttendee.session_key == key, SessionAttendee.member_id == members[member_no],
            SessionAttendee.source == "roster"))
        if exists is None:
            session.add(SessionAttendee(session_key=key, member_id=members[member_no], source="roster",
                                        removed=False, at=now, actor=actor))
            count += 1
    session.add(AuditEntry(at=now, actor=actor, action="roster.import", subject=filename,
                           details={"sessions": len(set(keys.values())), "attendees": count, "created": created}))
    session.flush()
    marks.bump(session, [rules.local_day(started) for started in session.scalars(
        select(ClassSession.started_at).where(ClassSession.key.in_(sorted(set(keys.values())))))])
    return RosterResult(len(set(keys.values())), count, created)


def list_sessions(session: Session, rules: Rules, start: date, end: date, *, township: Optional[str] = None,
                  site: Optional[str] = None, classes_only: bool = False) -> list[dict[str, Any]]:
    """Sessions that started between START and END (county days), with their attendee count."""
    lo = datetime.combine(start, time(), rules.zone)
    hi = datetime.combine(end, time(23, 59, 59, 999999), rules.zone)
    query = (select(ClassSession, Site.code, Township.code).join(Site, Site.id == ClassSession.site_id)
             .join(Township, Township.id == Site.township_id)
             .where(ClassSession.started_at >= lo, ClassSession.started_at <= hi))
    if township:
        query = query.where(Township.code == township)
    if site:
        query = query.where(Site.code == site)
    if classes_only:
        query = query.where(ClassSession.is_class.is_(True))
    out = []
    for row, site_code, town in session.execute(query.order_by(ClassSession.started_at, ClassSession.key)):
        present = [a for a in attendees(session, row.key) if a["present"]]
        out.append({"key": row.key, "site": site_code, "township": town, "source": row.source,
                    "device": row.device_uid, "programme": row.programme, "lesson": row.lesson_id,
                    "trigger": row.trigger, "slot_kind": row.slot_kind, "is_class": row.is_class,
                    "started_at": row.started_at.isoformat(), "ended_at": row.ended_at.isoformat(),
                    "listened_s": row.listened_s, "clock_flagged": row.clock_flagged, "title": row.title,
                    "attendees": len(present)})
    return out
