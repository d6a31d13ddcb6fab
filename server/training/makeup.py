"""Make-up lessons (补课): when a class session is over, the site's members who were not among its attendees owe
its mandatory lessons; a member with a radio gets them pushed to it, the others go on the operator's list.

**Channel design.** A class's make-ups are one small programme, ``makeup-<session id>``, valid from the class to
its deadline, whose items target one special group, ``makeup-<session id>``, holding the absent radio holders. A
radio's audience is its holder's groups, so those radios move to the channel of "their audience plus this group":
one extra channel per distinct audience among a class's absentees (usually one per site), never one per member.
Publishing it goes through the normal signed path (``server.programmes.publish``): only the channels whose
playlist changed get a new manifest version; every other channel keeps its version. When the deadline and grace
pass, the programme leaves every manifest on the next publish.

A make-up is **done** when the member completes the lesson (on the radio, from any programme that carries it) or
attends another class that plays it, after the missed class started; **late** when that is after the deadline;
**overdue** while not done after the deadline. Whether a member took part in training counts a make-up done as
attending, marked as such.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.accounts.scope import Scope
from server.attendance.models import ClassSession, LessonCoverage, SessionAttendee
from server.attendance.rules import Period
from server.audit import AuditEntry
from server.devices.models import Device, DeviceAssignment
from server.errors import Conflict, NotFound
from server.i18n import _l
from server.org.models import Group, GroupLink, Member, Site, Township
from server.programmes import publish as publishing, service as programmes
from server.programmes.models import Programme, ProgrammeItem
from server.training.models import MakeupOwed, MakeupSession


def makeup_code(session_row: ClassSession) -> str:
    """The make-up programme's code, which is also the key of the group of radios it targets."""
    return f"makeup-{session_row.id}"


def _present(session: Session, key: str) -> set[int]:
    state: dict[int, bool] = {}
    for member_id, removed in session.execute(select(SessionAttendee.member_id, SessionAttendee.removed)
                                              .where(SessionAttendee.session_key == key)):
        state[member_id] = state.get(member_id, True) and not removed
    return {m for m, here in state.items() if here}


def _mandatory_lessons(session: Session, s: ClassSession) -> list[int]:
    """The mandatory lessons session S played: its lesson, when a published programme lists it as mandatory."""
    if not s.lesson_id or not s.programme:
        return []
    found = session.execute(select(ProgrammeItem.id).join(Programme, Programme.id == ProgrammeItem.programme_id)
                            .where(Programme.code == s.programme, Programme.state != "draft",
                                   ProgrammeItem.lesson_id == s.lesson_id,
                                   ProgrammeItem.mandatory.is_(True))).first()
    return [s.lesson_id] if found else []


def sweep(services, now: datetime, actor: str = "makeup") -> list[str]:
    """Handle every class session that is over (its check-in window closed) and not handled yet: record who owes
    what, and push the make-ups of each (unless the setting is off, or approval is needed). Returns the make-up
    programmes published."""
    settings, rules = services.settings, services.rules
    mode = settings.makeup_mode
    closed_before = now - timedelta(seconds=rules.checkin_after_s)
    to_publish = []
    with services.db.session() as session:
        # Only the sessions not handled yet: the worker sweeps every round, so this must not read them all.
        for s in session.scalars(select(ClassSession).where(
                ClassSession.is_class.is_(True), ClassSession.ended_at <= closed_before,
                ClassSession.key.not_in(select(MakeupSession.session_key))).order_by(ClassSession.started_at)):
            due = s.started_at + timedelta(days=settings.makeup_days)
            lessons = _mandatory_lessons(session, s)
            state = "off" if mode == "off" else "nothing_owed" if not lessons else \
                "awaiting_approval" if mode == "approval" else "owed"
            record = MakeupSession(session_key=s.key, site_id=s.site_id, state=state, started_at=s.started_at,
                                   due_at=due, handled_at=now)
            session.add(record)
            if state in ("off", "nothing_owed"):
                continue
            day = rules.local_day(s.started_at)
            present = _present(session, s.key)
            members = session.scalars(select(Member).where(Member.site_id == s.site_id)).all()
            absent = [m for m in members if m.id not in present
                      and (m.joined_on is None or m.joined_on <= day) and (m.left_on is None or m.left_on >= day)]
            radios = _radios(session, [m.id for m in absent], day)
            for m in absent:
                for lesson in lessons:
                    session.add(MakeupOwed(session_key=s.key, member_id=m.id, lesson_id=lesson,
                                           radio=radios.get(m.id)))
            if state == "owed" and any(m.id in radios for m in absent):
                to_publish.append(s.key)
            session.add(AuditEntry(at=now, actor=actor, action="makeup.owed", subject=s.key,
                                   details={"state": state, "absent": len(absent), "lessons": lessons}))
    return [_push(services, key, actor) for key in to_publish]


