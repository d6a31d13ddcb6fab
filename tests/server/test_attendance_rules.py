"""Rule tables for the pure attendance code: ``server.attendance.rules`` and ``server.attendance.fold.fold``.

No database: events are plain dicts shaped like ``device_agent.events.play`` / ``checkin`` bodies, given their
attributed time by ``attendance.attribute`` and folded into a ``Delta`` with durations and programme windows passed
in. Each table below is one rule of the product spec: sittings over days, a radio changing hands, clock resets, a
replaced rendition, exclusions, terminal plays, check-in windows, membership periods and the segment algebra.
"""

from __future__ import annotations

import itertools
import random
from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Optional

import pytest

from server.attendance import fold as attendance
from server.attendance.fold import Delta, DeviceFacts
from server.attendance.rules import (Rules, SessionFacts, Window, active_in, add_range, attributed_time,
                                     checkin_matches, completed_at, corrected_time, covered_seconds, in_window,
                                     holder_on, is_class, merge_segments, parse_period, play_use, quarter, rate,
                                     read_play, to_epoch, year)

UTC = timezone.utc
RULES = Rules()
PROG, LESSON = "P26", 7
SHA_OLD, SHA_NEW, SHA_UNKNOWN, SHA_ZERO = "a" * 64, "b" * 64, "c" * 64, "d" * 64
DURATIONS = {SHA_OLD: 600.0, SHA_NEW: 480.0, SHA_ZERO: 0.0}
WINDOWS = {PROG: Window(date(2026, 9, 1), date(2026, 12, 31))}  # grace runs to 2027-01-30
ENROLLED = datetime(2026, 8, 1, tzinfo=UTC)
RADIO = DeviceFacts("radio-1", "radio", 11, ENROLLED,
                    ((date(2026, 10, 1), date(2026, 11, 14), 1), (date(2026, 11, 15), None, 2)))
TERMINAL = DeviceFacts("term-1", "terminal", 22, ENROLLED, ())

_ids = itertools.count(1)


def utc(y: int, m: int, d: int, hh: int = 10, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=UTC)


def iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def play_body(when: datetime, start: float = 0.0, end: float = 0.0, *, phase: str = "progress",
              play_id: str = "play-1", programme: str = PROG, lesson: int = LESSON, sha: str = SHA_OLD,
              volume: int = 7, muted: bool = False, trigger: str = "key", slot_kind: Optional[str] = None,
              offset: float = 0.0, **extra) -> dict:
    """A play event body as the agent sends it; WHEN is the true time (device clock + OFFSET)."""
    body = {"type": "play", "phase": phase, "play_id": play_id, "programme": programme, "lesson": lesson,
            "sha256": sha, "start_position": round(start, 2), "end_position": round(end, 2),
            "listened_seconds": round(max(0.0, end - start), 2), "volume": volume, "muted": muted,
            "trigger": trigger, "started_at": iso(when), "device_time": iso(when - timedelta(seconds=offset)),
            "time": iso(when), "clock_offset": offset}
    if slot_kind:
        body["slot_kind"] = slot_kind
    body.update(extra)
    return body


def attributed(body: dict, received_at: datetime, device: DeviceFacts = RADIO, rules: Rules = RULES):
    event = SimpleNamespace(event_id=f"ev-{next(_ids):06d}", type=body["type"], body=body)
    return attendance.attribute([event], received_at, device, rules)[0]


def play(when: datetime, start: float = 0.0, end: float = 0.0, *, received_at: Optional[datetime] = None,
         device: DeviceFacts = RADIO, **kw):
    """An attributed play event, received two minutes after WHEN unless told otherwise."""
    return attributed(play_body(when, start, end, **kw), received_at or when + timedelta(minutes=2), device)


def fold(events, device: DeviceFacts = RADIO, durations=None, windows=None, rules: Rules = RULES) -> Delta:
    return attendance.fold(Delta(), device, list(events), DURATIONS if durations is None else durations,
                           WINDOWS if windows is None else windows, rules)


def orderings(events: list) -> dict[str, list]:
    shuffled = {}
    for seed in (1, 2, 3):
        copy = list(events)
        random.Random(seed).shuffle(copy)
        shuffled[f"shuffled-{seed}"] = copy
    return {"as-played": list(events), "reversed": list(reversed(events)), **shuffled}


def cov_key(member: int, sha: str = SHA_OLD) -> tuple:
    return (member, PROG, LESSON, sha)


# ---------------------------------------------------------------------------------------------------------------
# 1. Sittings spread over days (a 600 s rendition: complete at 540 s)

D1, D2, D3, D4 = utc(2026, 10, 5), utc(2026, 10, 6), utc(2026, 10, 7), utc(2026, 10, 8)

SITTINGS = [
    pytest.param([(D1, 0, 200), (D2, 200, 400), (D3, 400, 560)], 560.0, D3, id="three-days-0-200-400-560"),
    pytest.param([(D1 + timedelta(minutes=i), 0, 60) for i in range(90)], 60.0, None,
                 id="first-minute-replayed-90-times"),
    pytest.param([(D1, 0, 300), (D2, 200, 500), (D3, 250, 540)], 540.0, D3, id="overlaps-counted-once-exactly-90pc"),
    pytest.param([(D1, 0, 300), (D2, 200, 539.99)], 539.99, None, id="just-under-90pc"),
    # D3 crosses 90%; D4 adds the tail later and must not move the completion time.
    pytest.param([(D1, 0, 300), (D2, 300, 400), (D3, 400, 560), (D4, 0, 600)], 600.0, D3,
                 id="tail-heard-after-completion"),
    # The stretch 0-540 was first heard on D2 (0-300 replayed on D4 does not lift it).
    pytest.param([(D4, 0, 300), (D2, 0, 540)], 540.0, D2, id="earlier-sitting-fed-last"),
    pytest.param([(D1, 100, 100), (D1, 0, 0)], 0.0, None, id="only-started-events"),
]


