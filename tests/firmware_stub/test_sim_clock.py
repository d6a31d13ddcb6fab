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


# -- stepped -----------------------------------------------------------------------------------------------------------

def _rounds(clock: SimClock, event: threading.Event, timeout: float, busy_s: float = 0.0):
    """A main loop on CLOCK: waits for EVENT up to TIMEOUT, notes the time it woke, works BUSY_S real seconds."""
    woke: list[tuple[float, bool]] = []
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            by_event = clock.wait(event, timeout)
            event.clear()
            woke.append((clock.monotonic(), by_event))
            time.sleep(busy_s)  # the round takes real time, as on a machine whose CPU is busy elsewhere

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return woke, stop, thread


def test_a_stepped_clock_stands_still_in_real_time():
    clock = SimClock(START, speed=1000)
    clock.set_stepped()
    before, wall = clock.monotonic(), clock.now()
    time.sleep(0.05)
    assert clock.monotonic() == before and clock.now() == wall
    assert clock.stepped and clock.speed == 1.0, "the agent counts a stepped clock's seconds as real ones"


def test_run_for_wakes_the_waiter_at_each_deadline_however_long_its_rounds_take():
    clock = SimClock(START)
    clock.set_stepped()
    t0 = clock.monotonic()
    woke, stop, thread = _rounds(clock, threading.Event(), 60, busy_s=0.01)
    assert clock.run_for(3600) == 60
    assert clock.monotonic() - t0 == pytest.approx(3600)
    stop.set()
    clock.advance(60)
    thread.join(5)
    # every minute exactly, none skipped: the clock waited for each 10 ms round to end before moving on
    assert [round(at - t0, 6) for at, _ in woke] == [60.0 * n for n in range(1, 62)]


def test_run_for_stops_at_its_target_between_deadlines():
    clock = SimClock(START)
    clock.set_stepped()
    t0 = clock.monotonic()
    woke, stop, _thread = _rounds(clock, threading.Event(), 100)
    assert clock.run_for(250) == 2
    assert clock.monotonic() - t0 == pytest.approx(250)
    assert (clock.now() - START).total_seconds() == pytest.approx(250)
    assert clock.run_for(50) == 1, "the waiter still waits for its deadline at 300"
    stop.set()
    clock.advance(100)


def test_an_event_wakes_a_stepped_waiter_without_moving_the_clock():
    clock = SimClock(START)
    clock.set_stepped()
    event = threading.Event()
    thread, out = _in_thread(lambda: (clock.wait(event, 60), clock.monotonic()))
    before = clock.monotonic()
    event.set()
    thread.join(5)
    assert out == [(True, before)]


def test_run_for_waits_for_a_round_an_event_started():
    clock = SimClock(START)
    clock.set_stepped()
    event = threading.Event()
    t0 = clock.monotonic()
    woke, stop, _thread = _rounds(clock, event, 60, busy_s=0.05)
    clock.run_for(30)
    event.set()  # a message arrives at 30 s: that round ends before the clock moves again
    clock.run_for(60)
    assert [(round(at - t0, 6), by_event) for at, by_event in woke] == [(30.0, True), (90.0, False)]
    stop.set()
    clock.advance(60)


def test_run_for_without_a_waiter_says_it_stalled():
    from firmware_stub.sim import ClockStalled

    clock = SimClock(START)
    clock.set_stepped()
    with pytest.raises(ClockStalled, match="0 of 1 threads"):
        clock.run_for(60, stall_s=0.1)


def test_run_for_refuses_a_running_clock():
    clock = SimClock(START)
    with pytest.raises(ValueError, match="set_stepped"):
        clock.run_for(60)


def test_running_again_after_stepping_has_no_jump():
    clock = SimClock(START)
    clock.set_stepped()
    clock.advance(600)
    stepped = clock.monotonic()
    clock.set_speed(1.0)
    assert 0 <= clock.monotonic() - stepped < 1
    assert not clock.stepped
