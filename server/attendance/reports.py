"""Participation reports: one function, ``participation``, computes every number a report shows, from the
aggregates (never the raw events), so its cost follows members, sites, lessons and sessions. The screen, the API,
CSV, XLSX and JSON all take their numbers from the ``Report`` it returns (``server.attendance.report_export`` formats
them).

Definitions (docs/OPERATIONS.md, "Attendance"):
- a member is **active** in a period when they were a member on at least one of its days;
- a member is **trained** in a period when they completed at least one mandatory lesson meant for them, or attended
  at least one class session, in the period;
- the **participation rate** is trained active members divided by active members;
- a programme's period is its window plus the grace period; its completions are those of its own lessons.
"""

from __future__ import annotations

import gc
import threading
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Optional

from sqlalchemy import String, func, or_, select, type_coerce
from sqlalchemy.orm import Session

from server.accounts.scope import COUNTY, Scope
from server.attendance.models import BroadcastDay, ClassSession, LessonCoverage, SessionAttendee
from server.attendance.rules import Period, Rules, active_in, parse_period, rate, year
from server.errors import Invalid, NotFound
from server.i18n import _l
from server.lessons.models import Lesson
from server.org.models import Group, GroupLink, Member, Site, Township
from server.programmes.models import Programme, ProgrammeItem