@pytest.mark.parametrize("order", ["as-played", "reversed", "shuffled-1", "shuffled-2", "shuffled-3"])
@pytest.mark.parametrize("sittings, covered, done_at", SITTINGS)
def test_sittings_cover_the_union_and_complete_when_90pc_first_reached(sittings, covered, done_at, order):
    events = orderings([play(when, a, b) for when, a, b in sittings])[order]
    delta = fold(events)
    cov = delta.coverage[cov_key(1)]
    assert covered_seconds(cov.segments) == pytest.approx(covered)
    expected = None if done_at is None else to_epoch(done_at)
    assert completed_at(cov.segments, cov.duration_s, RULES) == expected
    assert cov.events == len(sittings)
    assert cov.first_at == min(w for w, _a, _b in sittings)
    assert cov.last_at == max(w for w, _a, _b in sittings)
    assert not delta.exclusions


@pytest.mark.parametrize("sittings, covered, done_at", SITTINGS)
def test_any_order_and_any_batching_gives_identical_segments(sittings, covered, done_at):
    events = [play(when, a, b) for when, a, b in sittings]
    results = {name: fold(evs).coverage[cov_key(1)].segments for name, evs in orderings(events).items()}
    reference = results["as-played"]
    assert all(segs == reference for segs in results.values()), results
    # Two batches folded apart and merged (what ingest does row by row) equal one fold of all (a rebuild).
    half = len(events) // 2
    left = fold(events[:half]).coverage.get(cov_key(1))
    right = fold(events[half:]).coverage[cov_key(1)]
    left_segments = left.segments if left is not None else []
    assert merge_segments(left_segments, right.segments) == reference
    assert merge_segments(right.segments, left_segments) == reference


def test_completion_time_is_the_sitting_that_crossed_not_the_last():
    events = [play(D1, 0, 200), play(D2, 200, 400), play(D3, 400, 560), play(D4, 560, 600)]
    cov = fold(events).coverage[cov_key(1)]
    assert completed_at(cov.segments, 600, RULES) == to_epoch(D3)
    assert completed_at(cov.segments, 600, Rules(completion_threshold=1.0)) == to_epoch(D4)
    assert completed_at(cov.segments, 0, RULES) is None


# ---------------------------------------------------------------------------------------------------------------
# 2. A radio handed to another member mid-quarter (member 1 until 14 Nov, member 2 from 15 Nov; days are local)

@pytest.mark.parametrize("when, member", [
    pytest.param(utc(2026, 10, 1, 0, 0), 1, id="first-day-of-assignment"),
    pytest.param(utc(2026, 10, 20), 1, id="october"),
    pytest.param(utc(2026, 11, 14, 15, 59), 1, id="14-nov-23h59-local"),
    pytest.param(utc(2026, 11, 14, 16, 0), 2, id="15-nov-00h00-local-is-still-14-nov-utc"),
    pytest.param(utc(2026, 11, 15), 2, id="15-nov"),
    pytest.param(utc(2026, 12, 20), 2, id="december-open-ended"),
    pytest.param(utc(2026, 9, 30, 15, 59), None, id="before-anyone-held-it"),
    pytest.param(utc(2026, 9, 30, 16, 0), 1, id="1-oct-local-is-30-sep-utc"),
])
def test_play_counts_for_the_member_holding_the_radio_that_local_day(when, member):
    event = play(when, 0, 120)
    delta = fold([event])
    if member is None:
        assert delta.coverage == {}
        assert delta.exclusions == {"no_member": [1, event.event_id]}
    else:
        assert list(delta.coverage) == [cov_key(member)]
        assert not delta.exclusions


def test_reassigned_radio_splits_one_batch_between_members():
    events = [play(utc(2026, 10, 20), 0, 200), play(utc(2026, 11, 10), 200, 400),
              play(utc(2026, 11, 16), 400, 560), play(utc(2026, 11, 20), 0, 100)]
    delta = fold(events)
    assert set(delta.coverage) == {cov_key(1), cov_key(2)}
    assert covered_seconds(delta.coverage[cov_key(1)].segments) == 400.0
    assert covered_seconds(delta.coverage[cov_key(2)].segments) == 260.0
    # Neither member completes: the first member's sittings never pass to the second.
    assert completed_at(delta.coverage[cov_key(1)].segments, 600, RULES) is None
    assert completed_at(delta.coverage[cov_key(2)].segments, 600, RULES) is None


GAPPED = ((date(2026, 10, 1), date(2026, 10, 31), 1), (date(2026, 11, 10), None, 2))


@pytest.mark.parametrize("assignments, day, member", [
    pytest.param(RADIO.assignments, date(2026, 11, 14), 1, id="last-day-inclusive"),
    pytest.param(RADIO.assignments, date(2026, 11, 15), 2, id="next-holder-from-day"),
    pytest.param(RADIO.assignments, date(2026, 9, 30), None, id="before-first"),
    pytest.param(GAPPED, date(2026, 11, 5), None, id="gap-between-holders"),
    pytest.param(GAPPED, date(2030, 1, 1), 2, id="open-ended-until"),
    pytest.param((), date(2026, 10, 1), None, id="never-assigned"),
])
def test_holder_on(assignments, day, member):
    assert holder_on(assignments, day) == member


def test_play_in_a_gap_between_holders_is_no_member():
    radio = DeviceFacts("radio-2", "radio", 11, ENROLLED, GAPPED)
    events = [play(utc(2026, 11, 5), 0, 100, device=radio), play(utc(2026, 11, 6), 0, 100, device=radio)]
    delta = fold(events, device=radio)
    assert delta.coverage == {}
    assert delta.exclusions == {"no_member": [2, events[1].event_id]}


# ---------------------------------------------------------------------------------------------------------------
# 3. Device clocks: reset to 1970, ahead of the server, unreadable, or drifted but corrected

RECEIVED = utc(2026, 10, 20, 12, 0)
ACTUAL = RECEIVED - timedelta(minutes=5)  # when the play really happened


