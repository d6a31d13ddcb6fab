"""Media value types: what a probe found, what a full decode measured, and loudness figures.

They import nothing else of ours, so the modules that produce them (probe, analysis, loudness) and the ones that
build commands from them (commands, profiles) never import each other for a type.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

# Below this ebur128 reports the absolute gate itself: nothing in the signal was loud enough to count.
SILENCE_LUFS = -70.0


@dataclass(frozen=True)
class Loudness:
    """Integrated loudness (LUFS), true peak (dBTP), loudness range (LU) and sample peak (dBFS); None: not measured."""

    integrated_lufs: float
    true_peak_dbtp: float | None
    lra: float | None = None
    sample_peak_dbfs: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict; -inf (digital silence) becomes None."""
        return {
            "integrated_lufs": self.integrated_lufs,
            "true_peak_dbtp": _finite(self.true_peak_dbtp),
            "lra": _finite(self.lra),
            "sample_peak_dbfs": _finite(self.sample_peak_dbfs),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Loudness:
        """Rebuild a Loudness from to_dict() output."""
        return cls(data["integrated_lufs"], data.get("true_peak_dbtp"), data.get("lra"), data.get("sample_peak_dbfs"))

    @property
    def peak_db(self) -> float | None:
        """Return the true peak if it was measured, else the sample peak (at most a dB or so lower on speech)."""
        return self.true_peak_dbtp if self.true_peak_dbtp is not None else self.sample_peak_dbfs

    @property
    def is_silent(self) -> bool:
        """Return whether nothing in the signal passed the absolute gate."""
        return self.integrated_lufs <= SILENCE_LUFS + 0.05


def _finite(value: float | None) -> float | None:
    """Return value, or None if it is missing or infinite (JSON has no -inf)."""
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class ProbeResult:
    """What ffprobe says about an accepted source; width and height are as displayed (rotation, pixel aspect)."""

    format_name: str
    duration_s: float
    size_bytes: int
    bit_rate: int | None
    audio_codec: str
    channels: int
    sample_rate: int
    video_codec: str | None = None
    width: int | None = None
    height: int | None = None
    has_video: bool = False
    audio_stream_index: int = 0
    video_stream_index: int | None = None
    frame_rate: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict the server stores with the lesson source."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeResult:
        """Rebuild a ProbeResult from to_dict() output, ignoring keys a newer version may have added."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass(frozen=True)
class SourceAnalysis:
    """What a full decode found: the decoded length and the loudness of each layout the renditions use."""

    decoded_duration_s: float
    mono: Loudness
    # None when only the mono layout was measured; for a mono source it is the mono measurement.
    stereo: Loudness | None

    def for_channels(self, channels: int) -> Loudness:
        """Return the loudness measured on the layout a rendition with `channels` channels carries."""
        if channels == 1:
            return self.mono
        if self.stereo is None:
            raise ValueError("this analysis measured the mono layout only")
        return self.stereo

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict the server stores with the lesson source."""
        return {
            "decoded_duration_s": self.decoded_duration_s,
            "mono": self.mono.to_dict(),
            "stereo": self.stereo.to_dict() if self.stereo is not None else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceAnalysis:
        """Rebuild a SourceAnalysis from to_dict() output."""
        stereo = data.get("stereo")
        return cls(
            data["decoded_duration_s"],
            Loudness.from_dict(data["mono"]),
            Loudness.from_dict(stereo) if stereo else None,
        )
