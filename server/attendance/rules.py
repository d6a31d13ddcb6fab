"""Attendance rules as pure functions over plain data: no database, no clock, thresholds passed in as ``Rules``.

What a device reported becomes one of:

- **coverage** of a lesson by a radio's member: the union of the position ranges played, per rendition. Each covered
  stretch remembers the earliest time it was heard, so the result (and the completion time) is the same whatever
  order the events arrive in, and the same when rebuilt from the raw events;
- a **session** at a terminal's site: operator-started playback (a key on the terminal, or a staff command) or a slot
  marked as a class. It is a class once it is a class slot or has played ``class_min_s`` of audible sound;
- **broadcast** coverage of a site's day: the daily loudspeaker slot. It never makes a class;
- a **check-in** at a terminal, which makes its member an attendee of the sessions around it.

Every function here is order-independent (unions, sums, minima and maxima), which is what lets ingest update the
aggregates batch by batch while ``lessoncast attendance rebuild`` folds all events at once and gets the same rows.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from functools import cached_property
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable, Mapping, NamedTuple, Optional, Sequence
from zoneinfo import ZoneInfo


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# The days a county's calendar can hold: earlier or later is a typo, and the far ends of Python's date range
# overflow when a day is turned into the UTC instants that bound it.
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2099, 12, 31)
# A play's positions are whole hundredths of a second on the wire; coverage compares in those units, so adding the
# same range twice can never grow the total through floating-point dust.
_UNIT = 100
# What the aggregate tables can hold: programme codes are String(64), lesson ids a 32-bit Integer. A play beyond
# them must be excluded here, or writing its aggregates fails and the whole batch is refused (and resent) forever.
_MAX_PROGRAMME = 64
_MAX_LESSON = 2**31 - 1
MAX_PLAY_S = 86_400.0  # no lesson (LESSONCAST_MAX_DURATION is 4 h by default) or single play lasts a day


@dataclass(frozen=True)
class Rules:
    """The thresholds attendance is computed with (settings ``LESSONCAST_ATTENDANCE_*``)."""

    completion_threshold: float = 0.9
    grace_days: int = 30
    class_min_s: float = 20 * 60.0
    checkin_before_s: float = 30 * 60.0
    checkin_after_s: float = 30 * 60.0
    clock_tolerance_s: float = 10 * 60.0
    timezone: str = "Asia/Shanghai"
    county_name: str = ""  # the name of the county row of reports (LESSONCAST_COUNTY_NAME); empty: "This county"
    # The key card tokens are hashed with (server/org/cards.py), so a check-in matches the stored digest.
    card_key: bytes = field(default=b"", repr=False)

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def grace(self) -> timedelta:
        """``grace_days`` as a timedelta (ingest asks for every play)."""
        return timedelta(days=self.grace_days)

    def local_day(self, at: datetime) -> date:
        """The county's calendar day of the instant AT."""
        return at.astimezone(self.zone).date()


# ---------------------------------------------------------------------------------------------------------------
# Time