@pytest.mark.parametrize("fields, enrolled, expected_at, flag", [
    pytest.param({"device_time": "1970-01-01T00:05:00+00:00", "clock_offset": 1.5}, ENROLLED, RECEIVED,
                 "before_enrolment", id="reset-to-1970-offset-learnt-before-reset"),
    pytest.param({"device_time": "1970-01-01T00:05:00+00:00", "clock_offset": 0.4}, utc(2026, 9, 1), RECEIVED,
                 "before_enrolment", id="reset-to-1970-enrolled-september"),
    pytest.param({"device_time": "1970-01-01T00:05:00Z", "clock_offset": None}, ENROLLED, RECEIVED,
                 "before_enrolment", id="reset-to-1970-never-learnt-offset"),
    # After the reset the device learnt the new (huge) offset: the corrected time is right again.
    pytest.param({"device_time": "1970-01-01T00:05:00Z",
                  "clock_offset": (ACTUAL - datetime(1970, 1, 1, 0, 5, tzinfo=UTC)).total_seconds()},
                 ENROLLED, ACTUAL, None, id="reset-to-1970-offset-learnt-after-reset"),
    pytest.param({"device_time": iso(ENROLLED - timedelta(seconds=600)), "clock_offset": 0}, ENROLLED,
                 ENROLLED - timedelta(seconds=600), None, id="before-enrolment-within-tolerance"),
    pytest.param({"device_time": iso(ENROLLED - timedelta(seconds=601)), "clock_offset": 0}, ENROLLED, RECEIVED,
                 "before_enrolment", id="before-enrolment-beyond-tolerance"),
    pytest.param({"device_time": iso(RECEIVED + timedelta(seconds=601)), "clock_offset": 0}, ENROLLED, RECEIVED,
                 "future", id="future-beyond-tolerance"),
    pytest.param({"device_time": iso(RECEIVED + timedelta(seconds=600)), "clock_offset": 0}, ENROLLED,
                 RECEIVED + timedelta(seconds=600), None, id="future-within-tolerance"),
    pytest.param({"device_time": iso(RECEIVED + timedelta(days=365)), "clock_offset": 0}, ENROLLED, RECEIVED,
                 "future", id="clock-a-year-ahead"),
    pytest.param({"device_time": None}, ENROLLED, RECEIVED, "no_time", id="no-device-time"),
    pytest.param({"device_time": "yesterday"}, ENROLLED, RECEIVED, "no_time", id="garbage-device-time"),
    pytest.param({"device_time": "2026-10-20T11:55:00"}, ENROLLED, RECEIVED, "no_time", id="naive-device-time"),
    pytest.param({"device_time": 1792497300}, ENROLLED, RECEIVED, "no_time", id="numeric-device-time"),
    pytest.param({"device_time": iso(ACTUAL), "clock_offset": 1e12}, ENROLLED, RECEIVED, "no_time",
                 id="absurd-offset"),
    # Device two hours slow: beyond the tolerance raw, but its learnt offset corrects it.
    pytest.param({"device_time": iso(ACTUAL - timedelta(hours=2)), "clock_offset": 7200.0}, ENROLLED, ACTUAL, None,
                 id="slow-clock-corrected-by-offset"),
    pytest.param({"device_time": iso(ACTUAL + timedelta(hours=3)), "clock_offset": -10800}, ENROLLED, ACTUAL, None,
                 id="fast-clock-corrected-by-offset"),
    pytest.param({"device_time": iso(ACTUAL + timedelta(seconds=240)), "clock_offset": "soon"}, ENROLLED,
                 ACTUAL + timedelta(seconds=240), None, id="garbage-offset-uses-raw-clock"),
    pytest.param({"device_time": "2026-10-20T19:55:00+08:00", "clock_offset": 0}, ENROLLED, ACTUAL, None,
                 id="device-time-in-utc+8"),
])
def test_attributed_time(fields, enrolled, expected_at, flag):
    body = {"type": "play", **fields}
    at, got_flag = attributed_time(body, RECEIVED, enrolled, RULES)
    assert (at, got_flag) == (expected_at, flag)
    assert at.tzinfo is not None


def test_corrected_time_is_device_clock_plus_offset():
    assert corrected_time({"device_time": "2026-10-20T10:00:00Z", "clock_offset": 30.5}) == \
        utc(2026, 10, 20, 10, 0, 30) + timedelta(seconds=0.5)
    assert corrected_time({"device_time": "2026-10-20T10:00:00Z", "clock_offset": True}) == utc(2026, 10, 20, 10)
    assert corrected_time({}) is None


LATE_RECEIVED = utc(2026, 11, 20, 3, 0)  # member 2 holds the radio on that (local) day


@pytest.mark.parametrize("fields", [
    pytest.param({"device_time": "1970-01-01T00:05:00+00:00", "clock_offset": 2.0}, id="reset-to-1970"),
    pytest.param({"device_time": iso(LATE_RECEIVED + timedelta(days=2)), "clock_offset": 0.0}, id="future"),
    pytest.param({"device_time": "not a time"}, id="no-time"),
])
def test_flagged_play_counts_at_its_arrival_time(fields):
    received = LATE_RECEIVED
    event = attributed(play_body(RECEIVED, 0, 300, **fields), received)
    assert event.flag is not None and event.at == received
    delta = fold([event])
    assert not delta.exclusions
    cov = delta.coverage[cov_key(2)]
    assert cov.clock_flagged == 1 and cov.events == 1
    assert cov.first_at == cov.last_at == received
    assert cov.segments == [[0, 30000, to_epoch(received)]]


