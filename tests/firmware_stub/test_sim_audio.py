"""SimAudio: checks real files with ffprobe and "plays" them in clock time."""

from __future__ import annotations

import pytest

from firmware_stub.hal import AudioError, AudioOut
from firmware_stub.sim import SimAudio


@pytest.mark.parametrize("kind", ["mp3", "wav"])
def test_position_follows_the_clock_and_stops_at_the_end(clock, lesson_media, kind):
    audio = SimAudio(clock)
    audio.play(lesson_media[kind])
    assert audio.state() == "playing" and audio.current() == lesson_media[kind]
    assert audio.duration() == pytest.approx(2.0, abs=0.1)
    clock.advance(0.5)
    assert audio.position() == pytest.approx(0.5, abs=0.01)
    clock.advance(5)
    assert audio.state() == "finished"
    assert audio.position() == audio.duration()


def test_play_from_a_position(clock, lesson_media):
    audio = SimAudio(clock)
    audio.play(lesson_media["mp3"], position=1.5)
    clock.advance(0.25)
    assert audio.position() == pytest.approx(1.75, abs=0.01)


def test_pause_freezes_the_position_and_resume_continues(clock, lesson_media):
    audio = SimAudio(clock)
    audio.play(lesson_media["wav"])
    clock.advance(0.5)
    audio.pause()
    clock.advance(10)
    assert audio.state() == "paused"
    assert audio.position() == pytest.approx(0.5, abs=0.01)
    audio.resume()
    clock.advance(0.5)
    assert audio.state() == "playing"
    assert audio.position() == pytest.approx(1.0, abs=0.01)
    assert [action for action, _, _ in audio.history] == ["play", "pause", "resume"]


def test_stop_goes_idle(clock, lesson_media):
    audio = SimAudio(clock)
    audio.play(lesson_media["mp3"])
    audio.stop()
    assert (audio.state(), audio.current(), audio.duration(), audio.position()) == ("idle", None, None, 0.0)


def test_a_text_file_named_mp3_is_refused_by_name(clock, lesson_media):
    audio = SimAudio(clock)
    with pytest.raises(AudioError, match="not_audio.mp3"):
        audio.play(lesson_media["fake"])
    assert audio.state() == "idle"


def test_a_missing_file_is_refused(clock, tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        SimAudio(clock).play(tmp_path / "gone.mp3")


def test_without_ffprobe_the_error_says_to_install_ffmpeg(clock, lesson_media):
    with pytest.raises(AudioError, match="install ffmpeg"):
        SimAudio(clock, ffprobe="ffprobe-not-installed-here").play(lesson_media["mp3"])


def test_volume_is_clamped_and_mute_keeps_it(clock):
    audio = SimAudio(clock)
    audio.set_volume(130)
    assert audio.volume == 100 and not audio.muted
    audio.set_muted(True)
    assert audio.muted and audio.volume == 100
    audio.set_muted(False)
    audio.set_volume(0)
    assert audio.muted  # volume 0 is silent too
    audio.set_volume(-5)
    assert audio.volume == 0


def test_it_satisfies_the_protocol(clock):
    assert isinstance(SimAudio(clock), AudioOut)


def test_a_file_is_probed_once_per_version(clock, lesson_media, tmp_path, monkeypatch):
    import shutil

    import firmware_stub.sim as sim

    probes = []
    real = sim.probe_duration
    monkeypatch.setattr(sim, "probe_duration", lambda path, ffprobe: probes.append(path) or real(path, ffprobe))
    lesson = shutil.copy(lesson_media["mp3"], tmp_path / "lesson.mp3")
    audio = SimAudio(clock)
    for _ in range(3):  # a terminal's daily slots play the same file
        audio.play(lesson)
        audio.stop()
    assert len(probes) == 1
    shutil.copy(lesson_media["fake"], tmp_path / "next.mp3")
    (tmp_path / "next.mp3").replace(lesson)  # the same name, now not audio
    with pytest.raises(AudioError, match="cannot be decoded|no audio"):
        audio.play(lesson)
    assert len(probes) == 2
