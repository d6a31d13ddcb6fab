"""What a device plays next, from the verified manifest and the player's state: pure functions, no I/O, no clock.

The caller reads the clock once, converts it to the device's local time zone and passes ``today`` or ``now_local``
(naive local time) in, so every rule here is a table of cases in the tests.

Rules:

- A programme's items are playable from its ``valid_from`` through ``valid_until`` plus its ``grace_days`` (the
  attendance grace: plays there still count), not before: a future programme is downloaded ahead but stays silent.
- Radios play on keys only: next/previous step through the mandatory items, the menu holds the optional ones.
- Terminals also play their daily slots, at most 10 minutes late. A slot fires only inside its programme's own
  window (not in the grace period: the loudspeaker stops announcing a finished programme).
- A slot fires only on its days of the week (``ManifestSlot.days``; every day in a schema 1 manifest). The day is the
  local calendar day of the slot's time, so a 23:55 Friday slot caught up at 00:03 on Saturday still plays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from playlists.manifest import Manifest, ManifestItem, ManifestProgramme, ManifestSlot
from playlists.model import plays_on

RESTART_MARGIN = 5.0
"""Seconds: a saved position this close to the end resumes from the start instead (the lesson was as good as done)."""

SLOT_LATENESS = timedelta(minutes=10)
"""A slot may start this late (the device was busy booting); one missed by more is skipped, not played hours late."""

DEVICE_KINDS = ("radio", "terminal")


@dataclass
class PlayerState:
    """What the player remembers between decisions; the player updates it, the functions here only read it."""

    positions: dict[str, float] = field(default_factory=dict)
    completed: frozenset[str] = frozenset()
    current: str | None = None
    last_slot: str | None = None
    menu_choice: str | None = None


@dataclass(frozen=True)
class Decision:
    """What to do now: play item from start (because of trigger and, for a slot, which), or nothing."""

    item: ManifestItem | None = None
    start: float = 0.0
    trigger: str | None = None
    slot: ManifestSlot | None = None
    slot_key: str | None = None

    @property
    def play(self) -> bool:
        """True when the decision starts a play."""
        return self.item is not None


def _programmes(manifest: Manifest) -> dict[str, ManifestProgramme]:
    return {p.code: p for p in manifest.programmes}


def playable(manifest: Manifest, today: date, grace_days_default: int = 30) -> list[ManifestItem]:
    """Items playable today: valid_from <= today <= valid_until + grace, by programme valid_from then position.

    Items stay playable during the grace days after their window (plays there still count for attendance). The
    programme's own ``grace_days`` applies; ``grace_days_default`` only for an item whose programme is not listed.
    """
    programmes = _programmes(manifest)
    order = {p.code: i for i, p in enumerate(manifest.programmes)}

    def holds(item: ManifestItem) -> bool:
        programme = programmes.get(item.programme)
        grace = programme.grace_days if programme is not None else grace_days_default
        return item.valid_from <= today <= item.valid_until + timedelta(days=grace)

    return sorted((i for i in manifest.items if holds(i)),
                  key=lambda i: (i.valid_from, order.get(i.programme, len(order)), i.position))


def radio_playlist(manifest: Manifest, today: date) -> list[ManifestItem]:
    """The mandatory playable items in order: what next and previous step through."""
    return [i for i in playable(manifest, today) if i.mandatory]


def radio_menu(manifest: Manifest, today: date) -> list[ManifestItem]:
    """The optional playable items in order: the menu."""
    return [i for i in playable(manifest, today) if not i.mandatory]


def next_item(items: Sequence[ManifestItem], current_sha: str | None, step: int) -> ManifestItem | None:
    """The item step places after (+1) or before (-1) the one playing, wrapping at the ends; None if items is empty.

    With nothing playing, or a file no longer listed, +1 gives the first item and -1 the last. A file listed twice
    is found at its first place.
    """
    if not items:
        return None
    index = next((n for n, item in enumerate(items) if item.sha256 == current_sha), None)
    if index is None:
        return items[0] if step >= 0 else items[-1]
    return items[(index + step) % len(items)]


def resume_position(state: PlayerState, item: ManifestItem) -> float:
    """Where item resumes: its saved position, or 0 if it was completed or the position is within 5 s of the end."""
    if item.sha256 in state.completed:
        return 0.0
    position = float(state.positions.get(item.sha256, 0.0))
    if position <= 0 or position >= item.duration - RESTART_MARGIN:
        return 0.0
    return position


def until(item: ManifestItem, position: float) -> float:
    """Seconds from position until item ends (never negative)."""
    return max(0.0, item.duration - position)


def slot_key(day: date, hhmm: str) -> str:
    """The key "YYYY-MM-DD HH:MM" that names one firing of a daily slot."""
    return f"{day.isoformat()} {hhmm}"


def slot_item(manifest: Manifest, slot: ManifestSlot, day: date) -> ManifestItem | None:
    """The item slot plays on day: its pinned item_position, else the programme's mandatory items in rotation.

    Rotation by the slot's own playing days: the slot's first day in the programme's window plays the first
    mandatory item (by position), its second day the second, and so on, wrapping (index = the slot's days since
    valid_from, modulo the number of mandatory items). For an every-day slot that is the days since valid_from, so
    unpinned every-day slots of one day all play the same lesson; a Monday-to-Friday slot counts only weekdays, so
    no lesson is skipped for always falling on a Saturday. None when the programme has no mandatory item here.
    """
    items = sorted((i for i in manifest.items if i.programme == slot.programme), key=lambda i: i.position)
    if slot.item_position is not None:
        return next((i for i in items if i.position == slot.item_position), None)
    mandatory = [i for i in items if i.mandatory]
    programme = _programmes(manifest).get(slot.programme)
    if not mandatory or programme is None:
        return None
    return mandatory[playing_days(slot.days, programme.valid_from, day) % len(mandatory)]


def playing_days(days: tuple[str, ...], start: date, end: date) -> int:
    """How many calendar days from start (inclusive) to end (exclusive) fall on one of days; 0 when end <= start."""
    span = (end - start).days
    if span <= 0:
        return 0
    weeks, rest = divmod(span, 7)
    return weeks * len(days) + sum(plays_on(days, start + timedelta(days=n)) for n in range(rest))


def due_slot(manifest: Manifest, now_local: datetime,
             last_slot: str | None) -> tuple[ManifestSlot, ManifestItem, str] | None:
    """The slot to fire now as (slot, item, key), or None.

    A slot is due when its time today (or yesterday, for a slot just before midnight) is at most 10 minutes before
    now_local, its day lies in its programme's window and is one of the slot's days of the week. Of several due
    slots the latest wins (an earlier one is superseded, not queued), and among slots of the same minute the first
    in manifest order. It does not fire again when its key equals last_slot.
    """
    programmes = _programmes(manifest)
    best: tuple[datetime, ManifestSlot, date] | None = None
    for day in (now_local.date() - timedelta(days=1), now_local.date()):
        for slot in manifest.slots:
            programme = programmes.get(slot.programme)
            if programme is None or not programme.valid_from <= day <= programme.valid_until:
                continue
            if not plays_on(slot.days, day):
                continue
            at = datetime.combine(day, time.fromisoformat(slot.time))
            if at <= now_local <= at + SLOT_LATENESS and (best is None or at > best[0]):
                best = (at, slot, day)
    if best is None:
        return None
    _, slot, day = best
    key = slot_key(day, slot.time)
    item = slot_item(manifest, slot, day)
    if key == last_slot or item is None:
        return None
    return slot, item, key


def decide(manifest: Manifest, now_local: datetime, state: PlayerState, kind: str) -> Decision:
    """What to start now without a key press: a terminal's due slot (from the start, trigger "schedule"), else nothing.

    Radios start nothing on their own; they play on keys.
    """
    if kind not in DEVICE_KINDS:
        raise ValueError(f"kind: {kind!r} is not one of {', '.join(DEVICE_KINDS)}")
    if kind == "radio":
        return Decision()
    due = due_slot(manifest, now_local, state.last_slot)
    if due is None:
        return Decision()
    slot, item, key = due
    # A slot plays its lesson from the start: a class or a broadcast audience did not hear the earlier part.
    return Decision(item=item, start=0.0, trigger="schedule", slot=slot, slot_key=key)
