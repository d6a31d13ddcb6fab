"""Shared media for the media tests: generated once per session, probed, analysed and rendered once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from media.analysis import analyse
from media.limits import Limits
from media.model import ProbeResult, SourceAnalysis
from media.probe import probe
from media.profiles import PROFILES
from media.rendition import RenditionResult, make_rendition
from tests.media import synth
from tests.media.hostile_corpus import build_corpus

TAGS = {"title": "第一课 新时代的党建", "artist": "张老师", "album": "2026年冬训"}


@dataclass
class Source:
    """A generated source with its probe and analysis, and its renditions made on demand and kept."""

    path: Path
    probe: ProbeResult
    analysis: SourceAnalysis
    out_dir: Path
    _renditions: dict

    def rendition(self, profile: str) -> RenditionResult:
        """Return this source's rendition for `profile`, encoding it the first time it is asked for."""
        if profile not in self._renditions:
            self._renditions[profile] = make_rendition(
                self.path, self.probe, self.analysis, PROFILES[profile], self.out_dir, tags=TAGS
            )
        return self._renditions[profile]


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    """One directory for the session's generated media and renditions."""
    return tmp_path_factory.mktemp("media")


def _source(media_dir: Path, path: Path) -> Source:
    """Probe and analyse a generated file with the default limits."""
    probed = probe(path, Limits(), path.name)
    out_dir = media_dir / f"out-{path.stem}"
    out_dir.mkdir()
    return Source(path, probed, analyse(path, probed, Limits(), path.name), out_dir, {})


@pytest.fixture(scope="session")
def speech(media_dir) -> Source:
    """30 s of quiet (about -30 LUFS) speech-like mono audio at 48 kHz."""
    return _source(media_dir, synth.speech(media_dir / "speech.wav", seconds=30))


@pytest.fixture(scope="session")
def music(media_dir) -> Source:
    """20 s of loud (about -8 LUFS) stereo music at 44.1 kHz."""
    return _source(media_dir, synth.music(media_dir / "music.wav", seconds=20))


@pytest.fixture(scope="session")
def phone(media_dir) -> Source:
    """20 s of speech hard-clipped at 0 dBFS, like an overdriven phone recording."""
    return _source(media_dir, synth.clipped(media_dir / "phone.wav", seconds=20))


@pytest.fixture(scope="session")
def quiet_phone(media_dir) -> Source:
    """7 s of espeak-ng Mandarin as a phone records it (AAC, mono, 16 kHz) at -35 LUFS, peaks ~21 dB above that."""
    return _source(media_dir, synth.spoken(media_dir / "quiet-phone.m4a", lufs=-35.0))


@pytest.fixture(scope="session")
def clipped_10(media_dir) -> Source:
    """6 s of speech clipped at 0 dBFS, at about -10 LUFS."""
    return _source(media_dir, synth.clipped(media_dir / "clipped-10.wav", seconds=6, drive_db=17.0))


@pytest.fixture(scope="session")
def video_1080p(media_dir) -> Source:
    """4 s of 1920x1080 H.264 with a speech-like AAC track."""
    return _source(media_dir, synth.video(media_dir / "hd.mp4", size="1920x1080", seconds=4))


@pytest.fixture(scope="session")
def video_360p(media_dir) -> Source:
    """3 s of 640x360 H.264 with sound: small enough that nothing may scale it."""
    return _source(media_dir, synth.video(media_dir / "small.mp4", size="640x360", seconds=3))


@pytest.fixture(scope="session")
def corpus(media_dir):
    """The hostile corpus, generated once."""
    return build_corpus(media_dir / "corpus")