def test_clock_flags_are_counted_per_event():
    good = play(utc(2026, 10, 20), 0, 200)
    reset = attributed(play_body(utc(2026, 10, 21), 200, 400, device_time="1970-01-01T00:05:00Z", clock_offset=0.0),
                       utc(2026, 10, 21, 10, 2))
    future = attributed(play_body(utc(2026, 10, 22), 400, 560, device_time="2031-01-01T00:00:00Z"),
                        utc(2026, 10, 22, 10, 2))
    cov = fold([good, reset, future]).coverage[cov_key(1)]
    assert (cov.events, cov.clock_flagged) == (3, 2)
    assert completed_at(cov.segments, 600, RULES) == to_epoch(utc(2026, 10, 22, 10, 2))


# ---------------------------------------------------------------------------------------------------------------
# 4. A lesson replaced by a new rendition (same lesson id: old 600 s, new 480 s, new completes at 432 s)

@pytest.mark.parametrize("sittings, expected", [
    pytest.param([(SHA_OLD, 0, 300), (SHA_NEW, 0, 300)], {SHA_OLD: (300.0, False), SHA_NEW: (300.0, False)},
                 id="300-old-plus-300-new-completes-neither"),
    pytest.param([(SHA_OLD, 0, 300), (SHA_NEW, 300, 480)], {SHA_OLD: (300.0, False), SHA_NEW: (180.0, False)},
                 id="resumed-on-new-rendition-completes-neither"),
    pytest.param([(SHA_NEW, 0, 440)], {SHA_NEW: (440.0, True)}, id="440-of-new-completes-new"),
    pytest.param([(SHA_NEW, 0, 432)], {SHA_NEW: (432.0, True)}, id="exactly-432-of-new"),
    pytest.param([(SHA_NEW, 0, 431.99)], {SHA_NEW: (431.99, False)}, id="just-under-432-of-new"),
    pytest.param([(SHA_OLD, 0, 440)], {SHA_OLD: (440.0, False)}, id="440-of-old-is-not-enough-for-old"),
    pytest.param([(SHA_OLD, 0, 540), (SHA_NEW, 0, 10)], {SHA_OLD: (540.0, True), SHA_NEW: (10.0, False)},
                 id="old-completed-before-replacement"),
])
def test_coverage_is_per_rendition(sittings, expected):
    events = [play(D1 + timedelta(hours=i), a, b, sha=sha, play_id=f"p{i}") for i, (sha, a, b) in
              enumerate(sittings)]
    delta = fold(events)
    assert set(delta.coverage) == {cov_key(1, sha) for sha in expected}
    for sha, (covered, complete) in expected.items():
        cov = delta.coverage[cov_key(1, sha)]
        assert cov.duration_s == DURATIONS[sha]
        assert covered_seconds(cov.segments) == pytest.approx(covered)
        assert (completed_at(cov.segments, cov.duration_s, RULES) is not None) is complete


# ---------------------------------------------------------------------------------------------------------------
# 5. What a radio play is excluded for

@pytest.mark.parametrize("when, overrides, rules, reason", [
    pytest.param(utc(2026, 10, 20), {}, RULES, None, id="ordinary-play-counts"),
    pytest.param(utc(2026, 10, 20), {"muted": True}, RULES, "muted", id="muted"),
    pytest.param(utc(2026, 10, 20), {"volume": 0}, RULES, "muted", id="volume-0"),
    pytest.param(utc(2026, 10, 20), {"volume": 0.0, "muted": False}, RULES, "muted", id="volume-0.0"),
    pytest.param(utc(2026, 10, 20), {"volume": 1}, RULES, None, id="volume-1"),
    pytest.param(utc(2026, 12, 31, 15, 59), {}, RULES, None, id="last-window-day-local"),
    pytest.param(utc(2027, 1, 15), {}, RULES, None, id="inside-grace"),
    pytest.param(utc(2027, 1, 30, 15, 59), {}, RULES, None, id="last-grace-day-local"),
    pytest.param(utc(2027, 1, 30, 16, 0), {}, RULES, "outside_window", id="grace-over-at-local-midnight"),
    pytest.param(utc(2027, 3, 1), {}, RULES, "outside_window", id="months-after-window"),
    pytest.param(utc(2026, 8, 31, 15, 59), {}, RULES, "outside_window", id="before-valid-from"),
    pytest.param(utc(2027, 1, 1), {}, Rules(grace_days=0), "outside_window", id="no-grace-configured"),
    pytest.param(utc(2027, 1, 15), {"muted": True}, RULES, "muted", id="muted-inside-grace"),
    pytest.param(utc(2026, 10, 20), {"programme": "X99"}, RULES, "unknown_programme", id="unknown-programme"),
    pytest.param(utc(2026, 10, 20), {"sha": SHA_UNKNOWN}, RULES, "unknown_rendition", id="unknown-rendition"),
    pytest.param(utc(2026, 10, 20), {"sha": SHA_ZERO}, RULES, "unknown_rendition", id="rendition-without-duration"),
    pytest.param(utc(2026, 10, 20), {"play_id": ""}, RULES, "play_without_id", id="empty-play-id"),
    pytest.param(utc(2026, 10, 20), {"play_id": "x" * 65}, RULES, "play_without_id", id="overlong-play-id"),
    pytest.param(utc(2026, 10, 20), {"sha": "a" * 63}, RULES, "play_without_lesson", id="short-sha256"),
    pytest.param(utc(2026, 10, 20), {"lesson": "7"}, RULES, "play_without_lesson", id="lesson-as-string"),
    pytest.param(utc(2026, 10, 20), {"lesson": True}, RULES, "play_without_lesson", id="lesson-as-bool"),
    pytest.param(utc(2026, 10, 20), {"programme": ""}, RULES, "play_without_lesson", id="empty-programme"),
    # Beyond what the aggregate columns hold (String(64), 32-bit Integer): writing them would refuse the batch.
    pytest.param(utc(2026, 10, 20), {"programme": "P" * 65}, RULES, "play_without_lesson", id="overlong-programme"),
    pytest.param(utc(2026, 10, 20), {"lesson": 2**31}, RULES, "play_without_lesson", id="lesson-beyond-int32"),
    pytest.param(utc(2026, 10, 20), {"lesson": 0}, RULES, "play_without_lesson", id="lesson-0"),
    pytest.param(utc(2026, 10, 20), {"lesson": -7}, RULES, "play_without_lesson", id="lesson-negative"),
    pytest.param(utc(2026, 10, 20), {"start_position": 300, "end_position": 200}, RULES, "play_bad_positions",
                 id="end-before-start"),
    pytest.param(utc(2026, 10, 20), {"start_position": -5}, RULES, "play_bad_positions", id="negative-start"),
    pytest.param(utc(2026, 10, 20), {"end_position": float("nan")}, RULES, "play_bad_positions", id="nan-end"),
    pytest.param(utc(2026, 10, 20), {"end_position": None}, RULES, "play_bad_positions", id="missing-end"),
])
def test_radio_play_exclusions(when, overrides, rules, reason):
    event = play(when, 0, 200, **overrides)
    delta = fold([event], rules=rules)
    if reason is None:
        assert not delta.exclusions
        assert covered_seconds(delta.coverage[cov_key(holder_on(RADIO.assignments, rules.local_day(when)))]
                               .segments) == 200.0
    else:
        assert delta.coverage == {}
        assert delta.exclusions == {reason: [1, event.event_id]}