def _radios(session: Session, member_ids: list[int], day: date) -> dict[int, str]:
    """The enrolled radio each member held on DAY."""
    out = {}
    for member_id, uid in session.execute(
            select(DeviceAssignment.member_id, Device.uid).join(Device, Device.id == DeviceAssignment.device_id)
            .where(DeviceAssignment.member_id.in_(member_ids), Device.kind == "radio", Device.state == "enrolled",
                   DeviceAssignment.from_date <= day,
                   (DeviceAssignment.until_date.is_(None)) | (DeviceAssignment.until_date >= day))):
        out[member_id] = uid
    return out


def _push(services, key: str, actor: str) -> str:
    """Put the absent radio holders of session KEY in its make-up group and publish its make-up programme."""
    rules = services.rules
    with services.db.session() as session:
        s = session.scalar(select(ClassSession).where(ClassSession.key == key))
        record = session.get(MakeupSession, key)
        code = makeup_code(s)
        site = session.get(Site, s.site_id)
        group = session.scalar(select(Group).where(Group.key == code))
        if group is None:
            group = Group(key=code, name=f"补课 {site.name} {rules.local_day(s.started_at).isoformat()}",
                          kind="special", township_id=site.township_id)
            session.add(group)
            session.flush()
        owed = session.execute(select(MakeupOwed.member_id, MakeupOwed.lesson_id)
                               .where(MakeupOwed.session_key == key, MakeupOwed.radio.is_not(None))).all()
        linked = set(session.scalars(select(GroupLink.member_id).where(GroupLink.group_id == group.id)))
        for member_id in sorted({m for m, _l in owed} - linked):
            session.add(GroupLink(group_id=group.id, member_id=member_id))
        lessons = sorted({lesson for _m, lesson in owed})
        record.programme, record.state = code, "owed"
        window = (rules.local_day(s.started_at), rules.local_day(record.due_at))
        title = f"补课：{s.title or site.name} {window[0].isoformat()}"
    pid = programmes.create(services, {"code": code, "title": title, "valid_from": window[0].isoformat(),
                                       "valid_until": window[1].isoformat(),
                                       "items": [{"lesson": lesson, "groups": [code], "mandatory": True}
                                                 for lesson in lessons]}, actor)
    publishing.publish(services, pid, actor)
    return code


def approve(services, key: str, scope: Scope, actor: str) -> Optional[str]:
    """An operator approves a class's make-ups (setting ``approval``): they are pushed now."""
    with services.db.session() as session:
        record = session.get(MakeupSession, key)
        if record is None:
            raise NotFound("makeup_not_found", _l("No make-ups are recorded for session {key!r}; they are "
                                                  "recorded once the class is over.", key=key))
        scope.check_site(session.get(Site, record.site_id))
        if record.state != "awaiting_approval":
            raise Conflict("makeup_not_awaiting", _l("The make-ups of {key} are {state}, not awaiting approval.",
                                                        key=key, state=record.state))
        record.approved_by, record.state = actor, "owed"
        has_radio = session.scalar(select(MakeupOwed.id).where(MakeupOwed.session_key == key,
                                                               MakeupOwed.radio.is_not(None)).limit(1))
    return _push(services, key, actor) if has_radio else None


# ---------------------------------------------------------------------------------------------------------------
# Status and reports


@dataclass
class Owed:
    """One owed make-up and where it stands at a moment."""

    session_key: str
    member_id: int
    member_no: str
    name: str
    site: str
    township: str
    lesson_id: int
    radio: Optional[str]
    due_at: datetime
    done_at: Optional[datetime]

    @property
    def late(self) -> bool:
        return self.done_at is not None and self.done_at > self.due_at

    def state(self, now: datetime) -> str:
        if self.done_at is not None:
            return "done_late" if self.late else "done"
        return "overdue" if now > self.due_at else "open"


def owed(session: Session, *, township: Optional[str] = None, period: Optional[Period] = None,
         rules=None) -> list[Owed]:
    """Every owed make-up (of TOWNSHIP, of classes in PERIOD) with when it was done."""
    query = (select(MakeupOwed, MakeupSession, Member.member_no, Member.name, Site.code, Township.code)
             .join(MakeupSession, MakeupSession.session_key == MakeupOwed.session_key)
             .join(Member, Member.id == MakeupOwed.member_id).join(Site, Site.id == Member.site_id)
             .join(Township, Township.id == Site.township_id)
             .where(MakeupSession.state == "owed"))
    if township:
        query = query.where(Township.code == township)
    rows = session.execute(query).all()
    if period is not None:
        rows = [r for r in rows if period.contains(rules.local_day(r[1].started_at))]
    members = {r[0].member_id for r in rows}
    lessons = {r[0].lesson_id for r in rows}
    completed: dict[tuple[int, int], list[datetime]] = defaultdict(list)
    if members:
        for member_id, lesson_id, at in session.execute(
                select(LessonCoverage.member_id, LessonCoverage.lesson_id, LessonCoverage.completed_at)
                .where(LessonCoverage.member_id.in_(members), LessonCoverage.lesson_id.in_(lessons),
                       LessonCoverage.completed_at.is_not(None))):
            completed[(member_id, lesson_id)].append(at)
        for member_id, lesson_id, at, removed in session.execute(
                select(SessionAttendee.member_id, ClassSession.lesson_id, ClassSession.started_at,
                       SessionAttendee.removed)
                .join(ClassSession, ClassSession.key == SessionAttendee.session_key)
                .where(SessionAttendee.member_id.in_(members), ClassSession.lesson_id.in_(lessons),
                       ClassSession.is_class.is_(True))):
            if not removed:
                completed[(member_id, lesson_id)].append(at)
    out = []
    for o, record, member_no, name, site, town in rows:
        after = [at for at in completed.get((o.member_id, o.lesson_id), []) if at >= record.started_at]
        out.append(Owed(o.session_key, o.member_id, member_no, name, site, town, o.lesson_id, o.radio,
                        record.due_at, min(after) if after else None))
    return out


