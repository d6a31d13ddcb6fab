"""Trusted time: the server's Date header corrects the device clock, and a clock reset to 1970 never dates a play
before the persisted floor."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from device_agent.store import AgentStore
from device_agent.timekeeping import TimeKeeper
from firmware_stub.sim import SimClock

DEVICE_T0 = datetime(2026, 11, 22, 3, 0, tzinfo=timezone.utc)
SERVER_DATE = "Sun, 22 Nov 2026 03:10:00 GMT"  # the server is 10 minutes ahead of the device
SERVER_T = datetime(2026, 11, 22, 3, 10, tzinfo=timezone.utc)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# SimClock runs at real speed between `advance` calls; the test itself takes a little real time.
SLACK = timedelta(seconds=2)


@pytest.fixture
def store(tmp_path) -> AgentStore:
    store = AgentStore(tmp_path / "agent")
    store.ensure()
    return store


@pytest.fixture
def clock() -> SimClock:
    return SimClock(DEVICE_T0)


def near(actual: datetime, expected: datetime) -> bool:
    return abs(actual - expected) <= SLACK


def test_the_date_header_corrects_a_clock_that_is_behind(clock, store):
    time = TimeKeeper(clock, store)
    assert near(time.now(), DEVICE_T0)  # nothing learned yet: the device clock is all there is

    time.observe_date_header(SERVER_DATE)

    assert time.offset == pytest.approx(600, abs=2)
    assert near(time.now(), SERVER_T)
    clock.advance(3600)
    assert near(time.now(), SERVER_T + timedelta(hours=1))  # the offset keeps applying as time goes on


@pytest.mark.parametrize("header", ["garbage", "Mon, 99 Foo 2026 00:00:00 GMT", "", None])
def test_a_garbage_date_header_changes_nothing(clock, store, header):
    time = TimeKeeper(clock, store)

    time.observe_date_header(header)

    assert time.offset is None
    assert time.floor is None
    assert store.read_json("timefloor.json") is None
    assert near(time.now(), DEVICE_T0)


def test_a_clock_reset_to_1970_never_goes_below_the_floor_and_counts_on_from_it(clock, store):
    time = TimeKeeper(clock, store)
    time.observe_date_header(SERVER_DATE)

    clock.set_wall(EPOCH)  # the RTC battery died: the device believes it is 1970
    assert time.clock_wrong()
    first = time.now()
    assert first >= SERVER_T
    assert near(first, SERVER_T)

    clock.advance(90)
    later = time.now()
    assert later > first
    assert near(later, SERVER_T + timedelta(seconds=90))  # time moves on from the floor with the monotonic clock


def test_the_floor_survives_a_restart(clock, store):
    TimeKeeper(clock, store).observe_date_header(SERVER_DATE)
    clock.set_wall(EPOCH)

    restarted = TimeKeeper(clock, store)  # the agent came back up after a power cut, clock still in 1970

    assert restarted.floor == SERVER_T
    assert restarted.offset == pytest.approx(600, abs=2)
    assert restarted.clock_wrong()
    assert restarted.now() >= SERVER_T
    clock.advance(30)
    assert near(restarted.now(), SERVER_T + timedelta(seconds=30))


def test_an_older_date_header_does_not_lower_the_floor(clock, store):
    time = TimeKeeper(clock, store)
    time.observe_date_header(SERVER_DATE)

    time.observe_date_header("Thu, 01 Jan 2026 00:00:00 GMT")  # a misconfigured mirror with a stale clock

    assert time.floor == SERVER_T
    assert time.now() >= SERVER_T


@pytest.mark.parametrize("wall, wrong", [
    (EPOCH, True),                                       # reset to 1970
    (SERVER_T - timedelta(hours=1), True),               # an hour behind what the server said
    (SERVER_T - timedelta(minutes=2), False),            # a little drift is tolerated
    (SERVER_T + timedelta(days=1), False),               # ahead of the floor is not "below" it
])
def test_clock_wrong_reports_a_raw_clock_below_the_floor(clock, store, wall, wrong):
    time = TimeKeeper(clock, store)
    time.observe_date_header(SERVER_DATE)

    clock.set_wall(wall)

    assert time.clock_wrong() is wrong


def test_without_a_floor_the_clock_is_never_called_wrong(clock, store):
    clock.set_wall(EPOCH)
    assert TimeKeeper(clock, store).clock_wrong() is False