@pytest.mark.parametrize("day, counts", [
    pytest.param(date(2026, 9, 1), True, id="valid-from"),
    pytest.param(date(2026, 8, 31), False, id="day-before"),
    pytest.param(date(2026, 12, 31), True, id="valid-until"),
    pytest.param(date(2027, 1, 30), True, id="until-plus-30"),
    pytest.param(date(2027, 1, 31), False, id="until-plus-31"),
])
def test_in_window(day, counts):
    assert in_window(day, WINDOWS[PROG], RULES) is counts


def test_exclusions_are_counted_with_the_highest_event_id():
    events = [play(utc(2026, 10, 20, 10, i), 0, 100, muted=True) for i in range(3)]
    delta = fold(list(reversed(events)))
    assert delta.exclusions == {"muted": [3, max(e.event_id for e in events)]}


def test_muted_stretch_between_audible_ones_is_not_covered():
    events = [play(D1, 0, 200), play(D1 + timedelta(minutes=4), 200, 400, muted=True),
              play(D1 + timedelta(minutes=8), 400, 560)]
    delta = fold(events)
    cov = delta.coverage[cov_key(1)]
    assert cov.segments == [[0, 20000, to_epoch(D1)], [40000, 56000, to_epoch(D1 + timedelta(minutes=8))]]
    assert completed_at(cov.segments, 600, RULES) is None
    assert delta.exclusions["muted"][0] == 1


# ---------------------------------------------------------------------------------------------------------------
# 6. Terminals: sessions, classes and the daily broadcast

@pytest.mark.parametrize("kind, trigger, slot_kind, use", [
    pytest.param("radio", "key", None, "coverage", id="radio-key"),
    pytest.param("radio", "schedule", "broadcast", "coverage", id="radio-schedule"),
    pytest.param("terminal", "schedule", "broadcast", "broadcast", id="schedule-broadcast-slot"),
    pytest.param("terminal", "schedule", None, "broadcast", id="schedule-slot-kind-missing"),
    pytest.param("terminal", "schedule", "lecture", "broadcast", id="schedule-unknown-slot-kind"),
    pytest.param("terminal", "schedule", "class", "session", id="schedule-class-slot"),
    pytest.param("terminal", "key", None, "session", id="key"),
    pytest.param("terminal", "command", None, "session", id="command"),
    pytest.param("terminal", "key", "broadcast", "session", id="key-ignores-slot-kind"),
])
def test_play_use(kind, trigger, slot_kind, use):
    parsed, why = read_play(play_body(D1, 0, 60, trigger=trigger, slot_kind=slot_kind))
    assert why is None
    assert play_use(kind, parsed) == use


@pytest.mark.parametrize("slot_kind, trigger, listened, rules, expected", [
    pytest.param("class", "schedule", 60.0, RULES, True, id="class-slot-short"),
    pytest.param("class", "schedule", 0.0, RULES, True, id="class-slot-silent"),
    pytest.param(None, "key", 1199.99, RULES, False, id="key-just-under-20-min"),
    pytest.param(None, "key", 1200.0, RULES, True, id="key-exactly-20-min"),
    pytest.param(None, "command", 3600.0, RULES, True, id="command-an-hour"),
    pytest.param(None, "key", 0.0, RULES, False, id="key-nothing-heard"),
    pytest.param(None, "key", 600.0, Rules(class_min_s=600), True, id="custom-class-min"),
])
def test_is_class(slot_kind, trigger, listened, rules, expected):
    facts = SessionFacts(0.0, listened, listened, trigger, slot_kind)
    assert is_class(facts, rules) is expected


def _session_events(trigger: str, slot_kind: Optional[str], mutes: tuple[bool, ...], play_id: str = "s-1"):
    """A terminal play: started, then one event per 10-minute chunk (muted or not), then completed."""
    t0 = utc(2026, 10, 20, 1, 0)
    events = [play(t0, 0, 0, phase="started", trigger=trigger, slot_kind=slot_kind, play_id=play_id,
                   device=TERMINAL)]
    for i, muted in enumerate(mutes):
        phase = "completed" if i == len(mutes) - 1 else "progress"
        events.append(play(t0 + timedelta(minutes=10 * (i + 1)), 600 * i, 600 * (i + 1), phase=phase,
                           muted=muted, trigger=trigger, slot_kind=slot_kind, play_id=play_id, device=TERMINAL))
    return t0, events


