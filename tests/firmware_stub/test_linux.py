"""Linux adapters on real files, a fake sysfs tree and whichever player this machine has installed."""

from __future__ import annotations

import importlib.util
import os
import shutil
import time

import pytest

from firmware_stub import hal
from firmware_stub.hal import AudioError
from firmware_stub.linux import (FsStorage, HardwareMissing, NoKeys, ProcessAudio, SysfsBattery, SystemClock,
                                 WedgeDecoder, linux_hardware)
from firmware_stub.player import wav_layout
from tests.generated_media import tone

HAS_EVDEV = importlib.util.find_spec("evdev") is not None


def _supply(root, name, **files):
    """A fake /sys/class/power_supply/NAME with one file per keyword."""
    (root / name).mkdir(parents=True)
    for attr, text in files.items():
        (root / name / attr).write_text(text + "\n")


def _until(predicate, seconds: float = 10.0) -> bool:
    """Poll PREDICATE until it holds or SECONDS pass; its last answer."""
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()


def test_sysfs_battery_reads_the_first_battery_supply(tmp_path):
    _supply(tmp_path, "AC", type="Mains", online="1")
    _supply(tmp_path, "BAT0", type="Battery", capacity="47", status="Charging")
    battery = SysfsBattery(tmp_path)
    assert battery.level() == 47 and battery.charging()
    (tmp_path / "BAT0" / "status").write_text("Discharging\n")
    assert not battery.charging()


def test_sysfs_battery_without_a_battery_means_mains(tmp_path):
    _supply(tmp_path, "AC", type="Mains", online="1")
    assert SysfsBattery(tmp_path).level() is None
    assert not SysfsBattery(tmp_path / "absent").charging()


def test_fs_storage_reports_the_real_filesystem(tmp_path):
    storage = FsStorage(tmp_path / "media" / "not-yet-created")
    usage = shutil.disk_usage(tmp_path)
    assert storage.total_bytes() == usage.total
    assert 0 < storage.free_bytes() <= usage.total


def test_system_clock_gives_aware_utc():
    clock = SystemClock()
    assert clock.now().utcoffset().total_seconds() == 0
    assert clock.monotonic() <= clock.monotonic()


def test_wav_header_gives_the_duration_aplay_needs(tmp_path):
    layout = wav_layout(tone(tmp_path / "t.wav", 1.0))
    assert (layout.channels, layout.rate, layout.sample_width) == (1, 44100, 2)
    assert layout.data_size / layout.byte_rate == pytest.approx(1.0, abs=0.01)
    assert wav_layout(tone(tmp_path / "t.mp3", 0.5)) is None


def test_with_no_player_on_the_path_the_error_says_what_to_install(tmp_path):
    wav = tone(tmp_path / "t.wav", 0.5)
    empty = tmp_path / "bin"
    empty.mkdir()
    with pytest.raises(AudioError, match="install mpv.*ffmpeg"):
        ProcessAudio(search_path=str(empty)).play(wav)


def test_the_players_installed_here_are_used_or_named(tmp_path):
    wav = tone(tmp_path / "t.wav", 0.5)
    if any(shutil.which(p) for p in ("mpv", "ffplay", "aplay")):
        pytest.skip("a player is installed; the tests below play through it")
    with pytest.raises(AudioError, match="no audio player is installed.*install mpv"):
        ProcessAudio().play(wav)


@pytest.fixture
def ffplay_audio(tmp_path):
    """ProcessAudio that finds only the real ffplay and ffprobe, sounding into SDL's dummy driver."""
    if shutil.which("ffplay") is None:
        pytest.skip("ffplay is not installed")
    bindir = tmp_path / "bin"  # links to the real programs, so an installed mpv is not preferred
    bindir.mkdir()
    for program in ("ffplay", "ffprobe"):
        (bindir / program).symlink_to(shutil.which(program))
    audio = ProcessAudio(search_path=str(bindir), env={**os.environ, "SDL_AUDIODRIVER": "dummy"})
    yield audio
    audio.close()


