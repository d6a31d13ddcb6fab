"""The people around simulated devices: what a Behaviour does to a device's hardware and network over device days."""

import random
from datetime import datetime, timezone
from types import SimpleNamespace

from device_agent.fleet.behaviour import DAY, Behaviour, Habits
from firmware_stub.sim import SimClock, sim_hardware

START = datetime(2026, 10, 5, 0, 0, tzinfo=timezone.utc)


def _device(kind, tmp_path, clock):
    hw = sim_hardware(kind, tmp_path, clock=clock)
    agent = SimpleNamespace(hw=hw, time=SimpleNamespace(now=clock.now), player=SimpleNamespace(playing=None))
    return SimpleNamespace(agent=agent, uid="r1", offline_until=0.0)


def _live(behaviour, device, clock, days, step_s=600.0):
    for _ in range(int(days * DAY / step_s)):
        clock.advance(step_s)
        behaviour.act(device)


def test_a_radio_is_played_charged_and_sometimes_reset(tmp_path):
    clock = SimClock(START, stepped=True)
    device = _device("radio", tmp_path, clock)
    habits = Habits(plays_per_day=4.0, boat_share=0.0, clock_resets_per_day=0.2)
    behaviour = Behaviour("radio", random.Random(1), habits)
    behaviour.act(device)
    _live(behaviour, device, clock, days=30)
    counts = behaviour.counts
    assert 60 <= counts.presses <= 200, counts  # about 4 a day
    assert counts.charges >= 1, "a battery draining 2 % an hour was put on the charger"
    assert 1 <= counts.clock_resets <= 15, counts
    assert device.agent.hw.battery.level() > 0, "members recharge before the battery is flat"


def test_a_boat_goes_out_of_range_for_days_and_comes_back(tmp_path):
    clock = SimClock(START, stepped=True)
    device = _device("radio", tmp_path, clock)
    behaviour = Behaviour("radio", random.Random(2), Habits(boat_share=1.0, plays_per_day=0.0))
    assert behaviour.boat
    behaviour.act(device)
    offline = []
    for _ in range(30 * 24):
        clock.advance(3600)
        behaviour.act(device)
        offline.append(device.offline_until > clock.monotonic())
    assert behaviour.counts.trips >= 2
    assert 0.2 < sum(offline) / len(offline) < 0.9, "out of range for days at a time, and in port between trips"


def test_terminal_members_check_in_once_per_class_play(tmp_path):
    clock = SimClock(START, stepped=True)
    device = _device("terminal", tmp_path, clock)
    behaviour = Behaviour("terminal", random.Random(3), Habits(clock_resets_per_day=0.0), qr_codes=("D1", "D2", "D3"))
    behaviour.act(device)
    device.agent.player.playing = {"play_id": "p1", "slot_kind": "class"}
    for _ in range(3):
        clock.advance(60)
        behaviour.act(device)
    readings = device.agent.hw.checkin.poll()
    assert readings and len(readings) == len(set(readings)) <= 3
    assert all(method == "qr" for method, _ in readings), "a member number is read from the member's QR code"
    device.agent.player.playing = {"play_id": "p2", "slot_kind": "broadcast"}
    clock.advance(60)
    behaviour.act(device)
    assert device.agent.hw.checkin.poll() == [], "nobody checks in to the daily broadcast"