@pytest.mark.parametrize("trigger, slot_kind, mutes, listened, klass", [
    pytest.param("key", None, (False, False), 1200.0, True, id="key-20-min-audible"),
    pytest.param("key", None, (False, True), 600.0, False, id="key-half-muted"),
    pytest.param("command", None, (True, True, True), 0.0, False, id="command-all-muted"),
    pytest.param("command", None, (False, True, False), 1200.0, True, id="command-muted-middle"),
    pytest.param("schedule", "class", (False,), 600.0, True, id="class-slot-10-min"),
    pytest.param("schedule", "class", (True,), 0.0, True, id="class-slot-muted"),
])
def test_terminal_sessions_through_fold(trigger, slot_kind, mutes, listened, klass):
    t0, events = _session_events(trigger, slot_kind, mutes)
    for order, evs in orderings(events).items():
        delta = fold(evs, device=TERMINAL)
        assert list(delta.sessions) == ["dev:term-1:s-1"], order
        uid, site, play_id, facts = delta.sessions["dev:term-1:s-1"]
        assert (uid, site, play_id) == ("term-1", 22, "s-1")
        assert facts.started == to_epoch(t0)
        assert facts.ended == to_epoch(t0 + timedelta(minutes=10 * len(mutes)))
        assert facts.listened_s == listened
        assert (facts.trigger, facts.slot_kind, facts.programme, facts.lesson) == (trigger, slot_kind, PROG, LESSON)
        assert is_class(facts, RULES) is klass
        assert delta.broadcast == {} and delta.coverage == {} and not delta.exclusions


@pytest.mark.parametrize("overrides", [
    pytest.param({"lesson": 2**40}, id="lesson-beyond-int32"),
    pytest.param({"programme": "P" * 200}, id="overlong-programme"),
])
def test_terminal_play_the_tables_cannot_hold_is_excluded(overrides):
    events = [play(D1, 0, 600, play_id="s-9", device=TERMINAL, **overrides),
              play(D1, 0, 600, play_id="b-9", trigger="schedule", device=TERMINAL, **overrides)]
    delta = fold(events, device=TERMINAL)
    assert delta.sessions == {} and delta.broadcast == {}
    assert delta.exclusions == {"play_without_lesson": [2, max(e.event_id for e in events)]}


def test_two_terminal_plays_are_two_sessions():
    _t0, first = _session_events("key", None, (False,), play_id="s-1")
    _t0, second = _session_events("key", None, (False,), play_id="s-2")
    delta = fold(first + second, device=TERMINAL)
    assert sorted(delta.sessions) == ["dev:term-1:s-1", "dev:term-1:s-2"]


def test_broadcast_plays_are_day_coverage_never_sessions():
    morning = utc(2026, 10, 1, 23, 30)  # 07:30 on 2 Oct in Asia/Shanghai
    late = utc(2026, 10, 1, 15, 59)  # 23:59 on 1 Oct local

    def bcast(when, a, b, phase, play_id, **kw):
        return play(when, a, b, phase=phase, play_id=play_id, trigger="schedule", device=TERMINAL, **kw)

    events = [
        bcast(morning, 0, 0, "started", "b-1", slot_kind="broadcast"),
        bcast(morning + timedelta(minutes=1), 0, 60, "progress", "b-1", slot_kind="broadcast"),
        bcast(morning + timedelta(minutes=2), 60, 100.25, "completed", "b-1", slot_kind="broadcast"),
        bcast(morning + timedelta(hours=8), 0, 0, "started", "b-2"),  # slot kind missing: still broadcast
        bcast(morning + timedelta(hours=8, minutes=1), 0, 50, "stopped", "b-2", muted=True),
        bcast(late, 0, 0, "started", "b-3", slot_kind="broadcast"),
        bcast(late, 0, 30, "stopped", "b-3", slot_kind="broadcast", lesson=8),
    ]
    for order, evs in orderings(events).items():
        delta = fold(evs, device=TERMINAL)
        assert delta.sessions == {}, order
        assert delta.broadcast == {
            (22, date(2026, 10, 2), PROG, LESSON): [2, 10025],
            (22, date(2026, 10, 1), PROG, LESSON): [1, 0],
            (22, date(2026, 10, 1), PROG, 8): [0, 3000],
        }, order


def test_checkins_through_fold():
    good = attributed({"type": "checkin", "method": "card", "credential": "  M-001  ",
                       "device_time": iso(utc(2026, 10, 20, 1, 5)), "clock_offset": 0.0},
                      utc(2026, 10, 20, 1, 6), TERMINAL)
    reset = attributed({"type": "checkin", "method": "qr", "credential": "M-002",
                        "device_time": "1970-01-01T00:00:10Z", "clock_offset": 0.0},
                       utc(2026, 10, 20, 1, 7), TERMINAL)
    blank = attributed({"type": "checkin", "method": "card", "credential": "   "}, utc(2026, 10, 20, 1, 8), TERMINAL)
    other = attributed({"type": "error", "code": "x", "message": "y"}, utc(2026, 10, 20, 1, 9), TERMINAL)
    delta = fold([good, reset, blank, other], device=TERMINAL)
    assert [(c["credential"], c["at"], c["clock_flagged"], c["site_id"]) for c in delta.checkins] == [
        ("M-001", utc(2026, 10, 20, 1, 5), False, 22), ("M-002", utc(2026, 10, 20, 1, 7), True, 22)]
    assert delta.exclusions == {"checkin_without_credential": [1, blank.event_id]}


# ---------------------------------------------------------------------------------------------------------------
# 7. Check-in window around a session (30 min before the start, 30 min after the end, inclusive)

START, END = 100_000.0, 103_600.0


@pytest.mark.parametrize("at, rules, matches", [
    pytest.param(START - 1800, RULES, True, id="exactly-30-min-before"),
    pytest.param(START - 1800.001, RULES, False, id="just-over-30-min-before"),
    pytest.param(START, RULES, True, id="at-start"),
    pytest.param((START + END) / 2, RULES, True, id="during"),
    pytest.param(END + 1800, RULES, True, id="exactly-30-min-after"),
    pytest.param(END + 1800.001, RULES, False, id="just-over-30-min-after"),
    pytest.param(START - 1, Rules(checkin_before_s=0), False, id="no-early-allowance"),
    pytest.param(END + 1, Rules(checkin_after_s=0), False, id="no-late-allowance"),
    pytest.param(START - 3600, Rules(checkin_before_s=3600), True, id="custom-hour-before"),
])
def test_checkin_matches(at, rules, matches):
    assert checkin_matches(at, START, END, rules) is matches