def parse_instant(value: object) -> Optional[datetime]:
    """The time in VALUE, an ISO 8601 string with a UTC offset; None for anything else.

    An event's device time is stored for attendance to correct the clock; an unreadable one does not make the
    event worthless."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:  # fromisoformat gives a fixed offset or none
        return None
    if parsed.year in (1, 9999):
        try:  # within a day of year 1 or 9999 a time with an offset may have no UTC instant (no column can hold it)
            parsed.astimezone(timezone.utc)
        except OverflowError:
            return None
    return parsed


def _parse_instant(value: object) -> Optional[datetime]:
    parsed = parse_instant(value)
    return None if parsed is None else parsed.astimezone(timezone.utc)


def _number(value: object) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


_UNSET: Any = object()


def corrected_time(body: Mapping[str, Any], raw: Optional[datetime] = _UNSET) -> Optional[datetime]:
    """The device clock plus the device's last server offset; the raw clock when it never learnt an offset.

    None when the event carries no readable device time. Offsets beyond ±100 years are refused as nonsense. RAW is
    the device time already read from BODY (``server.events.batches.Event.device_time``), to save reading it again.
    """
    if raw is _UNSET:
        raw = _parse_instant(body.get("device_time"))
    if raw is None:
        return None
    offset = _number(body.get("clock_offset"))
    if not offset:  # none, or 0: the clock as it is (without a needless copy)
        return raw
    if abs(offset) > 100 * 366 * 86400:
        return None
    try:
        return raw + timedelta(seconds=offset)
    except OverflowError:
        return None


def attributed_time(body: Mapping[str, Any], received_at: datetime, enrolled_at: Optional[datetime],
                    rules: Rules, raw: Optional[datetime] = _UNSET,
                    bounds: Optional[tuple[Optional[datetime], datetime]] = None) -> tuple[datetime, Optional[str]]:
    """(when the event counts, flag): the corrected time, or the arrival time with a flag saying why not.

    Flags: ``no_time`` (no readable device time), ``before_enrolment`` (earlier than the device's first enrolment:
    a clock reset to 1970, say) and ``future`` (later than its arrival at the server). ``clock_tolerance_s`` absorbs
    ordinary skew either way. BOUNDS is ``clock_bounds`` of the same arrival, enrolment and rules, when the caller
    attributes many events of one batch.
    """
    corrected = corrected_time(body, raw)
    if corrected is None:
        return received_at, "no_time"
    earliest, latest = bounds or clock_bounds(received_at, enrolled_at, rules)
    if earliest is not None and corrected < earliest:
        return received_at, "before_enrolment"
    if corrected > latest:
        return received_at, "future"
    return corrected, None


def clock_bounds(received_at: datetime, enrolled_at: Optional[datetime],
                 rules: Rules) -> tuple[Optional[datetime], datetime]:
    """The earliest (None: no bound) and latest corrected time ``attributed_time`` accepts for an event that arrived
    at RECEIVED_AT from a device first enrolled at ENROLLED_AT."""
    tolerance = timedelta(seconds=rules.clock_tolerance_s)
    return (None if enrolled_at is None else enrolled_at - tolerance), received_at + tolerance


def to_epoch(at: datetime) -> float:
    """Seconds since 1970 (the form coverage segments keep their times in)."""
    return round((at - EPOCH).total_seconds(), 3)


def from_epoch(seconds: float) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


# ---------------------------------------------------------------------------------------------------------------
# Plays


class Play(NamedTuple):
    """One play event, normalised: what was played, which positions, whether it could be heard, and why it played."""

    play_id: str
    phase: str
    programme: str
    lesson: int
    sha256: str
    start: float
    end: float
    listened: float
    audible: bool
    trigger: str
    slot_kind: Optional[str]


_NUMBER = (int, float)


def read_play(body: Mapping[str, Any]) -> tuple[Optional[Play], Optional[str]]:
    """(the Play in BODY, None), or (None, why it cannot count): a play event missing what attendance needs."""
    get = body.get
    play_id, programme, sha, lesson = get("play_id"), get("programme"), get("sha256"), get("lesson")
    if type(play_id) is not str or not play_id or len(play_id) > 64:
        return None, "play_without_id"
    if type(programme) is not str or not programme or len(programme) > _MAX_PROGRAMME:
        return None, "play_without_lesson"
    if type(sha) is not str or len(sha) != 64:
        return None, "play_without_lesson"
    if type(lesson) is not int or not 1 <= lesson <= _MAX_LESSON:
        return None, "play_without_lesson"
    start, end = get("start_position"), get("end_position")
    if type(start) not in _NUMBER or type(end) not in _NUMBER or not 0 <= start <= end <= MAX_PLAY_S:
        return None, "play_bad_positions"  # (a NaN fails the comparison too)
    listened = get("listened_seconds")
    if type(listened) not in _NUMBER or not listened >= 0:
        listened = end - start
    listened = round(listened, 2)
    if listened > MAX_PLAY_S:  # a summary sums its plays' seconds, but no play lasts a day
        return None, "play_bad_positions"
    volume, muted, slot_kind, trigger, phase = get("volume"), get("muted"), get("slot_kind"), get("trigger"), \
        get("phase")
    audible = muted is not True and (type(volume) not in _NUMBER or volume > 0)
    return Play(play_id, phase if type(phase) is str else "", programme, lesson, sha, float(start), float(end),
                listened, audible, trigger[:16] if type(trigger) is str else "",
                slot_kind if slot_kind in ("class", "broadcast") else None), None


def play_use(kind: str, play: Play) -> str:
    """What a play of a device of KIND counts for: ``coverage`` (radios), ``session`` or ``broadcast`` (terminals).

    At a terminal a play the schedule started is a class only when its slot is marked as one; any other scheduled
    play is the daily broadcast. A play someone started (a key on the terminal, a staff command) is a session.
    """
    if kind == "radio":
        return "coverage"
    if play.trigger == "schedule":
        return "session" if play.slot_kind == "class" else "broadcast"
    return "session"


@dataclass(frozen=True)
class Window:
    """A programme's validity window (inclusive days); plays count until ``until`` plus the grace days."""

    valid_from: date
    valid_until: date


