"""Trusted time: the server's Date header corrects the device clock, a clock reset to 1970 never dates a play before
the persisted floor, and a forged Date header (any mirror can send one) moves the time only within bounds and is
dropped when the county's signed metadata disagrees with it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from device_agent.store import AgentStore
from device_agent.timekeeping import TimeKeeper
from firmware_stub.sim import SimClock

DEVICE_T0 = datetime(2026, 11, 22, 3, 0, tzinfo=timezone.utc)
SERVER_DATE = "Sun, 22 Nov 2026 03:10:00 GMT"  # the server is 10 minutes ahead of the device
SERVER_T = datetime(2026, 11, 22, 3, 10, tzinfo=timezone.utc)
ISSUED = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)  # the verified manifest was signed two days ago
EXPIRES = datetime(2026, 11, 22, 20, 0, tzinfo=timezone.utc)  # the verified timestamp metadata expires tonight
FORGED = "Wed, 22 Nov 2036 03:10:00 GMT"  # a mirror ten years ahead
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# The clock is stepped (only `advance` moves it), so times are exact but for the Date header's whole seconds.
SLACK = timedelta(seconds=1)


@pytest.fixture
def store(tmp_path) -> AgentStore:
    store = AgentStore(tmp_path / "agent")
    store.ensure()
    return store


@pytest.fixture
def clock() -> SimClock:
    return SimClock(DEVICE_T0, stepped=True)


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


def synced(clock, store) -> TimeKeeper:
    """A device that verified the county's metadata and heard the server's Date."""
    time = TimeKeeper(clock, store)
    time.observe_signed(issued_at=ISSUED, expires=EXPIRES)
    time.observe_date_header(SERVER_DATE)
    return time


def test_a_clock_reset_to_1970_never_goes_below_the_floor_and_counts_on_from_it(clock, store):
    time = synced(clock, store)

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
    synced(clock, store)
    clock.set_wall(EPOCH)

    restarted = TimeKeeper(clock, store, signed_expiry=EXPIRES)  # back after a power cut, clock still in 1970

    assert restarted.floor == SERVER_T and restarted.trusted == ISSUED
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


def test_a_signed_time_alone_keeps_a_1970_clock_up(clock, store):
    time = TimeKeeper(clock, store)
    time.observe_signed(issued_at=ISSUED)  # no Date header ever came (the village has only a USB stick)
    clock.set_wall(EPOCH)

    assert time.clock_wrong()
    assert near(time.now(), ISSUED) and time.now() >= ISSUED
    clock.advance(60)
    assert near(time.now(), ISSUED + timedelta(seconds=60))
    assert TimeKeeper(clock, store).trusted == ISSUED  # a signed time is saved at once


def test_the_enrolment_answers_date_starts_the_trusted_floor(clock, store):
    from device_agent.timekeeping import record_enrolment_time

    record_enrolment_time(store, SERVER_DATE)
    clock.set_wall(EPOCH)  # a new Pi without a clock
    time = TimeKeeper(clock, store)

    assert time.trusted == SERVER_T and time.now() >= SERVER_T
    record_enrolment_time(store, "Thu, 01 Jan 2026 00:00:00 GMT")  # enrolled again with an older answer
    assert TimeKeeper(clock, store).trusted == SERVER_T


# -- a forged Date header ------------------------------------------------------------------------------------------

def test_a_date_ten_years_ahead_is_believed_only_a_day_past_what_the_device_can_check(clock, store):
    time = synced(clock, store)

    time.observe_date_header(FORGED)

    ceiling = EXPIRES + timedelta(days=1)  # the verified timestamp's expiry is later than the device clock
    assert near(time.now(), ceiling) and time.now() <= ceiling + SLACK
    assert time.floor <= ceiling
    clock.set_wall(EPOCH)  # even with the clock gone, the forged value is no floor past the bound
    assert time.now() <= ceiling + SLACK


def test_a_forged_date_saved_before_a_restart_is_still_bounded(clock, store):
    synced(clock, store).observe_date_header(FORGED)

    restarted = TimeKeeper(clock, store, signed_expiry=EXPIRES)

    assert restarted.now() <= EXPIRES + timedelta(days=1) + SLACK


def test_a_floor_an_older_agent_took_from_a_forged_date_no_longer_freezes_the_device(clock, store):
    store.write_json("timefloor.json", {"floor": "2036-11-22T03:10:00+00:00", "offset": 315_360_000.0})

    time = TimeKeeper(clock, store, signed_expiry=EXPIRES)

    assert time.now() <= EXPIRES + timedelta(days=1) + SLACK


def test_when_signed_metadata_refutes_a_date_it_is_dropped_and_the_same_lie_is_not_heard_again(clock, store):
    time = synced(clock, store)
    time.observe_date_header(FORGED)
    forged_now = time.now()

    time.refute(forged_now, time.authentic())  # the sync found the metadata valid by the device's own time

    assert time.offset is None and time.floor is None
    assert near(time.now(), DEVICE_T0)
    time.observe_date_header(FORGED)  # the mirror keeps lying
    assert near(time.now(), DEVICE_T0)
    assert TimeKeeper(clock, store).floor is None  # the refuted floor is gone from disk too

    time.observe_date_header(SERVER_DATE)  # the true server time is still heard
    assert near(time.now(), SERVER_T)


def test_a_date_behind_the_device_clock_still_corrects_it(clock, store):
    """A clock running ahead (six weeks at sea on a fast simulated clock) is pulled back, but not below a floor."""
    time = synced(clock, store)
    clock.advance(42 * 86400)  # no network for six weeks; the device clock runs on alone

    time.observe_date_header("Sun, 22 Nov 2026 03:20:00 GMT")  # the server says only 10 minutes passed

    assert near(time.now(), SERVER_T + timedelta(minutes=10))