# ---------------------------------------------------------------------------------------------------------------
# 8. Members joining or leaving mid-year; periods; rates

@pytest.mark.parametrize("joined, left, period, active", [
    pytest.param(date(2026, 7, 1), None, "2026", True, id="joined-july-in-year"),
    pytest.param(date(2026, 7, 1), None, "2026-Q3", True, id="joined-july-in-q3"),
    pytest.param(date(2026, 7, 1), None, "2026-Q2", False, id="joined-july-not-q2"),
    pytest.param(date(2026, 6, 30), None, "2026-Q2", True, id="joined-last-day-of-q2"),
    pytest.param(None, date(2026, 3, 31), "2026-Q1", True, id="left-march-in-q1"),
    pytest.param(None, date(2026, 3, 31), "2026", True, id="left-march-in-year"),
    pytest.param(None, date(2026, 3, 31), "2026-Q2", False, id="left-march-not-q2"),
    pytest.param(None, date(2025, 12, 31), "2026", False, id="left-before-year"),
    pytest.param(date(2027, 1, 1), None, "2026", False, id="joined-after-period"),
    pytest.param(date(2026, 11, 1), None, "2026-Q3", False, id="joined-after-quarter"),
    pytest.param(date(2026, 5, 1), date(2026, 5, 2), "2026-Q2", True, id="two-day-membership"),
    pytest.param(date(2026, 5, 1), date(2026, 5, 2), "2026-01-01..2026-04-30", False, id="range-before"),
    pytest.param(date(2026, 5, 1), date(2026, 5, 2), "2026-05-02..2026-05-02", True, id="range-last-day"),
    pytest.param(None, None, "2026-Q4", True, id="always-member"),
])
def test_active_in(joined, left, period, active):
    assert active_in(joined, left, parse_period(period)) is active


@pytest.mark.parametrize("q, start, end", [
    pytest.param(1, date(2026, 1, 1), date(2026, 3, 31), id="q1"),
    pytest.param(2, date(2026, 4, 1), date(2026, 6, 30), id="q2"),
    pytest.param(3, date(2026, 7, 1), date(2026, 9, 30), id="q3"),
    pytest.param(4, date(2026, 10, 1), date(2026, 12, 31), id="q4"),
])
def test_quarter(q, start, end):
    period = quarter(2026, q)
    assert (period.label, period.kind, period.start, period.end) == (f"2026-Q{q}", "quarter", start, end)
    assert period.contains(start) and period.contains(end)
    assert not period.contains(start - timedelta(days=1)) and not period.contains(end + timedelta(days=1))


@pytest.mark.parametrize("q", [0, 5, -1])
def test_quarter_out_of_range(q):
    with pytest.raises(ValueError, match=f"quarter {q} is not 1 to 4"):
        quarter(2026, q)


def test_year():
    assert year(2028) == parse_period("2028")
    assert (year(2028).start, year(2028).end, year(2028).kind) == (date(2028, 1, 1), date(2028, 12, 31), "year")


@pytest.mark.parametrize("text, label, kind, start, end", [
    pytest.param("2026", "2026", "year", date(2026, 1, 1), date(2026, 12, 31), id="year"),
    pytest.param(" 2026 ", "2026", "year", date(2026, 1, 1), date(2026, 12, 31), id="year-padded"),
    pytest.param("2026-Q4", "2026-Q4", "quarter", date(2026, 10, 1), date(2026, 12, 31), id="quarter"),
    pytest.param("2026-q1", "2026-Q1", "quarter", date(2026, 1, 1), date(2026, 3, 31), id="quarter-lowercase"),
    pytest.param("2026-01-01..2026-06-30", "2026-01-01..2026-06-30", "range", date(2026, 1, 1),
                 date(2026, 6, 30), id="range"),
    pytest.param("2026-05-02..2026-05-02", "2026-05-02..2026-05-02", "range", date(2026, 5, 2),
                 date(2026, 5, 2), id="one-day-range"),
])
def test_parse_period(text, label, kind, start, end):
    period = parse_period(text)
    assert (period.label, period.kind, period.start, period.end) == (label, kind, start, end)


@pytest.mark.parametrize("text", [
    pytest.param("", id="empty"),
    pytest.param("26", id="two-digit-year"),
    pytest.param("20261", id="five-digit-year"),
    pytest.param("abcd", id="letters"),
    pytest.param("2026-Q5", id="quarter-5"),
    pytest.param("2026-Q0", id="quarter-0"),
    pytest.param("2026-Q", id="quarter-missing"),
    pytest.param("Q4", id="quarter-without-year"),
    pytest.param("2026-06-30..2026-01-01", id="range-backwards"),
    pytest.param("2026-01-01..2026-13-01", id="range-bad-month"),
    pytest.param("2026-01-01..", id="range-open"),
    pytest.param("0000", id="year-zero"),
    pytest.param("2026-H1", id="half-year"),
    pytest.param("2_26", id="underscore-year"),
    pytest.param("+226", id="signed-year"),
    pytest.param("12-Q4", id="two-digit-year-quarter"),
    pytest.param("2026-Q+4", id="signed-quarter"),
])
def test_parse_period_rejects_with_the_accepted_forms(text):
    with pytest.raises(ValueError) as raised:
        parse_period(text)
    message = str(raised.value)
    assert repr(text.strip()) in message
    for form in ("2026", "2026-Q4", "2026-01-01..2026-06-30"):
        assert form in message


