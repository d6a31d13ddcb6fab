"""SimClock: runs at its speed, wakes sleepers and waiters on ``advance``, and fakes a wrong RTC without moving time."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from firmware_stub.sim import SimClock
from tests.firmware_stub.conftest import START


def _in_thread(target) -> tuple[threading.Thread, list]:
    """Run TARGET in a daemon thread; its return value lands in the list."""
    out: list = []
    thread = threading.Thread(target=lambda: out.append(target()), daemon=True)
    thread.start()
    return thread, out


def test_an_hour_of_waiting_passes_in_a_tenth_of_a_second_at_36000x():
    clock = SimClock(START, speed=36000)
    c0, r0 = clock.monotonic(), time.monotonic()
    assert clock.wait(threading.Event(), 3600) is False
    assert clock.monotonic() - c0 >= 3600
    # scaled, not skipped: the hour took at least its 0.1 real seconds
    assert time.monotonic() - r0 >= 3600 / 36000


def test_sleep_takes_clock_seconds_divided_by_speed():
    clock = SimClock(START, speed=200)
    c0, r0 = clock.monotonic(), time.monotonic()
    clock.sleep(40)
    assert clock.monotonic() - c0 >= 40
    assert time.monotonic() - r0 >= 40 / 200


def test_now_moves_with_the_clock_from_start():
    clock = SimClock(START, speed=0.001)
    clock.advance(90)
    assert clock.now() - START == pytest.approx(timedelta(seconds=90), abs=timedelta(seconds=0.05))


def test_advance_wakes_a_waiter_long_before_its_timeout_in_real_time():
    clock = SimClock(START, speed=0.001)  # 60 clock seconds would be 16 real hours
    thread, out = _in_thread(lambda: clock.wait(threading.Event(), 60))
    clock.advance(61)
    thread.join(5)
    assert not thread.is_alive() and out == [False]


def test_advance_short_of_the_timeout_keeps_the_waiter_waiting():
    clock = SimClock(START, speed=0.001)
    event = threading.Event()
    thread, out = _in_thread(lambda: clock.wait(event, 60))
    clock.advance(30)
    thread.join(0.2)
    assert thread.is_alive()
    event.set()
    thread.join(5)
    assert out == [True]


def test_advance_wakes_a_sleeper():
    clock = SimClock(START, speed=0.001)
    thread, out = _in_thread(lambda: clock.sleep(600))
    clock.advance(600)
    thread.join(5)
    assert not thread.is_alive() and out == [None]


def test_an_already_set_event_returns_at_once():
    clock = SimClock(START, speed=0.001)
    event = threading.Event()
    event.set()
    assert clock.wait(event, 3600) is True


def test_set_wall_changes_now_but_not_monotonic():
    clock = SimClock(START, speed=0.001)
    before = clock.monotonic()
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    clock.set_wall(epoch)  # the RTC lost its battery
    assert clock.monotonic() - before == pytest.approx(0, abs=0.01)
    assert clock.now() - epoch < timedelta(seconds=0.01)
    clock.advance(10)
    assert clock.now() - epoch == pytest.approx(timedelta(seconds=10), abs=timedelta(seconds=0.01))
    assert clock.monotonic() - before == pytest.approx(10, abs=0.01)


def test_monotonic_never_goes_back_and_advance_refuses_to():
    clock = SimClock(START, speed=5)
    readings = [clock.monotonic() for _ in range(1000)]
    assert readings == sorted(readings)
    with pytest.raises(ValueError, match="never goes back"):
        clock.advance(-1)


def test_a_naive_start_is_refused():
    with pytest.raises(ValueError, match="timezone"):
        SimClock(datetime(2024, 6, 1, 8, 0))


def test_changing_speed_keeps_time_continuous():
    from datetime import datetime, timezone

    from firmware_stub.sim import SimClock

    clock = SimClock(datetime(2026, 11, 1, tzinfo=timezone.utc), speed=1.0)
    before = clock.monotonic()
    clock.set_speed(1000.0)
    assert clock.monotonic() - before < 5, "no jump when speeding up"
    fast = clock.monotonic()
    clock.set_speed(1.0)
    assert clock.monotonic() >= fast, "never backwards when slowing down"
