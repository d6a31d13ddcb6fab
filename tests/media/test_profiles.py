"""Profiles as data: which renditions a source gets, and what each carries."""

from __future__ import annotations

import pytest

from media.model import ProbeResult
from media.profiles import PROFILES, profiles_for

AUDIO = ProbeResult("mp3", 60.0, 1_000_000, 128_000, "mp3", 2, 44100)
MONO_32K = ProbeResult("wav", 60.0, 1_000_000, 512_000, "pcm_s16le", 1, 32000)
VIDEO = ProbeResult("mov", 60.0, 1_000_000, 2_000_000, "aac", 2, 48000, "h264", 1920, 1080, True, 1, 0, 25.0)


def test_audio_sources_get_radio_and_terminal_audio():
    assert [p.name for p in profiles_for(AUDIO)] == ["radio", "terminal-audio"]


def test_video_sources_get_all_three():
    assert [p.name for p in profiles_for(VIDEO)] == ["radio", "terminal-audio", "terminal-video"]


@pytest.mark.parametrize(
    ("profile", "probe", "channels", "rate"),
    [
        ("radio", AUDIO, 1, 44100),
        ("radio", VIDEO, 1, 44100),
        ("terminal-audio", AUDIO, 2, 44100),
        ("terminal-audio", MONO_32K, 1, 48000),
        ("terminal-video", VIDEO, 2, 48000),
    ],
)
def test_channels_and_sample_rate(profile, probe, channels, rate):
    assert PROFILES[profile].output_channels(probe) == channels
    assert PROFILES[profile].output_sample_rate(probe) == rate


@pytest.mark.parametrize(
    ("integrated", "peak", "ok"),
    [(-16.0, -1.0, True), (-15.0, -3.0, True), (-17.0, -1.5, True), (-14.9, -2.0, False), (-16.0, -0.9, False)],
)
def test_loudness_target(integrated, peak, ok):
    assert PROFILES["radio"].loudness_ok(integrated, peak) is ok


def test_limiter_ceiling_sits_below_the_true_peak_target():
    for profile in PROFILES.values():
        assert profile.limiter_ceiling_dbtp < profile.max_true_peak_dbtp
        assert profile.oversample in (2, 4)
        if profile.oversample == 2:
            # 2x is enough only for a signal band-limited to a quarter of the output rate, with the ceiling
            # leaving room for the 0.7 dB a half-sample miss can cost at that band edge.
            assert profile.lowpass_hz <= min(profile.sample_rates) / 4
            assert profile.limiter_ceiling_dbtp <= profile.max_true_peak_dbtp - 0.9 - 0.7