@pytest.mark.parametrize("trained, active, expected", [
    pytest.param(0, 0, None, id="no-active-members"),
    pytest.param(5, 0, None, id="trained-but-none-active"),
    pytest.param(0, 7, 0.0, id="none-trained"),
    pytest.param(7, 7, 1.0, id="all-trained"),
    pytest.param(1, 3, 0.3333, id="rounded-to-4-places"),
    pytest.param(2, 3, 0.6667, id="rounded-up"),
])
def test_rate(trained, active, expected):
    assert rate(trained, active) == expected


# ---------------------------------------------------------------------------------------------------------------
# 9. The segment algebra: [start, end, earliest time] in hundredths of a second

@pytest.mark.parametrize("segments, start, end, t, expected", [
    pytest.param([], 0, 2, 5.0, [[0, 200, 5.0]], id="into-empty"),
    pytest.param([], 1.234, 1.236, 5.0, [[123, 124, 5.0]], id="rounded-to-hundredths"),
    pytest.param([[0, 200, 5.0]], 3, 3, 1.0, [[0, 200, 5.0]], id="empty-range-no-change"),
    pytest.param([[0, 200, 5.0]], 3, 2, 1.0, [[0, 200, 5.0]], id="reversed-range-no-change"),
    pytest.param([[0, 200, 5.0]], 0, 2, 9.0, [[0, 200, 5.0]], id="later-rehearing-keeps-time"),
    pytest.param([[0, 200, 5.0]], 0, 2, 1.0, [[0, 200, 1.0]], id="earlier-rehearing-lowers-time"),
    pytest.param([[0, 200, 5.0]], 0.5, 1.5, 1.0, [[0, 50, 5.0], [50, 150, 1.0], [150, 200, 5.0]],
                 id="earlier-inside-splits"),
    pytest.param([[0, 200, 5.0]], 0.5, 1.5, 9.0, [[0, 200, 5.0]], id="later-inside-no-split"),
    pytest.param([[0, 200, 5.0]], 2, 4, 5.0, [[0, 400, 5.0]], id="adjacent-same-time-merged"),
    pytest.param([[0, 200, 5.0]], 2, 4, 6.0, [[0, 200, 5.0], [200, 400, 6.0]], id="adjacent-other-time-kept"),
    pytest.param([[0, 100, 5.0], [200, 300, 5.0]], 1, 2, 5.0, [[0, 300, 5.0]], id="gap-filled-same-time"),
    pytest.param([[0, 100, 5.0], [200, 300, 5.0]], 1, 2, 7.0, [[0, 100, 5.0], [100, 200, 7.0], [200, 300, 5.0]],
                 id="gap-filled-later"),
    # Gaps and the later-heard stretch take 4.0; the stretch first heard at 3.0 keeps it.
    pytest.param([[100, 200, 5.0], [300, 400, 3.0]], 0, 5, 4.0, [[0, 300, 4.0], [300, 400, 3.0], [400, 500, 4.0]],
                 id="spanning-mixed-times"),
    pytest.param([[100, 200, 5.0]], 0, 1.5, 5.0, [[0, 200, 5.0]], id="overlap-left-same-time"),
    pytest.param([[100, 200, 5.0]], 1.5, 3, 2.0, [[100, 150, 5.0], [150, 300, 2.0]], id="overlap-right-earlier"),
    pytest.param([[0, 100, 1.0], [100, 200, 2.0], [200, 300, 3.0]], 0, 3, 2.0,
                 [[0, 100, 1.0], [100, 300, 2.0]], id="earlier-time-collapses-runs"),
    pytest.param([[500, 600, 1.0]], 1, 2, 1.0, [[100, 200, 1.0], [500, 600, 1.0]], id="disjoint-before-sorted"),
])
def test_add_range(segments, start, end, t, expected):
    before = [list(s) for s in segments]
    assert add_range(segments, start, end, t) == expected
    assert segments == before  # the input is not modified


@pytest.mark.parametrize("left, right, expected", [
    pytest.param([], [], [], id="both-empty"),
    pytest.param([[0, 100, 5.0]], [], [[0, 100, 5.0]], id="right-empty"),
    pytest.param([], [[0, 100, 5.0]], [[0, 100, 5.0]], id="left-empty"),
    pytest.param([[0, 100, 5.0]], [[100, 200, 5.0]], [[0, 200, 5.0]], id="neighbours-equal-time-merge"),
    pytest.param([[0, 100, 5.0]], [[100, 200, 6.0]], [[0, 100, 5.0], [100, 200, 6.0]], id="neighbours-kept"),
    pytest.param([[0, 200, 5.0]], [[100, 300, 3.0]], [[0, 100, 5.0], [100, 300, 3.0]], id="overlap-earliest-wins"),
    pytest.param([[0, 300, 3.0]], [[100, 200, 5.0]], [[0, 300, 3.0]], id="later-inside-absorbed"),
    pytest.param([[0, 100, 1.0], [200, 300, 1.0]], [[50, 250, 2.0]],
                 [[0, 100, 1.0], [100, 200, 2.0], [200, 300, 1.0]], id="bridge-between-earlier"),
])
def test_merge_segments(left, right, expected):
    assert merge_segments(left, right) == expected
    assert merge_segments(right, left) == expected
    assert covered_seconds(expected) == covered_seconds(merge_segments(left, right))


@pytest.mark.parametrize("segments, duration, expected", [
    pytest.param([], 600, None, id="nothing"),
    pytest.param([[0, 54000, 1.0]], 600, 1.0, id="exactly-540"),
    pytest.param([[0, 53999, 1.0]], 600, None, id="one-hundredth-short"),
    pytest.param([[0, 30000, 2.0], [30000, 54000, 1.0]], 600, 2.0, id="crossed-by-later-stretch"),
    pytest.param([[0, 20000, 1.0], [20000, 40000, 3.0], [40000, 56000, 2.0]], 600, 3.0, id="earliest-crossing"),
    pytest.param([[0, 60000, 1.0]], 0, None, id="zero-duration"),
])
def test_completed_at(segments, duration, expected):
    assert completed_at(segments, duration, RULES) == expected
