"""Full-decode analysis of real files: loudness per layout, decoded length, progress, silence."""

from __future__ import annotations

import json

import pytest

from media.analysis import analyse, measure_loudness
from media.errors import MediaError
from media.limits import Limits
from media.model import SourceAnalysis
from media.probe import probe
from tests.media import synth
from tests.media.independent import ebur128


def test_speech_loudness_matches_an_independent_measurement(speech):
    integrated, true_peak = ebur128(speech.path)  # the source is mono: its own layout is the radio's
    assert speech.analysis.mono.integrated_lufs == pytest.approx(integrated, abs=0.1)
    assert speech.analysis.mono.true_peak_dbtp == pytest.approx(true_peak, abs=0.1)
    assert -33 < integrated < -27  # the fixture is the quiet speaker it claims to be
    assert speech.analysis.decoded_duration_s == pytest.approx(30.0, abs=0.05)
    assert speech.analysis.stereo == speech.analysis.mono  # a mono source's terminal renditions stay mono


def test_music_is_measured_in_both_layouts(music):
    stereo_integrated, _ = ebur128(music.path)
    assert music.analysis.stereo.integrated_lufs == pytest.approx(stereo_integrated, abs=0.1)
    assert -10 < stereo_integrated < -6
    # The mono downmix of different left and right channels is measured on its own, not assumed.
    assert music.analysis.mono.integrated_lufs != music.analysis.stereo.integrated_lufs


def test_radio_only_analysis_skips_stereo_and_true_peak(music):
    quick = analyse(music.path, music.probe, Limits(), "music.wav", layouts=("mono",), true_peak=False)
    assert quick.stereo is None and quick.mono.true_peak_dbtp is None
    assert quick.mono.integrated_lufs == music.analysis.mono.integrated_lufs
    # The sample peak is kept instead: a little under the true peak, and enough to choose a compressor by.
    true_peak = music.analysis.mono.true_peak_dbtp
    assert true_peak - 1.0 <= quick.mono.sample_peak_dbfs <= true_peak + 0.05
    assert quick.mono.peak_db == quick.mono.sample_peak_dbfs
    with pytest.raises(ValueError):
        quick.for_channels(2)


def test_analysis_round_trips_through_json(music):
    stored = json.loads(json.dumps(music.analysis.to_dict()))
    assert SourceAnalysis.from_dict(stored) == music.analysis


def test_progress_is_reported_up_to_one(speech):
    seen: list[float] = []
    analyse(speech.path, speech.probe, Limits(), "speech.wav", on_progress=seen.append)
    assert seen[-1] == 1.0 and seen == sorted(seen) and all(0.0 <= f <= 1.0 for f in seen)


def test_video_sources_are_decoded_and_measured(video_1080p):
    assert video_1080p.analysis.decoded_duration_s == pytest.approx(4.0, abs=0.1)
    assert video_1080p.analysis.mono.integrated_lufs == pytest.approx(ebur128(video_1080p.path)[0], abs=0.1)


def test_silence_is_refused(tmp_path):
    path = tmp_path / "silence.wav"
    synth.ffmpeg("-f", "lavfi", "-i", "anullsrc=r=44100:cl=mono", "-t", "3", str(path))
    probed = probe(path, Limits(), "silence.wav")
    with pytest.raises(MediaError) as caught:
        analyse(path, probed, Limits(), "silence.wav")
    assert caught.value.code == "silent" and caught.value.message.startswith("silence.wav: ")


def test_a_file_that_plays_longer_than_the_limit_is_stopped(speech):
    # The probe passed with the real limit; a decode that goes on past a (smaller) limit is cut off and refused.
    with pytest.raises(MediaError) as caught:
        analyse(speech.path, speech.probe, Limits(max_duration_s=10), "speech.wav")
    assert caught.value.code == "too_long"


def test_measure_loudness_of_a_rendition(speech):
    rendition = speech.rendition("radio")
    assert measure_loudness(rendition.path, mono=True) == rendition.loudness
