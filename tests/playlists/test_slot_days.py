"""Slot days in the manifest: which schema the server writes, what the device reads, and that an agent which only
knows schema 1 (the parser as released before slots had days) keeps accepting every manifest without a day
restriction and refuses, rather than misplays, one with it."""

from __future__ import annotations

import json
import sys
import types
from datetime import date, timedelta
from pathlib import Path

import pytest

from device_agent.schedule import due_slot, playing_days, slot_item
from playlists.manifest import SCHEMA, SCHEMA_DAYS, ManifestError, canonical_json, parse_manifest
from playlists.model import WEEKDAYS, Item, Programme, Slot, days_problem, plays_on
from tests.playlists.test_manifest import build, lesson, q4

RELEASED_SCHEMA1 = Path(__file__).parent / "released" / "manifest_schema1.py.txt"
"""playlists/manifest.py as agent 0.3.0 has it (commit 95963bf, the last that knew only schema 1), kept as a fixture
so the test runs in any checkout, shallow ones too."""
WEEKDAYS_ONLY = ("mon", "tue", "wed", "thu", "fri")


def _schema1_parser():
    """parse_manifest as agent 0.3.0 has it: the released code, loaded from the fixture."""
    source = RELEASED_SCHEMA1.read_text(encoding="utf-8")
    assert "SCHEMA = 1" in source and '"days"' not in source
    module = types.ModuleType("schema1_manifest")
    sys.modules[module.__name__] = module  # dataclasses look their module up while the class is made
    try:
        exec(compile(source, "schema1_manifest.py", "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module.parse_manifest, module.ManifestError


def with_slots(*slots: Slot) -> Programme:
    p = q4()
    return Programme(p.id, p.code, p.version, p.title, p.valid_from, p.valid_until, p.items, slots)


# ---- the model --------------------------------------------------------------------------------------------------

def test_a_slot_plays_every_day_unless_told_and_keeps_its_days_in_week_order():
    assert Slot("07:00").days == WEEKDAYS
    assert Slot("07:00", days=("fri", "mon", "wed")).days == ("mon", "wed", "fri")
    assert plays_on(WEEKDAYS_ONLY, date(2026, 11, 23))       # a Monday
    assert not plays_on(WEEKDAYS_ONLY, date(2026, 11, 28))   # a Saturday


@pytest.mark.parametrize("days, why", [
    ((), "is empty"), (("mon", "mon"), "twice"), (("Monday",), "'Monday'"), ("mon", "not a list"),
    ((1,), "1"), (None, "not a list"),
])
def test_bad_days_are_refused_naming_the_problem(days, why):
    assert why in days_problem(days)
    with pytest.raises(ValueError, match=r"Slot\.days"):
        Slot("07:00", days=days)


# ---- which schema the server writes ------------------------------------------------------------------------------

def test_every_day_slots_give_the_schema_1_bytes_agents_already_accept():
    m = build()
    assert m["schema"] == SCHEMA == 1
    assert all("days" not in s for s in m["slots"])
    old_parse, _ = _schema1_parser()
    old, new = old_parse(canonical_json(m)), parse_manifest(canonical_json(m))
    assert [(s.programme, s.time, s.kind, s.item_position) for s in old.slots] == \
        [(s.programme, s.time, s.kind, s.item_position) for s in new.slots] == \
        [("2026-Q4", "07:00", "class", 1), ("2026-Q4", "19:30", "broadcast", None)]


def test_a_day_restricted_slot_makes_schema_2_with_days_on_every_slot():
    m = build(programmes=[with_slots(Slot("07:00", days=WEEKDAYS_ONLY), Slot("19:30", "class", 1))])
    assert m["schema"] == SCHEMA_DAYS == 2
    assert [(s["time"], s["days"]) for s in m["slots"]] == [("07:00", list(WEEKDAYS_ONLY)), ("19:30", list(WEEKDAYS))]
    parsed = parse_manifest(canonical_json(m))
    assert parsed.schema == 2
    assert [s.days for s in parsed.slots] == [WEEKDAYS_ONLY, WEEKDAYS]


def test_a_restricted_slot_pinned_to_an_item_the_channel_lacks_does_not_change_the_schema():
    # The 12:00 slot is pinned to item 3 (sea branch only): this terminal never sees it, so schema 1 still serves.
    m = build(programmes=[with_slots(Slot("19:30"), Slot("12:00", "broadcast", 3, days=("sat",)))])
    assert m["schema"] == 1 and [s["time"] for s in m["slots"]] == ["19:30"]


def test_an_old_format_manifest_without_days_is_accepted_and_means_every_day():
    old = build()  # schema 1: what every server wrote before slots had days
    parsed = parse_manifest(json.dumps(old).encode())
    assert parsed.schema == 1 and all(s.days == WEEKDAYS for s in parsed.slots)
    saturday = date(2026, 11, 28)
    due = due_slot(parsed, _at(saturday, "19:31"), None)
    assert due is not None and due[0].time == "19:30"


# ---- the compatibility rule: an agent that only knows schema 1 ---------------------------------------------------

def test_an_agent_that_knows_only_schema_1_refuses_a_schema_2_manifest_and_says_to_update():
    old_parse, old_error = _schema1_parser()
    m = build(programmes=[with_slots(Slot("07:00", days=WEEKDAYS_ONLY))])
    with pytest.raises(old_error, match=r"schema: 2 is not schema 1 \(a newer server\? update the agent\)"):
        old_parse(canonical_json(m))


def test_the_server_never_writes_days_into_a_schema_1_manifest():
    """The rule old agents rely on, over every mix of slots: days appear exactly when the schema is 2."""
    old_parse, old_error = _schema1_parser()
    for days in (WEEKDAYS, WEEKDAYS_ONLY, ("sun",), ("mon", "tue", "wed", "thu", "fri", "sat")):
        m = build(programmes=[with_slots(Slot("07:00", days=days), Slot("19:30"))])
        data = canonical_json(m)
        assert (b'"days"' in data) == (m["schema"] == 2) == (days != WEEKDAYS)
        if m["schema"] == 1:
            old_parse(data)  # accepted as it always was
        else:
            with pytest.raises(old_error):
                old_parse(data)


# ---- strict parsing of days --------------------------------------------------------------------------------------

def _schema2() -> dict:
    return build(programmes=[with_slots(Slot("07:00", days=WEEKDAYS_ONLY), Slot("19:30"))])


@pytest.mark.parametrize("mutate, field", [
    (lambda m: m["slots"][0].pop("days"), "slots[0].days"),                          # schema 2: days required
    (lambda m: m["slots"][0].update(days=[]), "slots[0].days"),
    (lambda m: m["slots"][0].update(days=["mon", "mon"]), "slots[0].days"),
    (lambda m: m["slots"][0].update(days=["monday"]), "slots[0].days"),
    (lambda m: m["slots"][0].update(days="mon"), "slots[0].days"),
    (lambda m: m["slots"][0].update(days=[1, 2]), "slots[0].days"),
    (lambda m: m["slots"][0].update(days=["fri", "mon"]), "slots[0].days"),          # not in week order
    (lambda m: m.update(schema=1), "slots[0].days"),                                 # days are not schema 1
    (lambda m: m.update(schema=3), "schema"),
])
def test_a_malformed_schema_2_manifest_is_refused_naming_the_field(mutate, field):
    m = _schema2()
    mutate(m)
    with pytest.raises(ManifestError) as caught:
        parse_manifest(json.dumps(m).encode())
    assert str(caught.value).startswith(field), str(caught.value)


# ---- what plays when ---------------------------------------------------------------------------------------------

def _at(day: date, hhmm: str):
    from datetime import datetime, time
    return datetime.combine(day, time.fromisoformat(hhmm))


def _manifest(*slots: Slot):
    return parse_manifest(canonical_json(build(programmes=[with_slots(*slots)])))


@pytest.mark.parametrize("now, expected", [
    (_at(date(2026, 11, 23), "07:02"), "2026-11-23 07:00"),   # Monday
    (_at(date(2026, 11, 27), "07:00"), "2026-11-27 07:00"),   # Friday
    (_at(date(2026, 11, 28), "07:02"), None),                 # Saturday
    (_at(date(2026, 11, 29), "07:02"), None),                 # Sunday
])
def test_a_monday_to_friday_slot_is_due_only_on_weekdays(now, expected):
    due = due_slot(_manifest(Slot("07:00", days=WEEKDAYS_ONLY)), now, None)
    assert (due[2] if due else None) == expected


def test_a_late_night_friday_slot_caught_up_after_midnight_still_plays_on_saturday_morning():
    manifest = _manifest(Slot("23:55", days=("fri",)))
    due = due_slot(manifest, _at(date(2026, 11, 28), "00:03"), None)  # Saturday 00:03: Friday's slot, 8 min late
    assert due is not None and due[2] == "2026-11-27 23:55"
    assert due_slot(manifest, _at(date(2026, 11, 29), "00:03"), None) is None  # Sunday 00:03: Saturday has none


def test_a_weekday_slot_rotates_over_its_own_days_so_no_lesson_always_falls_on_a_weekend():
    # Q4 has two mandatory items (1 and 3); give it seven so a calendar-day rotation would skip two of them.
    p = q4()
    items = tuple(Item(n, lesson(n)) for n in range(1, 8))
    programme = Programme(p.id, p.code, p.version, p.title, p.valid_from, p.valid_until, items,
                          (Slot("07:00", days=WEEKDAYS_ONLY),))
    manifest = parse_manifest(canonical_json(build(programmes=[programme])))
    slot = manifest.slots[0]
    heard = set()
    day = p.valid_from
    for _ in range(7 * 3):
        if plays_on(slot.days, day):
            heard.add(slot_item(manifest, slot, day).position)
        day += timedelta(days=1)
    assert heard == set(range(1, 8))


@pytest.mark.parametrize("days, start, end, expected", [
    (WEEKDAYS, date(2026, 10, 1), date(2026, 10, 1), 0),
    (WEEKDAYS, date(2026, 10, 1), date(2026, 11, 22), 52),          # every day: days since valid_from
    (WEEKDAYS_ONLY, date(2026, 11, 23), date(2026, 11, 30), 5),     # one week
    (WEEKDAYS_ONLY, date(2026, 11, 23), date(2026, 11, 28), 5),     # Mon..Fri
    (("sat", "sun"), date(2026, 11, 23), date(2026, 11, 28), 0),
    (("sat", "sun"), date(2026, 11, 23), date(2026, 12, 7), 4),
])
def test_playing_days_counts_the_slot_days_before_a_day(days, start, end, expected):
    assert playing_days(days, start, end) == expected
