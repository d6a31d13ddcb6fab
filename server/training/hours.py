"""Study hours (学时): every member's hours of a year against their role's quota, by site and township, and one
member's record listing every source with its date.

One function, ``collect``, gathers every member's sources from the attendance aggregates (completed lessons,
classes attended), the off-system trainings and the lessons' credited hours; the report, the member record and
every export are laid out from what it returns, so they cannot disagree. Its cost follows members, completions,
attendees and trainings, never the raw events.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from datetime import date, datetime, time, timezone
from typing import Optional

from sqlalchemy import String, select, type_coerce
from sqlalchemy.orm import Session

from server.attendance.models import ClassSession, LessonCoverage, SessionAttendee
from server.attendance.rules import Rules
from server.errors import Invalid, NotFound
from server.i18n import _l
from server.lessons.models import Lesson
from server.org.models import Member, Site, Township
from server.training import rules as hour_rules
from server.training.models import MakeupOwed, MakeupSession, MemberRole, OffSystemTraining
from server.training.rules import HourRules, Source


def hour_rules_from(settings) -> HourRules:
    """The study-hour rules of SETTINGS."""
    quotas = settings.training_quotas
    if isinstance(quotas, str):
        from server.settings import parse_quotas

        quotas = parse_quotas(quotas)
    return HourRules(minutes_per_hour=float(settings.training_minutes_per_hour), quotas=dict(quotas))


@dataclass
class MemberHours:
    """One member's study hours in a year."""

    member_id: int
    member_no: str
    name: str
    township: str
    site: str
    site_name: str
    role: str
    quota: float
    sources: list[Source] = field(default_factory=list)

    def hours_of(self, kind: str) -> float:
        return self._by_kind.get(kind, 0.0)

    @cached_property
    def _by_kind(self) -> dict[str, float]:
        kinds: dict[str, list[Source]] = defaultdict(list)
        for s in self.sources:
            kinds[s.kind].append(s)
        return {kind: hour_rules.total(rows) for kind, rows in kinds.items()}

    @cached_property
    def hours(self) -> float:
        """The total of every source (worked out once: the report, its areas and exports all ask for it)."""
        return hour_rules.total(self.sources)

    @property
    def below_quota(self) -> bool:
        return self.hours < self.quota


@dataclass
class AreaHours:
    """A site, township or the county: members, how many are below quota, and the hours they earned."""

    level: str
    code: str
    name: str
    township: str = ""
    members: int = 0
    below_quota: int = 0
    hours: float = 0.0

    def add(self, m: MemberHours) -> None:
        self.members += 1
        self.below_quota += m.below_quota
        self.hours = round(self.hours + m.hours, 1)


@dataclass
class HoursReport:
    """Every figure of a study-hours report."""

    year: int
    township: Optional[str]
    generated_at: datetime
    members: list[MemberHours]
    sites: list[AreaHours]
    townships: list[AreaHours]
    county: AreaHours

    @property
    def below_quota(self) -> list[MemberHours]:
        return [m for m in self.members if m.below_quota]


def parse_year(text: str | int) -> int:
    """A report year such as 2026; Invalid naming the form otherwise."""
    try:
        value = int(str(text).strip())
    except ValueError:
        raise Invalid("bad_year", _l("year {text!r} is not a year; write it as 2026.", text=text)) from None
    if not 2000 <= value <= 2099:
        raise Invalid("bad_year", _l("year {year} is outside 2000-2099.", year=value))
    return value


def _bounds(year: int, rules: Rules) -> tuple[datetime, datetime]:
    """The UTC instants that bound YEAR on the county's clock."""
    start = datetime.combine(date(year, 1, 1), time(0), rules.zone).astimezone(timezone.utc)
    end = datetime.combine(date(year + 1, 1, 1), time(0), rules.zone).astimezone(timezone.utc)
    return start, end


def collect(session: Session, year: int, rules: Rules, hrules: HourRules, *, township: Optional[str] = None,
            member_ids: Optional[list[int]] = None, now: Optional[datetime] = None) -> HoursReport:
    """Every active member's study hours in YEAR (of TOWNSHIP, or of MEMBER_IDS), with sites, townships, county."""
    start, end = _bounds(year, rules)
    first, last = date(year, 1, 1), date(year, 12, 31)
    query = (select(Member.id, Member.member_no, Member.name, Site.code, Site.name, Township.code, Township.name)
             .join(Site, Site.id == Member.site_id).join(Township, Township.id == Site.township_id)
             .where((Member.joined_on.is_(None)) | (Member.joined_on <= last))
             .where((Member.left_on.is_(None)) | (Member.left_on >= first)))
    if township:
        query = query.where(Township.code == township)
    if member_ids is not None:
        query = query.where(Member.id.in_(member_ids))
    people = session.execute(query.order_by(Township.code, Site.code, Member.member_no)).all()
    wanted = {p[0] for p in people}
    roles: dict[int, list] = defaultdict(list)
    role_query = select(MemberRole.member_id, MemberRole.role, MemberRole.from_date)
    if member_ids is not None:
        role_query = role_query.where(MemberRole.member_id.in_(wanted))
    for member_id, role, since in session.execute(role_query):
        if member_id in wanted:
            roles[member_id].append((since, role))
    sources = _sources(session, wanted, start, end, first, last, rules, hrules, only=member_ids is not None)
    members, sites, towns = [], {}, {}
    county = AreaHours("county", "county", "")
    for member_id, member_no, name, site_code, site_name, town_code, town_name in people:
        role = hour_rules.role_in_year(roles.get(member_id, []), year)
        m = MemberHours(member_id, member_no, name, town_code, site_code, site_name, role,
                        hour_rules.quota(role, hrules), sorted(sources.get(member_id, []), key=lambda s: s.day))
        members.append(m)
        sites.setdefault(site_code, AreaHours("site", site_code, site_name, town_code)).add(m)
        towns.setdefault(town_code, AreaHours("township", town_code, town_name, town_code)).add(m)
        county.add(m)
    return HoursReport(year, township, now or datetime.now(timezone.utc), members, list(sites.values()),
                       list(towns.values()), county)