def test_ffplay_plays_a_short_wav_to_the_end(ffplay_audio, tmp_path):
    wav = tone(tmp_path / "t.wav", 0.6)
    ffplay_audio.play(wav)
    assert ffplay_audio.player == "ffplay"
    assert ffplay_audio.state() == "playing"
    assert ffplay_audio.duration() == pytest.approx(0.6, abs=0.05)
    assert _until(lambda: ffplay_audio.state() != "playing"), "ffplay never ended"
    assert ffplay_audio.state() == "finished", ffplay_audio.last_error
    assert ffplay_audio.position() == ffplay_audio.duration()


def test_ffplay_pause_freezes_position_and_stop_ends_it(ffplay_audio, tmp_path):
    wav = tone(tmp_path / "t.wav", 3.0)
    ffplay_audio.play(wav, position=1.0)
    ffplay_audio.pause()
    frozen = ffplay_audio.position()
    assert ffplay_audio.state() == "paused" and 1.0 <= frozen < 3.0
    time.sleep(0.2)  # not waiting for anything: real time must pass to show the position stays frozen
    assert ffplay_audio.position() == frozen
    ffplay_audio.set_volume(30)  # restarts ffplay where it was, still paused
    assert ffplay_audio.state() == "paused" and ffplay_audio.position() == pytest.approx(frozen, abs=0.05)
    ffplay_audio.resume()
    assert _until(lambda: ffplay_audio.position() > frozen)
    ffplay_audio.stop()
    assert ffplay_audio.state() == "idle" and ffplay_audio.current() is None


def test_process_audio_refuses_a_text_file(ffplay_audio, tmp_path):
    fake = tmp_path / "plan.mp3"
    fake.write_text("not a recording\n" * 10)
    with pytest.raises(AudioError, match="plan.mp3"):
        ffplay_audio.play(fake)


@pytest.mark.parametrize(("events", "expected"), [
    ([("KEY_0", 1), ("KEY_4", 1), ("KEY_A", 1), ("KEY_ENTER", 1)], [("card", "04a")]),
    ([("KEY_LEFTSHIFT", 1), ("KEY_M", 1), ("KEY_LEFTSHIFT", 0), ("KEY_E", 1), ("KEY_SEMICOLON", 1),
      ("KEY_7", 1), ("KEY_ENTER", 1)], [("card", "Me;7")]),
    ([("KEY_1", 1), ("KEY_1", 0), ("KEY_1", 2), ("KEY_ENTER", 1), ("KEY_ENTER", 1)], [("card", "1")]),
])
def test_wedge_reader_typing_becomes_credentials(events, expected):
    decoder = WedgeDecoder("card")
    readings = [r for name, value in events if (r := decoder.feed(name, value)) is not None]
    assert readings == expected


@pytest.mark.skipif(HAS_EVDEV, reason="evdev is installed here")
def test_evdev_keys_without_evdev_says_how_to_install_it():
    from firmware_stub.linux import EvdevKeys
    with pytest.raises(HardwareMissing, match="pip install evdev"):
        EvdevKeys()


def test_linux_hardware_picks_what_is_available(tmp_path):
    hw = linux_hardware("terminal", tmp_path, firmware="pi 1.2")
    assert (hw.kind, hw.firmware) == ("terminal", "pi 1.2")
    assert hw.checkin is not None and hw.checkin.poll() == []
    if not HAS_EVDEV:
        assert isinstance(hw.keys, NoKeys)
    for part, protocol in [(hw.clock, hal.Clock), (hw.audio, hal.AudioOut), (hw.keys, hal.Keys),
                           (hw.battery, hal.Battery), (hw.storage, hal.Storage), (hw.display, hal.Display)]:
        assert isinstance(part, protocol)
    assert linux_hardware("radio", tmp_path).checkin is None