@dataclass
class SiteMakeups:
    """A site's make-ups: owed, done (of which late), overdue and still open."""

    site: str
    township: str
    owed: int = 0
    done: int = 0
    late: int = 0
    overdue: int = 0
    open: int = 0


def by_site(rows: list[Owed], now: datetime) -> list[SiteMakeups]:
    """Make-ups owed, done, late, overdue and open per site."""
    sites: dict[str, SiteMakeups] = {}
    for o in rows:
        s = sites.setdefault(o.site, SiteMakeups(o.site, o.township))
        s.owed += 1
        state = o.state(now)
        s.done += state in ("done", "done_late")
        s.late += state == "done_late"
        s.overdue += state == "overdue"
        s.open += state == "open"
    return [sites[k] for k in sorted(sites)]


@dataclass
class ClassParticipation:
    """How many of a site's members took part in its classes of a period, with and without make-ups."""

    members: int = 0
    attended: int = 0
    made_up: int = 0
    overdue: int = 0
    sessions: list[dict] = field(default_factory=list)

    @property
    def rate(self) -> Optional[float]:
        return None if not self.members else round(self.attended / self.members, 4)

    @property
    def rate_with_makeups(self) -> Optional[float]:
        return None if not self.members else round((self.attended + self.made_up) / self.members, 4)


def participation(session: Session, period: Period, rules, now: datetime, *,
                  township: Optional[str] = None) -> ClassParticipation:
    """Winter-training participation: members of sites that held a class in PERIOD who attended one, and who made
    up every lesson they owed instead (marked as make-up); the overdue are those with a make-up past its deadline."""
    result = ClassParticipation()
    start = datetime.combine(period.start, datetime.min.time(), rules.zone)
    end = datetime.combine(period.end + timedelta(days=1), datetime.min.time(), rules.zone)
    query = (select(ClassSession.key, ClassSession.site_id).join(Site, Site.id == ClassSession.site_id)
             .join(Township, Township.id == Site.township_id)
             .where(ClassSession.is_class.is_(True), ClassSession.started_at >= start, ClassSession.started_at < end))
    if township:
        query = query.where(Township.code == township)
    sessions = session.execute(query).all()
    site_ids = {site_id for _k, site_id in sessions}
    members = [m for m in session.scalars(select(Member).where(Member.site_id.in_(site_ids)))
               if (m.joined_on is None or m.joined_on <= period.end) and (m.left_on is None
                                                                          or m.left_on >= period.start)]
    attended: set[int] = set()
    for key, _site in sessions:
        attended |= _present(session, key)
    debts: dict[int, list[Owed]] = defaultdict(list)
    for o in owed(session, township=township, period=period, rules=rules):
        debts[o.member_id].append(o)
    counted = count_participation([m.id for m in members], attended, debts, now)
    result.members, result.attended, result.made_up, result.overdue = \
        counted.members, counted.attended, counted.made_up, counted.overdue
    return result


def count_participation(members: list[int], attended: set[int], debts: dict[int, list[Owed]],
                        now: datetime) -> ClassParticipation:
    """The participation rule: of MEMBERS, who attended a class (ATTENDED), who instead made up every lesson they
    owed (DEBTS, done late or not: marked as make-up), and who has a make-up past its deadline and not done."""
    result = ClassParticipation(members=len(members))
    for m in members:
        if m in attended:
            result.attended += 1
        elif debts.get(m) and all(o.done_at is not None for o in debts[m]):
            result.made_up += 1
        elif any(o.state(now) == "overdue" for o in debts.get(m, [])):
            result.overdue += 1
    return result


def visit_list(session: Session, scope: Scope, now: datetime) -> list[Owed]:
    """Make-ups of members without a radio that are not done: the operator's list for a home visit or the next
    class, oldest deadline first."""
    rows = owed(session, township=scope.township)
    return sorted((o for o in rows if o.radio is None and o.done_at is None), key=lambda o: (o.due_at, o.member_no))