def in_window(day: date, window: Window, rules: Rules) -> bool:
    """Whether a play on DAY counts for the programme: inside its window, or within the grace period after it."""
    return window.valid_from <= day <= window.valid_until + rules.grace


def holder_on(assignments: Sequence[tuple[date, Optional[date], int]], day: date) -> Optional[int]:
    """The member id holding a radio on DAY, from (from, until or None, member id) assignments."""
    for start, until, member in assignments:
        if start <= day and (until is None or day <= until):
            return member
    return None


# ---------------------------------------------------------------------------------------------------------------
# Coverage: covered stretches of a rendition, each with the earliest time it was heard

Segment = list  # [start_units, end_units, epoch_seconds]


def units(seconds: float) -> int:
    """A position in the hundredths of a second segments are kept in."""
    return int(round(seconds * _UNIT))


def envelope(stretches: Iterable[Sequence[float]]) -> list[Segment]:
    """Segments from [start, end, time] stretches (hundredths, epoch seconds) that may overlap: each position
    covered keeps the earliest time any stretch covering it was heard.

    The result is sorted, disjoint, and merges neighbours with the same time, so it is one canonical form whatever
    the order or grouping of the stretches; it stays as short as the number of sittings that heard something new.
    A sweep over the stretch ends with a heap of the open stretches by time: O(n log n).
    """
    items = sorted((int(a), int(b), t) for a, b, t in stretches if b > a)
    if not items:
        return []
    bounds = sorted({x for a, b, _t in items for x in (a, b)})
    out: list[Segment] = []
    heap: list[tuple[float, int]] = []  # (time, end) of the stretches open at the cursor
    i = 0
    for left, right in zip(bounds, bounds[1:]):
        while i < len(items) and items[i][0] <= left:
            heapq.heappush(heap, (items[i][2], items[i][1]))
            i += 1
        while heap and heap[0][1] <= left:
            heapq.heappop(heap)
        if not heap:
            continue
        t = heap[0][0]
        if out and out[-1][1] == left and out[-1][2] == t:
            out[-1][1] = right
        else:
            out.append([left, right, t])
    return out


def add_range(segments: Sequence[Segment], start: float, end: float, t: float) -> list[Segment]:
    """SEGMENTS with START..END (seconds) heard at T added: covered stretches keep their earliest time."""
    return envelope([*segments, (units(start), units(end), t)])


def merge_segments(left: Sequence[Segment], right: Sequence[Segment]) -> list[Segment]:
    """The coverage of both: every stretch of RIGHT added to LEFT with its own time."""
    return envelope([*left, *right])


def covered_seconds(segments: Iterable[Segment]) -> float:
    """Distinct seconds covered."""
    return sum(s[1] - s[0] for s in segments) / _UNIT


def completed_at(segments: Sequence[Segment], duration_s: float, rules: Rules) -> Optional[float]:
    """The earliest time (epoch seconds) by which the covered stretches reached the threshold, or None.

    Replaying the first minute ninety times covers one minute; muted plays never reach here.
    """
    if duration_s <= 0:
        return None
    need = rules.completion_threshold * duration_s * _UNIT - 1e-6
    total = 0
    for s_start, s_end, s_t in sorted(segments, key=lambda s: (s[2], s[0])):
        total += s_end - s_start
        if total >= need:
            return s_t
    return None