def _sources(session: Session, wanted: set[int], start: datetime, end: datetime, first: date, last: date,
             rules: Rules, hrules: HourRules, only: bool = False) -> dict[int, list[Source]]:
    """Every member's sources of hours in the year: classes, lessons (minus those a class played), trainings.

    With ONLY the queries name the WANTED members (a member record, a site's roster); a county report reads every
    row of the year once instead of sending 10,000 ids."""
    out: dict[int, list[Source]] = defaultdict(list)
    ids = list(wanted)

    def of(column, query):
        return query.where(column.in_(ids)) if only else query

    # Classes: a member attends a class by any source unless an operator removed them from it.
    present: dict[tuple[str, int], bool] = {}
    for key, member_id, removed in session.execute(of(SessionAttendee.member_id,
            select(SessionAttendee.session_key, SessionAttendee.member_id, SessionAttendee.removed)
            .join(ClassSession, ClassSession.key == SessionAttendee.session_key)
            .where(ClassSession.is_class.is_(True), ClassSession.started_at >= start,
                   ClassSession.started_at < end))):
        if member_id in wanted:
            present[(key, member_id)] = present.get((key, member_id), True) and not removed
    class_lessons: dict[int, set[int]] = defaultdict(set)
    if present:
        sessions = {row.key: row for row in session.execute(
            select(ClassSession.key, ClassSession.title, ClassSession.lesson_id, ClassSession.started_at,
                   ClassSession.ended_at, Site.name.label("site"))
            .join(Site, Site.id == ClassSession.site_id)
            .where(ClassSession.is_class.is_(True), ClassSession.key.in_({k for k, _m in present})))}
        titles = _lesson_titles(session, {s.lesson_id for s in sessions.values() if s.lesson_id})
        for (key, member_id), here in sorted(present.items()):
            if not here:
                continue
            s = sessions[key]
            if s.lesson_id:
                class_lessons[member_id].add(s.lesson_id)
            title = s.title or titles.get(s.lesson_id, "") or s.site
            out[member_id].append(Source("class", key, title, rules.local_day(s.started_at),
                                         hour_rules.class_hours(s.started_at.timestamp(), s.ended_at.timestamp())))
    owed: dict[tuple[int, int], datetime] = {}  # (member, lesson) -> start of the class they missed
    for member_id, lesson_id, started in session.execute(of(MakeupOwed.member_id,
            select(MakeupOwed.member_id, MakeupOwed.lesson_id, MakeupSession.started_at)
            .join(MakeupSession, MakeupSession.session_key == MakeupOwed.session_key)
            .where(MakeupSession.state == "owed"))):
        key = (member_id, lesson_id)
        owed[key] = min(owed.get(key, started), started)
    completions: dict[int, list] = defaultdict(list)
    # The one part that grows with what members heard (up to members x lessons rows): the completion time is read as
    # the database gives it, without SQLAlchemy's per-value conversion (as the participation report does).
    parse, utc, zone = datetime.fromisoformat, timezone.utc, rules.zone
    for member_id, lesson_id, done, duration, title, credited in session.execute(of(LessonCoverage.member_id,
            select(LessonCoverage.member_id, LessonCoverage.lesson_id,
                   type_coerce(LessonCoverage.completed_at, String),
                   LessonCoverage.duration_s, Lesson.title, Lesson.credited_hours)
            .join(Lesson, Lesson.id == LessonCoverage.lesson_id)
            .where(LessonCoverage.completed_at >= start, LessonCoverage.completed_at < end))):
        if member_id in wanted:
            completed_at = parse(done) if isinstance(done, str) else done
            if completed_at.tzinfo is None:
                completed_at = completed_at.replace(tzinfo=utc)
            missed = owed.get((member_id, lesson_id))
            completions[member_id].append((lesson_id, title, completed_at.astimezone(zone).date(), duration,
                                           credited, missed is not None and completed_at >= missed))
    for member_id, rows in completions.items():
        out[member_id].extend(hour_rules.lesson_sources(rows, class_lessons.get(member_id, set()), hrules))
    for member_id, tid, title, day, hours in session.execute(of(OffSystemTraining.member_id,
            select(OffSystemTraining.member_id, OffSystemTraining.id, OffSystemTraining.title, OffSystemTraining.day,
                   OffSystemTraining.hours).where(OffSystemTraining.day >= first, OffSystemTraining.day <= last))):
        if member_id in wanted:
            out[member_id].append(Source("training", f"training:{tid}", title, day, float(hours)))
    return out


def _lesson_titles(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(session.execute(select(Lesson.id, Lesson.title).where(Lesson.id.in_(ids))).all())


def member_hours(session: Session, member_no: str, year: int, rules: Rules, hrules: HourRules, scope) -> MemberHours:
    """One member's study hours in YEAR with every source; NotFound for an unknown member, Forbidden out of scope."""
    member = session.scalar(select(Member).where(Member.member_no == member_no))
    if member is None:
        raise NotFound("member_not_found", _l("There is no member {member_no!r}.", member_no=member_no))
    scope.check_member(session, member)
    report = collect(session, year, rules, hrules, member_ids=[member.id])
    if not report.members:
        raise Invalid("member_not_active", _l("Member {member_no!r} was not a member in {year}.",
                                                  member_no=member_no, year=year))
    return report.members[0]
