"""Off-system trainings (a township party-school course, a county lecture): staff enter them one by one or import a
roster CSV, and each earns its members the hours it states. A file is checked whole before anything is stored, and
every member must be in the caller's township (the same ``Scope`` the API and the console use)."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.accounts.scope import Scope
from server.audit import AuditEntry
from server.errors import Forbidden, Invalid
from server.i18n import LazyList, _l
from server.org.csv_rows import FieldError, check_date
from server.org.models import Member
from server.training.models import OffSystemTraining

HEADERS = {"member_id": "member", "member": "member", "member_no": "member", "党员编号": "member",
           "title": "title", "培训名称": "title", "名称": "title", "date": "date", "日期": "date",
           "hours": "hours", "学时": "hours"}
MAX_HOURS = 200.0  # a single off-system training longer than this is a typo (a 3-day course is about 24)


@dataclass(frozen=True)
class TrainingRow:
    """One member's attendance at an off-system training."""

    member_no: str
    title: str
    day: date
    hours: float


def check_hours(value: object, where: str) -> float:
    """Study hours from VALUE: a number above 0 and at most MAX_HOURS; Invalid naming WHERE otherwise."""
    try:
        hours = float(str(value).strip())
    except ValueError:
        raise Invalid("bad_hours", _l("{where}: hours {value!r} is not a number; write e.g. 3 or 1.5.",
                                         where=where, value=value)) from None
    if not math.isfinite(hours) or not 0 < hours <= MAX_HOURS:
        raise Invalid("bad_hours", _l("{where}: hours {value!r} must be above 0 and at most {max_hours:g}.",
                                         where=where, value=value, max_hours=MAX_HOURS))
    return hours


def parse_roster(text: str, filename: str = "trainings.csv") -> list[TrainingRow]:
    """The rows of a training roster (member, title, date, hours); Invalid naming every bad line."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = next(reader, None) or []
    columns = [HEADERS.get(h.strip().lower(), HEADERS.get(h.strip())) for h in header]
    if sorted(c for c in columns if c) != ["date", "hours", "member", "title"]:
        raise Invalid("csv_invalid", _l("{filename}:1: the columns must be member, title, date and hours "
                                        "(党员编号, 培训名称, 日期, 学时).", filename=filename))
    rows, errors = [], []
    for line, raw in enumerate(reader, 2):
        if not any(cell.strip() for cell in raw):
            continue
        cell = {c: (raw[i].strip() if i < len(raw) else "") for i, c in enumerate(columns) if c}
        try:
            if not cell["member"] or not cell["title"]:
                raise Invalid("csv_invalid", _l("member and title must not be empty"))
            if len(cell["title"]) > 200:
                raise Invalid("csv_invalid", _l("the title is over 200 characters"))
            day = check_date(cell["date"], "date")
            if day is None:
                raise Invalid("csv_invalid", _l("the date is empty"))
            rows.append(TrainingRow(cell["member"], cell["title"], day, check_hours(cell["hours"], "hours")))
        except (Invalid, FieldError) as exc:
            errors.append(_l("{filename}:{line}: {problem}", filename=filename, line=line,
                             problem=exc.text if isinstance(exc, Invalid) else exc.message))
    if errors:
        problems = LazyList("; ", errors[:20])
        if len(errors) > 20:
            raise Invalid("csv_invalid", _l("{problems} (and {more} more). Nothing was stored.", problems=problems,
                                            more=len(errors) - 20))
        raise Invalid("csv_invalid", _l("{problems}. Nothing was stored.", problems=problems))
    return rows


def add_trainings(session: Session, rows: list[TrainingRow], scope: Scope, actor: str, now: datetime,
                  source: str = "") -> dict[str, int]:
    """Store ROWS (all or nothing): each member must exist and be in SCOPE; a member's training of the same day and
    title is updated, not doubled. Returns how many were added and updated."""
    numbers = {r.member_no for r in rows}
    members = {m.member_no: m for m in session.scalars(select(Member).where(Member.member_no.in_(numbers)))}
    unknown = sorted(numbers - set(members))
    if unknown:
        raise Invalid("unknown_member", _l("No member {members}; import the members first. Nothing was stored.",
                                           members=", ".join(unknown[:10])))
    outside = []
    for no in sorted(numbers):
        try:
            scope.check_member(session, members[no])
        except Forbidden:
            outside.append(no)
    if outside:  # the scope's own refusal (other_township), naming every member outside it; nothing is stored
        raise scope.refuse(f"Member {', '.join(outside[:10])}")
    added = updated = 0
    for r in rows:
        member = members[r.member_no]
        row = session.scalar(select(OffSystemTraining).where(OffSystemTraining.member_id == member.id,
                                                             OffSystemTraining.day == r.day,
                                                             OffSystemTraining.title == r.title))
        if row is None:
            session.add(OffSystemTraining(member_id=member.id, title=r.title, day=r.day, hours=r.hours,
                                          entered_by=actor, entered_at=now))
            added += 1
        elif row.hours != r.hours:
            row.hours, row.entered_by, row.entered_at = r.hours, actor, now
            updated += 1
    session.add(AuditEntry(at=now, actor=actor, action="training.import",
                           details={"source": source, "rows": len(rows), "added": added, "updated": updated}))
    return {"added": added, "updated": updated}
