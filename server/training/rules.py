"""Study-hour rules as pure functions over plain data: no database, no clock (docs/ATTENDANCE.md words each rule).

- A **completed lesson** earns its credited hours when the lesson sets them, else its duration at
  ``minutes_per_hour`` minutes a study hour. A lesson earns hours once a year for a member, however many sittings it
  took, however many of its renditions the member completed (a rendition replaced mid-year re-credits nothing), and
  not at all when the member attended a class that played it that year (the class earns its length instead).
- A **class attended** earns the session's length (start to end).
- An **off-system training** earns the hours staff entered for it.
- The **quota** is the one of the role the member held longest in the year; on a tie, the higher quota.
Hours are rounded to one decimal place at the end, once, so totals add up the same in every view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Iterable, Optional, Sequence

ROLES = ("member", "branch_secretary", "committee")
DEFAULT_QUOTAS = {"member": 32.0, "branch_secretary": 56.0, "committee": 56.0}


@dataclass(frozen=True)
class HourRules:
    """What study hours are computed with (settings ``LESSONCAST_TRAINING_*``)."""

    minutes_per_hour: float = 45.0
    quotas: dict = field(default_factory=lambda: dict(DEFAULT_QUOTAS))


@dataclass(frozen=True)
class Source:
    """One thing that earned a member study hours: kind is lesson, class or training."""

    kind: str
    key: str
    title: str
    day: date
    hours: float
    makeup: bool = False


def lesson_hours(duration_s: float, credited_hours: Optional[float], rules: HourRules) -> float:
    """The study hours a completed lesson earns: its own credited hours, else its duration at the setting's rate."""
    if credited_hours is not None:
        return max(0.0, float(credited_hours))
    return max(0.0, duration_s) / 60.0 / rules.minutes_per_hour


def class_hours(started_s: float, ended_s: float) -> float:
    """The study hours attending a class earns: its length in hours (start to end)."""
    return max(0.0, ended_s - started_s) / 3600.0


def lesson_sources(completions: Iterable[tuple[int, str, date, float, Optional[float], bool]],
                   class_lessons: set[int], rules: HourRules) -> list[Source]:
    """One source per lesson from COMPLETIONS (lesson id, title, day completed, rendition duration, credited hours,
    by make-up), keeping the earliest completion and dropping lessons a class the member attended played."""
    first: dict[int, tuple] = {}
    for completion in completions:
        lesson_id, _title, day = completion[0], completion[1], completion[2]
        if lesson_id in class_lessons:
            continue
        if lesson_id not in first or day < first[lesson_id][2]:
            first[lesson_id] = completion
    return [Source("lesson", f"lesson:{lid}", title, day, lesson_hours(duration, credited, rules), makeup)
            for lid, (_l, title, day, duration, credited, makeup) in sorted(first.items(), key=lambda kv: kv[1][2])]


def total(sources: Sequence[Source]) -> float:
    """A member's study hours: the sum of their sources, rounded once to one decimal place."""
    return round(sum(s.hours for s in sources) + 1e-9, 1)


def role_in_year(history: Sequence[tuple[date, str]], year: int, fallback: str = "member") -> str:
    """The role whose quota applies in YEAR: the one held longest that year (HISTORY is (from day, role) rows);
    on a tie the role with the higher default quota. A member with no row is a plain member."""
    start, end = date(year, 1, 1), date(year, 12, 31)
    rows = sorted(history)
    if not rows or rows[0][0] > start:  # before their first recorded role a member holds the plain one
        rows.insert(0, (start, fallback))
    days: dict[str, int] = {}
    for n, (since, role) in enumerate(rows):
        until = rows[n + 1][0] - timedelta(days=1) if n + 1 < len(rows) else end
        lo, hi = max(since, start), min(until, end)
        if hi >= lo:
            days[role] = days.get(role, 0) + (hi - lo).days + 1
    return max(days, key=lambda r: (days[r], DEFAULT_QUOTAS.get(r, 0.0)))


def quota(role: str, rules: HourRules) -> float:
    """The yearly study hours ROLE must earn."""
    return float(rules.quotas.get(role, rules.quotas.get("member", 32.0)))