@dataclass
class Row:
    """One site, township or the county: counts that add up from members."""

    level: str
    code: str
    name: str
    township: str = ""
    active: int = 0
    trained: int = 0
    completed_all: int = 0
    classes: int = 0
    broadcast_days: int = 0
    clock_flagged: int = 0

    @property
    def rate(self) -> Optional[float]:
        return rate(self.trained, self.active)

    def add(self, other: "Row") -> None:
        for name in ("active", "trained", "completed_all", "classes", "broadcast_days", "clock_flagged"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class MemberRow:
    """One active member's training in the period."""

    member_no: str
    name: str
    site: str
    site_name: str
    township: str
    branch: str
    mandatory: int
    completed: int
    classes: int
    last_training: Optional[date]
    clock_flagged: int

    @property
    def trained(self) -> bool:
        return self.completed > 0 or self.classes > 0


@dataclass
class Report:
    """Every number of a participation report."""

    period: Period
    generated_at: datetime
    township: Optional[str]
    county: Row
    townships: list[Row]
    sites: list[Row]
    members: list[MemberRow]
    sites_without_class: list[Row]
    untrained_this_year: list[MemberRow]
    year_label: str = ""
    notes: list[str] = field(default_factory=list)
    timezone: str = "UTC"  # the county's: generated_at is shown in it
    grace_days: int = 0  # a programme period: the days after its window its end date includes


# ---------------------------------------------------------------------------------------------------------------


def resolve_period(session: Session, text: str, rules: Rules, *,
                   programme: bool = False) -> tuple[Period, Optional[str]]:
    """A period from '2026', '2026-Q4', 'A..B' or a programme code (returned as the second value).

    With PROGRAMME, TEXT is a programme code only: a code that reads like a period (the programme '2026-Q4') means
    the programme, its window plus the grace days, not the calendar quarter.
    """
    if not programme:
        try:
            return parse_period(text), None
        except ValueError as period_error:
            refusal = Invalid("unknown_period", _l("{period_error}; or the code of a published programme (there is no "
                                                   "published programme {text!r}).",
                                                   period_error=period_error, text=text))
    else:
        refusal = Invalid("unknown_programme", _l("There is no published programme {text!r}. See GET "
                                                  "/api/v1/programmes.",
                                                  text=text))
    window = session.execute(select(Programme.valid_from, Programme.valid_until)
                             .where(Programme.code == text, Programme.state != "draft")
                             .order_by(Programme.version.desc()).limit(1)).first()
    if window is None:
        raise refusal
    end = window.valid_until + timedelta(days=rules.grace_days)
    return Period(text, "programme", window.valid_from, end), text


def _mandatory(session: Session, programme: Optional[str]) -> dict[str, list[tuple[frozenset[int], frozenset[str]]]]:
    """Per programme code, its mandatory items as (lesson ids incl. language variants, target groups)."""
    latest = select(Programme.code, func.max(Programme.version).label("v")).where(Programme.state != "draft")
    if programme:
        latest = latest.where(Programme.code == programme)
    latest = latest.group_by(Programme.code).subquery()
    rows = session.execute(
        select(Programme.code, ProgrammeItem.lesson_id, ProgrammeItem.variant_lesson_ids, ProgrammeItem.groups)
        .join(ProgrammeItem, ProgrammeItem.programme_id == Programme.id)
        .join(latest, (latest.c.code == Programme.code) & (latest.c.v == Programme.version))
        .where(ProgrammeItem.mandatory.is_(True)).order_by(Programme.code, ProgrammeItem.position)).all()
    items: dict[str, list] = defaultdict(list)
    for code, lesson, variants, groups in rows:
        items[code].append((frozenset([lesson, *(variants or [])]), frozenset(groups or [])))
    return items


def _member_groups(session: Session) -> tuple[dict[int, set[str]], dict[int, set[str]]]:
    by_member: dict[int, set[str]] = defaultdict(set)
    by_site: dict[int, set[str]] = defaultdict(set)
    for key, member, site in session.execute(select(Group.key, GroupLink.member_id, GroupLink.site_id)
                                             .join(GroupLink, GroupLink.group_id == Group.id)
                                             .where(or_(GroupLink.member_id.is_not(None),
                                                        GroupLink.site_id.is_not(None)))):
        if member is not None:
            by_member[member].add(key)
        if site is not None:
            by_site[site].add(key)
    return by_member, by_site


class _Facts:
    """What the aggregates say, read once per report however many periods it looks at (the report's period and the
    year of the home-visit list): completions, mandatory items, group memberships and class attendance."""

    def __init__(self, session: Session, rules: Rules, start: date, end: date):
        self.rules = rules
        self.mandatory = _mandatory(session, None)
        self.by_member, self.by_site = _member_groups(session)
        zone = rules.zone
        self.completions: dict[int, list[tuple[str, int, date, int]]] = defaultdict(list)
        # The one part of a report that grows with what members heard (up to members x lessons rows): the time is
        # read as the database gives it, without SQLAlchemy's per-value conversion.
        for member, code, lesson, done, flagged in session.execute(
                select(LessonCoverage.member_id, LessonCoverage.programme, LessonCoverage.lesson_id,
                       type_coerce(func.min(LessonCoverage.completed_at), String),
                       func.max(LessonCoverage.clock_flagged))
                .where(LessonCoverage.completed_at.is_not(None))
                .group_by(LessonCoverage.member_id, LessonCoverage.programme, LessonCoverage.lesson_id)):
            when = datetime.fromisoformat(done) if isinstance(done, str) else done
            self.completions[member].append((code, lesson, when.replace(tzinfo=timezone.utc).astimezone(zone).date(),
                                             flagged))
        self.classes = _classes(session, Period("", "range", start, end), rules)


def _training(facts: _Facts, period: Period, programme: Optional[str], member_sites: dict[int, int]):
    """Per member: (mandatory items meant for them, completed, classes attended, last day, flagged)."""
    mandatory = {programme: facts.mandatory.get(programme, [])} if programme else facts.mandatory
    result = {}
    for member_id in sorted(member_sites):
        groups = facts.by_member.get(member_id, set()) | facts.by_site.get(member_sites[member_id], set())
        done = {(code, lesson): (day, flagged) for code, lesson, day, flagged in facts.completions.get(member_id, ())
                if (code == programme if programme else period.contains(day))}
        meant = completed = flagged = 0
        last: Optional[date] = None
        for code, items in mandatory.items():
            for lessons, targets in items:
                if targets and targets.isdisjoint(groups):
                    continue
                meant += 1
                hits = [done[(code, lesson)] for lesson in lessons if (code, lesson) in done]
                if hits:
                    completed += 1
                    day = min(h[0] for h in hits)
                    last = day if last is None else max(last, day)
                    flagged += 1 if any(h[1] for h in hits) else 0
        attended = [c for c in facts.classes.get(member_id, ()) if period.contains(c[0])]
        for day, was_flagged, _key in attended:
            last = day if last is None else max(last, day)
            flagged += 1 if was_flagged else 0
        result[member_id] = (meant, completed, len(attended), last, flagged)
    return result


def _session_filter(period: Period, rules: Rules):
    zone = rules.zone
    start = datetime.combine(period.start, datetime.min.time(), zone)
    end = datetime.combine(period.end + timedelta(days=1), datetime.min.time(), zone)
    return (ClassSession.started_at >= start) & (ClassSession.started_at < end)


def _classes(session: Session, period: Period, rules: Rules,
             member_ids: Optional[set[int]] = None) -> dict[int, list]:
    """Per member: (day, clock flagged, session key) of each class session attended in the period."""
    rows = session.execute(
        select(SessionAttendee.member_id, SessionAttendee.session_key, SessionAttendee.removed,
               ClassSession.started_at, ClassSession.clock_flagged)
        .join(ClassSession, ClassSession.key == SessionAttendee.session_key)
        .where(ClassSession.is_class.is_(True), _session_filter(period, rules))).all()
    present: dict[tuple[int, str], tuple[date, bool]] = {}
    removed: set[tuple[int, str]] = set()
    for member, key, was_removed, started, flagged in rows:
        if was_removed:  # an operator's removal outranks a check-in, a roster and an earlier addition
            removed.add((member, key))
        else:
            present[(member, key)] = (started.astimezone(rules.zone).date(), flagged > 0)
    out: dict[int, list] = defaultdict(list)
    for (member, key), (day, flagged) in sorted(present.items()):
        if (member, key) not in removed and (member_ids is None or member in member_ids):
            out[member].append((day, flagged, key))
    return out


_gc_lock = threading.Lock()
_gc_holders = 0
_gc_was_enabled = True


@contextmanager
def _without_cycle_collection():
    """Pause Python's cycle collector while a report is built: it allocates tens of thousands of short-lived,
    acyclic objects, and the collector's passes over everything alive were a quarter of a large report's time.
    Reference counting still frees them; the collector resumes when the last report in the process ends."""
    global _gc_holders, _gc_was_enabled
    with _gc_lock:
        if _gc_holders == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_holders += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_holders -= 1
            if _gc_holders == 0 and _gc_was_enabled:
                gc.enable()


def participation(session: Session, period_text: str, rules: Rules, *, township: Optional[str] = None,
                  now: datetime, programme: bool = False) -> Report:
    """Compute the participation report for a period or programme (PROGRAMME: PERIOD_TEXT is a programme code),
    for the county or one TOWNSHIP."""
    with _without_cycle_collection():
        return _participation(session, period_text, rules, township=township, now=now, programme=programme)


def _participation(session: Session, period_text: str, rules: Rules, *, township: Optional[str] = None,
                   now: datetime, programme: bool = False) -> Report:
    """Compute the participation report for a period or programme (PROGRAMME: PERIOD_TEXT is a programme code),
    for the county or one TOWNSHIP."""
    period, programme = resolve_period(session, period_text, rules, programme=programme)
    site_q = select(Site.id, Site.code, Site.name, Township.code, Township.name).join(Township)
    if township:
        site_q = site_q.where(Township.code == township)
    site_rows = session.execute(site_q.order_by(Township.code, Site.code)).all()
    if township and not site_rows:
        raise NotFound("unknown_township", _l("There is no township {township!r} with sites.", township=township))
    site_info = {r[0]: r for r in site_rows}
    towns = {r[3]: r[4] for r in site_rows}

    everyone = session.execute(select(Member.id, Member.member_no, Member.name, Member.site_id, Member.branch,
                                      Member.joined_on, Member.left_on)
                               .where(Member.site_id.in_(list(site_info)))).all()

    def members_of(p: Period):
        return {mid: (no, name, site_id, branch) for mid, no, name, site_id, branch, joined, left in everyone
                if active_in(joined, left, p)}

    # The home-visit list is for the year the period ends in (for a programme, the year its own window ends in,
    # not the grace days after it); both periods are read from the aggregates in one go.
    last_day = period.end - timedelta(days=rules.grace_days) if programme else period.end
    this_year = year(last_day.year)
    facts = _Facts(session, rules, min(period.start, this_year.start), max(period.end, this_year.end))
    members = members_of(period)
    trained = _training(facts, period, programme, {m: v[2] for m, v in members.items()})
    sites = {sid: Row("site", code, name, tcode) for sid, code, name, tcode, _ in site_rows}
    member_rows = []
    for mid, (no, name, site_id, branch) in sorted(members.items(), key=lambda m: m[1][0]):
        meant, completed, classes, last, flagged = trained[mid]
        info = site_info[site_id]
        row = MemberRow(no, name, info[1], info[2], info[3], branch or "", meant, completed, classes, last, flagged)
        member_rows.append(row)
        site = sites[site_id]
        site.active += 1
        site.trained += 1 if row.trained else 0
        site.completed_all += 1 if meant and completed == meant else 0
        site.clock_flagged += flagged
    for site_id, count, flagged in session.execute(
            select(ClassSession.site_id, func.count(), func.sum(ClassSession.clock_flagged))
            .where(ClassSession.is_class.is_(True), _session_filter(period, rules),
                   ClassSession.site_id.in_(list(site_info))).group_by(ClassSession.site_id)):
        sites[site_id].classes = count
    for site_id, days in session.execute(
            select(BroadcastDay.site_id, func.count(func.distinct(BroadcastDay.day)))
            .where(BroadcastDay.day >= period.start, BroadcastDay.day <= period.end,
                   BroadcastDay.site_id.in_(list(site_info))).group_by(BroadcastDay.site_id)):
        sites[site_id].broadcast_days = days
    town_rows = {code: Row("township", code, towns[code], code) for code in towns}
    county = Row("county", "county", rules.county_name)
    for site in sites.values():
        town_rows[site.township].add(site)
        county.add(site)
    site_list = sorted(sites.values(), key=lambda r: (r.township, r.code))

    # The home-visit list: active members with no training in that year.
    if period.kind == "year" and not programme:
        untrained = [m for m in member_rows if not m.trained]
    else:
        year_members = members_of(this_year)
        year_training = _training(facts, this_year, None, {m: v[2] for m, v in year_members.items()})
        untrained = []
        for mid, (no, name, site_id, branch) in sorted(year_members.items(), key=lambda m: m[1][0]):
            meant, completed, classes, last, flagged = year_training[mid]
            if not completed and not classes:
                info = site_info[site_id]
                untrained.append(MemberRow(no, name, info[1], info[2], info[3], branch or "", meant, 0, 0, None, 0))
    return Report(period=period, generated_at=now, township=township, county=county,
                  townships=[town_rows[c] for c in sorted(town_rows)], sites=site_list, members=member_rows,
                  sites_without_class=[s for s in site_list if s.classes == 0], untrained_this_year=untrained,
                  year_label=this_year.label, timezone=rules.timezone,
                  grace_days=rules.grace_days if period.kind == "programme" else 0)


# ---------------------------------------------------------------------------------------------------------------
# One member's record, for the points-based member evaluations


@dataclass
class MemberRecord:
    member_no: str
    name: str
    site: str
    township: str
    lessons: list[dict[str, Any]]
    classes: list[dict[str, Any]]


def member_record(session: Session, member_no: str, period_text: str, rules: Rules, *,
                  programme: bool = False, scope: Scope = COUNTY) -> MemberRecord:
    """Lessons completed and classes attended by one member (in SCOPE, else 403) in a period (or programme), with
    dates."""
    period, programme = resolve_period(session, period_text, rules, programme=programme)
    row = session.execute(select(Member.id, Member.member_no, Member.name, Site.code, Township.code)
                          .join(Site, Site.id == Member.site_id).join(Township)
                          .where(Member.member_no == member_no)).first()
    if row is None:
        raise NotFound("unknown_member", _l("There is no member {member_no!r}.", member_no=member_no))
    if not scope.covers(row[4]):
        raise scope.refuse(f"Member {member_no}")
    mandatory = _mandatory(session, programme)
    required = {(code, lesson) for code, items in mandatory.items() for lessons, _ in items for lesson in lessons}
    titles = dict(session.execute(select(Lesson.id, Lesson.title)).all())
    lessons = []
    query = select(LessonCoverage.programme, LessonCoverage.lesson_id, func.min(LessonCoverage.completed_at),
                   func.max(LessonCoverage.clock_flagged)).where(
        LessonCoverage.member_id == row.id, LessonCoverage.completed_at.is_not(None))
    if programme:
        query = query.where(LessonCoverage.programme == programme)
    for code, lesson, done, flagged in session.execute(
            query.group_by(LessonCoverage.programme, LessonCoverage.lesson_id)):
        day = done.astimezone(rules.zone).date()
        if programme or period.contains(day):
            lessons.append({"programme": code, "lesson": lesson, "title": titles.get(lesson, ""),
                            "completed_on": day.isoformat(), "mandatory": (code, lesson) in required,
                            "clock_flagged": bool(flagged)})
    lessons.sort(key=lambda x: (x["completed_on"], x["programme"], x["lesson"]))
    classes = []
    attended = {key for _day, _flagged, key in _classes(session, period, rules, {row.id}).get(row.id, [])}
    sources = defaultdict(set)
    for key, how in session.execute(select(SessionAttendee.session_key, SessionAttendee.source).where(
            SessionAttendee.member_id == row.id, SessionAttendee.removed.is_(False),
            SessionAttendee.session_key.in_(sorted(attended)))):
        sources[key].add(how)
    for key, started, site, lesson, flagged in session.execute(
            select(ClassSession.key, ClassSession.started_at, Site.code, ClassSession.lesson_id,
                   ClassSession.clock_flagged).join(Site, Site.id == ClassSession.site_id)
            .where(ClassSession.key.in_(sorted(attended))).order_by(ClassSession.started_at, ClassSession.key)):
        classes.append({"session": key, "date": started.astimezone(rules.zone).date().isoformat(), "site": site,
                        "lesson": lesson, "title": titles.get(lesson, "") if lesson else "",
                        "recorded_by": ",".join(sorted(sources[key])), "clock_flagged": flagged > 0})
    return MemberRecord(row.member_no, row.name, row[3], row[4], lessons, classes)

