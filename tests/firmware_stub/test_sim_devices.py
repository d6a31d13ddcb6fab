"""Simulated battery, storage, keys, display and check-in reader, and the assembled simulated device."""

from __future__ import annotations

import pytest

from firmware_stub import hal
from firmware_stub.sim import SimBattery, SimCheckin, SimDisplay, SimKeys, SimStorage, sim_hardware


def test_battery_drains_with_clock_time(clock):
    battery = SimBattery(clock, level=80, drain_per_hour=2.0)
    assert battery.level() == 80
    clock.advance(5 * 3600)
    assert battery.level() == 70
    clock.advance(100 * 3600)
    assert battery.level() == 0  # never below empty


def test_battery_charges_and_mains_has_no_level(clock):
    battery = SimBattery(clock, level=10, drain_per_hour=2.0)
    battery.set_charging(True)
    clock.advance(2 * 3600)
    assert battery.charging() and battery.level() == 60
    battery.charge()
    assert battery.level() == 100
    mains = SimBattery(clock, mains=True)
    assert mains.level() is None and not mains.charging()


def test_storage_counts_the_files_under_the_media_directory(tmp_path):
    storage = SimStorage(tmp_path / "media", total_bytes=10_000)
    assert storage.free_bytes() == 10_000  # the directory does not exist yet
    (tmp_path / "media" / "lessons").mkdir(parents=True)
    (tmp_path / "media" / "a.mp3").write_bytes(b"x" * 3000)
    (tmp_path / "media" / "lessons" / "b.mp3").write_bytes(b"x" * 2500)
    (tmp_path / "elsewhere.mp3").write_bytes(b"x" * 9000)
    assert storage.total_bytes() == 10_000
    assert storage.free_bytes() == 4500
    (tmp_path / "media" / "c.mp3").write_bytes(b"x" * 6000)
    assert storage.free_bytes() == 0  # full, never negative


def test_scripted_keys_fire_at_their_clock_times(clock):
    keys = SimKeys(clock, [(10, "next"), (5, "play_pause"), (30, "volume_up")])
    assert keys.poll() == []
    clock.advance(6)
    assert keys.poll() == ["play_pause"]
    assert keys.poll() == []  # each press is reported once
    clock.advance(25)
    keys.press("menu")
    assert keys.poll() == ["next", "volume_up", "menu"]


def test_unknown_keys_are_refused(clock):
    with pytest.raises(ValueError, match="play_pause"):
        SimKeys(clock, [(1, "eject")])
    with pytest.raises(ValueError, match="not one of"):
        SimKeys(clock).press("power")


def test_display_keeps_the_last_line_and_its_history():
    display = SimDisplay()
    assert display.last == ""
    display.show("downloading 1/3")
    display.show("playing: lesson 12")
    assert display.last == "playing: lesson 12"
    assert display.lines == ["downloading 1/3", "playing: lesson 12"]


def test_checkin_readings_come_once_in_order():
    reader = SimCheckin()
    reader.present("card", "04A1B2C3")
    reader.present("qr", "member:1234")
    assert reader.poll() == [("card", "04A1B2C3"), ("qr", "member:1234")]
    assert reader.poll() == []
    with pytest.raises(ValueError, match="card, qr"):
        reader.present("fingerprint", "x")


@pytest.mark.parametrize(("kind", "has_reader", "on_mains"), [("radio", False, False), ("terminal", True, True)])
def test_sim_hardware_assembles_a_device(clock, tmp_path, kind, has_reader, on_mains):
    hw = sim_hardware(kind, tmp_path, clock=clock, total_bytes=1000, firmware="sim 2.0")
    assert (hw.kind, hw.firmware, hw.clock) == (kind, "sim 2.0", clock)
    assert (hw.checkin is not None) == has_reader
    assert (hw.battery.level() is None) == on_mains
    assert hw.storage.free_bytes() == 1000
    for part, protocol in [(hw.clock, hal.Clock), (hw.audio, hal.AudioOut), (hw.keys, hal.Keys),
                           (hw.battery, hal.Battery), (hw.storage, hal.Storage), (hw.display, hal.Display)]:
        assert isinstance(part, protocol)
    if has_reader:
        assert isinstance(hw.checkin, hal.CheckinReader)


def test_sim_hardware_refuses_an_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="radio, terminal"):
        sim_hardware("phone", tmp_path)
