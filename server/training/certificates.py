"""Training certificates (培训证书): issued to each member who completed a programme (every mandatory lesson, on
their radio or at a class they attended; or, when the issuer sets hours, at least that many study hours in the
programme's window), numbered, recorded and reprintable, with a verification code anyone can check at
``/verify/<code>``.

The code is 16 random base-32 characters (80 bits), printed as four groups. The database keeps it for reprints and
looks it up by its SHA-256, and ``verify`` answers an unknown code with the same shape and the same work as a known
one, so a wrong code reveals nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime
from typing import Optional

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.accounts.scope import Scope
from server.attendance.models import ClassSession, LessonCoverage, SessionAttendee
from server.attendance.rules import Rules
from server.audit import AuditEntry
from server.errors import Invalid, NotFound
from server.i18n import _l
from server.org.models import Member, Site, Township
from server.programmes.models import Programme, ProgrammeItem
from server.training import hours as hours_mod
from server.training import rules as hour_rules
from server.training.models import Certificate
from server.training.rules import HourRules

CODE_FORM = re.compile(r"^[A-Z2-7]{16}$")
_DUMMY_DIGEST = hashlib.sha256(b"no certificate has this code").hexdigest()


def new_code() -> str:
    """A fresh verification code: 16 base-32 characters."""
    return base64.b32encode(secrets.token_bytes(10)).decode()


def normalise_code(text: str) -> str:
    """A code as printed (groups, lower case, spaces) in its stored form."""
    return re.sub(r"[\s-]", "", str(text)).upper()


def display_code(code: str) -> str:
    """A code as printed: four groups of four."""
    return "-".join(code[i:i + 4] for i in range(0, len(code), 4))


def digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


@dataclass(frozen=True)
class Verified:
    """What ``/verify`` shows of a genuine certificate, and nothing else."""

    name: str
    programme: str
    completed_on: date
    number: str


def verify(session: Session, text: str) -> Optional[Verified]:
    """The certificate with code TEXT, or None for a wrong, malformed or revoked code (the same work either way)."""
    code = normalise_code(text)[:64]
    wanted = digest(code) if CODE_FORM.match(code) else _DUMMY_DIGEST
    row = session.execute(select(Certificate.code_digest, Certificate.name, Certificate.programme_title,
                                 Certificate.completed_on, Certificate.number, Certificate.revoked_at)
                          .where(Certificate.code_digest == wanted)).first()
    stored = row.code_digest if row is not None else _DUMMY_DIGEST[::-1]
    genuine = hmac.compare_digest(stored, wanted) and row is not None and row.revoked_at is None
    return Verified(row.name, row.programme_title, row.completed_on, row.number) if genuine else None


def _programme(session: Session, code: str) -> Programme:
    programme = session.scalar(select(Programme).where(Programme.code == code, Programme.state != "draft")
                               .order_by(Programme.version.desc()).limit(1))
    if programme is None:
        raise NotFound("unknown_programme", _l("There is no published programme {code!r}. See GET /api/v1/programmes.",
                                                 code=code))
    return programme


def completions(session: Session, programme: Programme, rules: Rules, hrules: HourRules,
                member_ids: set[int]) -> dict[int, tuple[date, float]]:
    """Members of MEMBER_IDS who completed every mandatory lesson of PROGRAMME: (day of the last, hours earned)."""
    items = session.scalars(select(ProgrammeItem).where(ProgrammeItem.programme_id == programme.id,
                                                        ProgrammeItem.mandatory.is_(True))).all()
    if not items:
        return {}
    lesson_of = {}
    for item in items:
        for lesson in [item.lesson_id, *item.variant_lesson_ids]:
            lesson_of[lesson] = item.id
    done: dict[int, dict[int, tuple[date, float]]] = {}

    def mark(member_id: int, lesson_id: int, day: date, earned: float) -> None:
        items_done = done.setdefault(member_id, {})
        item = lesson_of[lesson_id]
        if item not in items_done or day < items_done[item][0]:
            items_done[item] = (day, earned)

    for member_id, lesson_id, completed_at, duration in session.execute(
            select(LessonCoverage.member_id, LessonCoverage.lesson_id, LessonCoverage.completed_at,
                   LessonCoverage.duration_s)
            .where(LessonCoverage.programme == programme.code, LessonCoverage.completed_at.is_not(None),
                   LessonCoverage.lesson_id.in_(list(lesson_of)))):
        if member_id in member_ids:
            mark(member_id, lesson_id, rules.local_day(completed_at), hour_rules.lesson_hours(duration, None, hrules))
    present: dict[tuple[str, int], bool] = {}
    sessions = {}
    for s in session.scalars(select(ClassSession).where(ClassSession.is_class.is_(True),
                                                         ClassSession.programme == programme.code,
                                                         ClassSession.lesson_id.in_(list(lesson_of)))):
        sessions[s.key] = s
    if sessions:
        for key, member_id, removed in session.execute(
                select(SessionAttendee.session_key, SessionAttendee.member_id, SessionAttendee.removed)
                .where(SessionAttendee.session_key.in_(list(sessions)))):
            present[(key, member_id)] = present.get((key, member_id), True) and not removed
    for (key, member_id), here in present.items():
        if here and member_id in member_ids:
            s = sessions[key]
            mark(member_id, s.lesson_id, rules.local_day(s.started_at),
                 hour_rules.class_hours(s.started_at.timestamp(), s.ended_at.timestamp()))
    wanted = {item.id for item in items}
    return {member_id: (max(d for d, _h in got.values()), round(sum(h for _d, h in got.values()) + 1e-9, 1))
            for member_id, got in done.items() if set(got) == wanted}


def issue(session: Session, programme_code: str, rules: Rules, hrules: HourRules, scope: Scope, actor: str,
          now: datetime, *, site: Optional[str] = None, min_hours: Optional[float] = None) -> list[Certificate]:
    """Issue a certificate to each member (of SITE, within SCOPE) who completed PROGRAMME_CODE and has none yet:
    every mandatory lesson, or with MIN_HOURS at least that many study hours in the programme's window."""
    programme = _programme(session, programme_code)
    query = (select(Member).join(Site, Site.id == Member.site_id).join(Township, Township.id == Site.township_id))
    if site:
        site_row = session.scalar(select(Site).where(Site.code == site))
        if site_row is None:
            raise NotFound("site_not_found", _l("There is no site {site!r}.", site=site))
        scope.check_site(site_row)
        query = query.where(Member.site_id == site_row.id)
    elif scope.township is not None:
        query = query.where(Township.code == scope.township)
    members = {m.id: m for m in session.scalars(query)}
    have = set(session.scalars(select(Certificate.member_id).where(Certificate.programme == programme.code)))
    if min_hours is not None:
        if not 0 < min_hours <= 1000:
            raise Invalid("bad_hours", _l("hours {hours!r} must be above 0 and at most 1000.", hours=min_hours))
        report = hours_mod.collect(session, programme.valid_from.year, rules, hrules, member_ids=list(members))
        earned = {}
        for m in report.members:
            inside = [s for s in m.sources if programme.valid_from <= s.day <= programme.valid_until]
            if inside and hour_rules.total(inside) >= min_hours:
                earned[m.member_id] = (max(s.day for s in inside), hour_rules.total(inside))
    else:
        earned = completions(session, programme, rules, hrules, set(members))
    count = session.scalar(select(func.count()).select_from(Certificate)) or 0
    issued = []
    for member_id in sorted(set(earned) - have):
        day, hours = earned[member_id]
        count += 1
        code = new_code()
        cert = Certificate(number=f"{day.year}-{count:06d}", code=code, code_digest=digest(code), member_id=member_id,
                           name=members[member_id].name, programme=programme.code, programme_title=programme.title,
                           hours=hours, completed_on=day, issued_at=now, issued_by=actor, prints=0)
        session.add(cert)
        issued.append(cert)
    session.flush()
    session.add(AuditEntry(at=now, actor=actor, action="certificate.issue", subject=programme.code,
                           details={"site": site or "", "issued": [c.number for c in issued]}))
    return issued


