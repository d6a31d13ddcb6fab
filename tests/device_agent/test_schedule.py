"""What plays next: playable windows, radio keys, resume points and terminal slots, as tables of cases."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from device_agent.schedule import (
    Decision,
    PlayerState,
    decide,
    due_slot,
    next_item,
    playable,
    radio_menu,
    radio_playlist,
    resume_position,
    until,
)
from playlists.channels import channel_id
from playlists.manifest import Manifest, build_manifest, canonical_json, parse_manifest
from playlists.model import Audience, Item, LessonVersion, Programme, Rendition, Slot

BUILT = date(2026, 11, 22)
RADIO = Audience("radio", "cmn", frozenset())
TERMINAL = Audience("terminal", "cmn", frozenset())


def sha(n: int) -> str:
    return f"{n:064x}"


def lesson(lesson_id: int) -> LessonVersion:
    renditions = (Rendition("radio", f"media/{sha(lesson_id * 10)}.mp3", 1000, sha(lesson_id * 10), 600.5),
                  Rendition("terminal-video", f"media/{sha(lesson_id * 10 + 1)}.mp4", 9000,
                            sha(lesson_id * 10 + 1), 600.5))
    return LessonVersion(lesson_id, f"第{lesson_id}讲", "cmn", renditions)


def programmes() -> list[Programme]:
    q4 = Programme(1, "2026-Q4", 1, "2026年第四季度", date(2026, 10, 1), date(2026, 12, 31),
                   (Item(1, lesson(1)), Item(2, lesson(2), mandatory=False), Item(3, lesson(3))),
                   (Slot("07:00", "broadcast", 2), Slot("07:05", "class", 3), Slot("19:30", "class"),
                    Slot("23:55", "broadcast")))
    q1 = Programme(2, "2027-Q1", 1, "2027年第一季度", date(2027, 1, 1), date(2027, 3, 31), (Item(1, lesson(5)),))
    return [q1, q4]  # out of order on purpose: the manifest orders programmes by valid_from


def manifest(audience: Audience) -> Manifest:
    built = build_manifest(channel=channel_id(audience), audience=audience, version=1,
                           issued_at=datetime(2026, 11, 22, 3, tzinfo=timezone.utc), programmes=programmes(),
                           today=BUILT, grace_days=30)
    return parse_manifest(canonical_json(built))


RADIO_MANIFEST = manifest(RADIO)
TERMINAL_MANIFEST = manifest(TERMINAL)


def names(items) -> list[str]:
    return [f"{i.programme}/{i.position}" for i in items]


@pytest.mark.parametrize("today, expected", [
    (date(2026, 9, 30), []),                                                 # before: downloaded ahead, silent
    (date(2026, 10, 1), ["2026-Q4/1", "2026-Q4/2", "2026-Q4/3"]),           # first day of the window
    (date(2026, 12, 31), ["2026-Q4/1", "2026-Q4/2", "2026-Q4/3"]),          # last day
    (date(2027, 1, 15), ["2026-Q4/1", "2026-Q4/2", "2026-Q4/3", "2027-Q1/1"]),  # Q4 in grace, Q1 in window
    (date(2027, 1, 30), ["2026-Q4/1", "2026-Q4/2", "2026-Q4/3", "2027-Q1/1"]),  # last grace day (31 Dec + 30)
    (date(2027, 1, 31), ["2027-Q1/1"]),                                      # after the grace
    (date(2027, 5, 1), []),                                                  # Q1 is past its grace too
])
def test_playable_follows_the_programme_window_and_its_grace(today, expected):
    assert names(playable(RADIO_MANIFEST, today)) == expected


@pytest.mark.parametrize("today, playlist, menu", [
    (date(2026, 11, 22), ["2026-Q4/1", "2026-Q4/3"], ["2026-Q4/2"]),
    (date(2027, 1, 15), ["2026-Q4/1", "2026-Q4/3", "2027-Q1/1"], ["2026-Q4/2"]),
    (date(2027, 2, 15), ["2027-Q1/1"], []),
])
def test_the_radio_playlist_holds_the_mandatory_items_and_the_menu_the_optional_ones(today, playlist, menu):
    assert names(radio_playlist(RADIO_MANIFEST, today)) == playlist
    assert names(radio_menu(RADIO_MANIFEST, today)) == menu
    assert all(i.profile == "radio" for i in radio_playlist(RADIO_MANIFEST, today))


ITEMS = radio_playlist(RADIO_MANIFEST, date(2027, 1, 15))  # Q4/1, Q4/3, Q1/1


@pytest.mark.parametrize("current, step, expected", [
    (0, 1, "2026-Q4/3"),
    (1, 1, "2027-Q1/1"),
    (2, 1, "2026-Q4/1"),      # next wraps to the first
    (1, -1, "2026-Q4/1"),
    (0, -1, "2027-Q1/1"),     # previous wraps to the last
    (None, 1, "2026-Q4/1"),   # nothing playing: next starts at the top
    (None, -1, "2027-Q1/1"),  # ...and previous at the bottom
    ("gone", 1, "2026-Q4/1"),  # the file playing left the manifest
])
def test_next_and_previous_step_through_the_playlist_and_wrap(current, step, expected):
    sha256 = ITEMS[current].sha256 if isinstance(current, int) else current
    assert names([next_item(ITEMS, sha256, step)]) == [expected]


def test_next_of_an_empty_playlist_is_nothing():
    assert next_item([], None, 1) is None


ITEM = ITEMS[0]  # 600.5 seconds long


@pytest.mark.parametrize("positions, completed, expected", [
    ({ITEM.sha256: 100.0}, frozenset(), 100.0),          # resume where it stopped
    ({}, frozenset(), 0.0),                              # never played
    ({ITEM.sha256: 595.0}, frozenset(), 595.0),          # 5.5 s before the end: still resumes
    ({ITEM.sha256: 596.0}, frozenset(), 0.0),            # within 5 s of the end: start again
    ({ITEM.sha256: 700.0}, frozenset(), 0.0),            # beyond the end (a shorter new rendition)
    ({ITEM.sha256: -3.0}, frozenset(), 0.0),
    ({ITEM.sha256: 100.0}, frozenset({ITEM.sha256}), 0.0),  # completed: start again
    ({sha(999): 100.0}, frozenset(), 0.0),               # another file's position
])
def test_resume_position(positions, completed, expected):
    assert resume_position(PlayerState(positions=positions, completed=completed), ITEM) == expected


@pytest.mark.parametrize("position, expected", [(0.0, 600.5), (100.0, 500.5), (600.5, 0.0), (700.0, 0.0)])
def test_until_the_item_ends(position, expected):
    assert until(ITEM, position) == expected


@pytest.mark.parametrize("now, last_slot, expected", [
    (datetime(2026, 11, 22, 7, 0), None, ("07:00", "2026-Q4/2", "2026-11-22 07:00")),   # on time, pinned item
    (datetime(2026, 11, 22, 7, 4), None, ("07:00", "2026-Q4/2", "2026-11-22 07:00")),   # 4 min late
    (datetime(2026, 11, 22, 7, 4), "2026-11-22 07:00", None),                           # already fired
    (datetime(2026, 11, 22, 7, 4), "2026-11-21 07:00", ("07:00", "2026-Q4/2", "2026-11-22 07:00")),  # yesterday's
    (datetime(2026, 11, 22, 6, 59), None, None),                                        # not yet
    (datetime(2026, 11, 22, 7, 8), "2026-11-22 07:00", ("07:05", "2026-Q4/3", "2026-11-22 07:05")),  # next slot
    (datetime(2026, 11, 22, 7, 8), None, ("07:05", "2026-Q4/3", "2026-11-22 07:05")),   # the latest due slot wins
    (datetime(2026, 11, 22, 19, 39), None, ("19:30", "2026-Q4/1", "2026-11-22 19:30")),  # 9 min late
    (datetime(2026, 11, 22, 19, 40), None, ("19:30", "2026-Q4/1", "2026-11-22 19:30")),  # 10 min late: still
    (datetime(2026, 11, 22, 19, 41), None, None),                                       # 11 min late: skipped
    (datetime(2026, 11, 22, 23, 59), None, ("23:55", "2026-Q4/1", "2026-11-22 23:55")),
    (datetime(2026, 11, 23, 0, 3), None, ("23:55", "2026-Q4/1", "2026-11-22 23:55")),  # late past midnight
    # Unpinned slots rotate the mandatory items (Q4/1, Q4/3) by day of the window: day 52 -> Q4/1, day 53 -> Q4/3.
    (datetime(2026, 11, 23, 19, 30), None, ("19:30", "2026-Q4/3", "2026-11-23 19:30")),
    (datetime(2026, 10, 1, 19, 30), None, ("19:30", "2026-Q4/1", "2026-10-01 19:30")),  # first day: first item
    (datetime(2026, 9, 30, 19, 30), None, None),                                        # before the window
    (datetime(2027, 1, 5, 19, 30), None, None),                 # in the grace: plays count, slots are silent
    (datetime(2026, 12, 31, 23, 56), None, ("23:55", "2026-Q4/3", "2026-12-31 23:55")),  # last day: 91 % 2
    (datetime(2027, 1, 1, 0, 2), None, ("23:55", "2026-Q4/3", "2026-12-31 23:55")),  # ...fired just after it
])
def test_due_slot(now, last_slot, expected):
    due = due_slot(TERMINAL_MANIFEST, now, last_slot)
    if expected is None:
        assert due is None
    else:
        slot, item, key = due
        assert (slot.time, f"{item.programme}/{item.position}", key) == expected
        assert item.profile == "terminal-video"


def test_a_terminal_plays_a_due_slot_from_the_start():
    state = PlayerState(positions={sha(11): 300.0}, current=None, last_slot="2026-11-21 19:30")
    decision = decide(TERMINAL_MANIFEST, datetime(2026, 11, 22, 19, 31), state, "terminal")
    assert decision.play
    assert (decision.item.lesson, decision.start, decision.trigger, decision.slot.kind, decision.slot_key) == (
        1, 0.0, "schedule", "class", "2026-11-22 19:30")


@pytest.mark.parametrize("kind, now, last_slot", [
    ("radio", datetime(2026, 11, 22, 19, 31), None),            # radios play on keys only
    ("terminal", datetime(2026, 11, 22, 12, 0), None),          # no slot due
    ("terminal", datetime(2026, 11, 22, 19, 31), "2026-11-22 19:30"),  # fired already
])
def test_nothing_starts_on_its_own(kind, now, last_slot):
    decision = decide(TERMINAL_MANIFEST, now, PlayerState(last_slot=last_slot), kind)
    assert decision == Decision() and not decision.play


def test_decide_refuses_an_unknown_device_kind():
    with pytest.raises(ValueError, match="kind: 'tv' is not one of radio, terminal"):
        decide(TERMINAL_MANIFEST, datetime(2026, 11, 22, 19, 31), PlayerState(), "tv")
