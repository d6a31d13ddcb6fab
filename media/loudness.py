"""Loudness figures (EBU R128) and how to read them from the summary ffmpeg's ebur128 filter prints."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

# Below this ebur128 reports the absolute gate itself: nothing in the signal was loud enough to count.
SILENCE_LUFS = -70.0

_SUMMARY = re.compile(r"\[(?P<name>[^\]@]*(?:@(?P<label>[^\] ]+))?) @ [^\]]+\] Summary:")
_INTEGRATED = re.compile(r"^\s*I:\s+(?P<value>-?(?:\d+(?:\.\d+)?|inf))\s+LUFS")
_LRA = re.compile(r"^\s*LRA:\s+(?P<value>-?(?:\d+(?:\.\d+)?|inf))\s+LU\b")
_PEAK = re.compile(r"^\s*Peak:\s+(?P<value>-?(?:\d+(?:\.\d+)?|inf))\s+dBFS")
# The summary heads each peak block with its kind: "Sample peak:" or "True peak:".
_PEAK_KIND = re.compile(r"^\s*(?P<kind>Sample|True) peak:")


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


def parse_ebur128_summaries(lines: list[str]) -> dict[str, Loudness]:
    """Return the ebur128 summaries in ffmpeg's stderr, keyed by filter label ('ebur128@mono' -> 'mono')."""
    found: dict[str, Loudness] = {}
    current: str | None = None
    values: dict[str, float] = {}
    peak_key = "TP"
    for line in lines:
        header = _SUMMARY.search(line)
        if header:
            if current is not None:
                found[current] = _loudness(values)
            current = header.group("label") or header.group("name")
            values = {}
            peak_key = "TP"
            continue
        if current is None:
            continue
        kind = _PEAK_KIND.match(line)
        if kind:
            peak_key = "SP" if kind.group("kind") == "Sample" else "TP"
            continue
        for key, pattern in (("I", _INTEGRATED), ("LRA", _LRA), ("TP", _PEAK)):
            match = pattern.match(line)
            if match:
                values[peak_key if key == "TP" else key] = float(match.group("value"))
    if current is not None:
        found[current] = _loudness(values)
    return found


def parse_peak_level(lines: list[str], label: str) -> float | None:
    """Return the overall 'Peak level dB' that the astats filter labelled `label` printed, or None."""
    pattern = re.compile(r"\[astats@" + re.escape(label) + r" @ [^\]]+\] Peak level dB:\s+(-?(?:\d+(?:\.\d+)?|inf))")
    found = None
    for line in lines:
        match = pattern.search(line)
        if match:
            found = float(match.group(1))
    return found


def measured_rendition(lines: list[str]) -> Loudness:
    """Return a rendition's Loudness from the stderr of media.commands.measure_argv."""
    loudness = parse_ebur128_summaries(lines)["measure"]
    peak = parse_peak_level(lines, "truepeak")
    if peak is None:
        raise ValueError("measurement printed no true-peak level")
    return Loudness(loudness.integrated_lufs, round(peak, 1), loudness.lra)


def _loudness(values: dict[str, float]) -> Loudness:
    """Build a Loudness from one parsed summary block."""
    if "I" not in values:
        raise ValueError("ebur128 summary without an integrated loudness line")
    return Loudness(values["I"], values.get("TP"), values.get("LRA"), values.get("SP"))


def _finite(value: float | None) -> float | None:
    """Return value, or None if it is missing or infinite (JSON has no -inf)."""
    return value if value is not None and math.isfinite(value) else None