# ---------------------------------------------------------------------------------------------------------------
# Sessions and check-ins


@dataclass
class SessionFacts:
    """What the events of one operator-started or class-slot play at a terminal add up to."""

    started: float  # epoch seconds
    ended: float
    listened_s: float = 0.0
    trigger: str = ""
    slot_kind: Optional[str] = None
    programme: Optional[str] = None
    lesson: Optional[int] = None
    clock_flagged: int = 0

    def merge(self, other: "SessionFacts") -> "SessionFacts":
        """Both sets of events together (order-independent)."""
        def first(a, b):  # the events of one play agree on these; a hostile mix still gives one answer
            return min((v for v in (a, b) if v is not None), default=None)

        return SessionFacts(min(self.started, other.started), max(self.ended, other.ended),
                            round(self.listened_s + other.listened_s, 2), max(self.trigger, other.trigger),
                            first(self.slot_kind, other.slot_kind), first(self.programme, other.programme),
                            first(self.lesson, other.lesson), self.clock_flagged + other.clock_flagged)


def is_class(facts: SessionFacts, rules: Rules) -> bool:
    """A class: a slot marked as a class, or someone-started playback of at least ``class_min_s`` audible seconds."""
    return facts.slot_kind == "class" or facts.listened_s + 1e-6 >= rules.class_min_s


def checkin_matches(at: float, started: float, ended: float, rules: Rules) -> bool:
    """Whether a check-in at AT (epoch seconds) belongs to a session that ran from STARTED to ENDED."""
    return started - rules.checkin_before_s <= at <= ended + rules.checkin_after_s


# ---------------------------------------------------------------------------------------------------------------
# Participation


@dataclass(frozen=True)
class Period:
    """A reporting period: inclusive days, and its label (``2026-Q4``, ``2026``, a programme code)."""

    label: str
    kind: str
    start: date
    end: date

    def contains(self, day: date) -> bool:
        return self.start <= day <= self.end


def quarter(year: int, q: int) -> Period:
    """Calendar quarter Q (1..4) of YEAR."""
    if not 1 <= q <= 4:
        raise ValueError(f"quarter {q} is not 1 to 4")
    start = date(year, 3 * q - 2, 1)
    end = date(year + (q == 4), 1 if q == 4 else 3 * q + 1, 1) - timedelta(days=1)
    return Period(f"{year}-Q{q}", "quarter", start, end)


def year(y: int) -> Period:
    return Period(str(y), "year", date(y, 1, 1), date(y, 12, 31))


def parse_period(text: str) -> Period:
    """``2026``, ``2026-Q4`` or ``2026-01-01..2026-06-30``; ValueError saying which forms are accepted."""
    text = text.strip()
    try:
        if ".." in text:
            a, b = (date.fromisoformat(p) for p in text.split("..", 1))
            if b < a or a < FIRST_DAY or b > LAST_DAY:
                raise ValueError
            return Period(text, "range", a, b)
        if "-Q" in text.upper():
            y, q = text.upper().split("-Q", 1)
            if _digits(y, 4) and _digits(q) and FIRST_DAY.year <= int(y) <= LAST_DAY.year:
                return quarter(int(y), int(q))
        elif _digits(text, 4) and FIRST_DAY.year <= int(text) <= LAST_DAY.year:  # int() alone takes "+226"
            return year(int(text))
    except ValueError:
        pass
    raise ValueError(f"period {text!r}: give a year (2026), a quarter (2026-Q4) or days (2026-01-01..2026-06-30), "
                     f"within {FIRST_DAY.year}-{LAST_DAY.year}")


def _digits(text: str, length: Optional[int] = None) -> bool:
    return text.isascii() and text.isdigit() and (length is None or len(text) == length)


def active_in(joined: Optional[date], left: Optional[date], period: Period) -> bool:
    """A member counts in a period when they were a member on at least one of its days."""
    return (joined is None or joined <= period.end) and (left is None or left >= period.start)


def rate(trained: int, active: int) -> Optional[float]:
    """Participation as a fraction rounded to 4 places; None for no active members (not 0%, not 100%)."""
    return None if active == 0 else round(trained / active, 4)
