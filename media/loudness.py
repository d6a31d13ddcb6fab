"""Loudness figures (EBU R128) and how to read them from the summary ffmpeg's ebur128 filter prints."""

from __future__ import annotations

import re

from media.model import Loudness

_SUMMARY = re.compile(r"\[(?P<name>[^\]@]*(?:@(?P<label>[^\] ]+))?) @ [^\]]+\] Summary:")
_INTEGRATED = re.compile(r"^\s*I:\s+(?P<value>-?(?:\d+(?:\.\d+)?|inf))\s+LUFS")
_LRA = re.compile(r"^\s*LRA:\s+(?P<value>-?(?:\d+(?:\.\d+)?|inf))\s+LU\b")
_PEAK = re.compile(r"^\s*Peak:\s+(?P<value>-?(?:\d+(?:\.\d+)?|inf))\s+dBFS")
# The summary heads each peak block with its kind: "Sample peak:" or "True peak:".
_PEAK_KIND = re.compile(r"^\s*(?P<kind>Sample|True) peak:")


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