def listing(session: Session, scope: Scope, *, programme: Optional[str] = None,
            site: Optional[str] = None) -> list[tuple[Certificate, str, str]]:
    """Certificates (with member number and site code) in SCOPE, of PROGRAMME and SITE when given, by number."""
    query = (select(Certificate, Member.member_no, Site.code).join(Member, Member.id == Certificate.member_id)
             .join(Site, Site.id == Member.site_id).join(Township, Township.id == Site.township_id))
    if scope.township is not None:
        query = query.where(Township.code == scope.township)
    if programme:
        query = query.where(Certificate.programme == programme)
    if site:
        query = query.where(Site.code == site)
    return [tuple(row) for row in session.execute(query.order_by(Certificate.number))]


def for_print(session: Session, scope: Scope, number: str, *, printed: bool = False) -> Certificate:
    """The certificate NUMBER for (re)printing; NotFound, or Forbidden out of SCOPE. Only when PRINTED (an explicit
    request to print, never a page view) is its print count raised."""
    cert = session.scalar(select(Certificate).where(Certificate.number == number))
    if cert is None:
        raise NotFound("certificate_not_found", _l("There is no certificate {number!r}.", number=number))
    scope.check_member(session, session.get(Member, cert.member_id))
    if printed:
        cert.prints += 1
    return cert


def batch_for_print(session: Session, scope: Scope, programme: str, site: str, *,
                    printed: bool = False) -> list[Certificate]:
    """Every certificate of PROGRAMME at SITE within SCOPE, by number, for printing a site's batch; each one's print
    count is raised only when PRINTED. NotFound for an unknown site, Forbidden for one outside SCOPE."""
    found = session.scalar(select(Site).where(Site.code == site))
    if found is None:
        raise NotFound("site_not_found", _l("There is no site {code!r}. See GET /api/v1/sites.", code=site))
    scope.check_site(found)
    certs = [cert for cert, _no, _site in listing(session, scope, programme=programme, site=site)]
    if printed:
        for cert in certs:
            cert.prints += 1
    return certs
