"""Make one rendition of a lesson source: encode, tag, measure the result, hash it.

The loudness target is checked on the encoded file, not assumed from the encode settings. A rendition that misses it
gets one corrective encode with the gain and limiter ceiling adjusted by what was measured; one that still misses is
refused with the figures and the reason rather than shipped. Files are written under temporary names in `out_dir` and
renamed to their sha256 only when complete, so a failure leaves nothing behind and the caller moves a finished file
into the content-addressed store.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from media.analysis import measure_rendition
from media.commands import encode_argv, encode_pipeline, first_gain_db, poster_argv
from media.errors import MediaError, _t
from media.loudness import measured_rendition
from media.model import Loudness, ProbeResult, SourceAnalysis
from media.profiles import Profile
from media.runner import run, run_pipeline
from media.tags import write_radio_tags

# How far below the true-peak target a corrective encode aims, on top of the encoder overshoot it measured.
_CORRECTION_MARGIN_DB = 0.5
_SUMMARY_LINES = 60


@dataclass(frozen=True)
class RenditionResult:
    """A finished rendition file with its hash, length, duration and loudness measured on the file."""

    profile: str
    path: Path
    sha256: str
    size_bytes: int
    duration_s: float
    loudness: Loudness
    gain_db: float
    encodes: int  # 2 when a corrective encode was needed
    poster_path: Path | None = None
    poster_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict for the job record."""
        return {
            "profile": self.profile,
            "path": str(self.path),
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "duration_s": self.duration_s,
            "loudness": self.loudness.to_dict(),
            "gain_db": self.gain_db,
            "encodes": self.encodes,
            "poster_path": str(self.poster_path) if self.poster_path else None,
            "poster_sha256": self.poster_sha256,
        }


class _Progress:
    """Maps the progress of one step onto a span of the whole, never moving backwards."""

    def __init__(self, report: Callable[[float], None] | None) -> None:
        self._report = report
        self._done = 0.0

    def span(self, start: float, end: float) -> Callable[[float], None] | None:
        """Return a callback for a step that covers start..end of the whole."""
        if self._report is None:
            return None

        def step(fraction: float) -> None:
            """Report `fraction` of this step as a fraction of the whole."""
            value = start + (end - start) * fraction
            if value > self._done:
                self._done = value
                self._report(value)

        return step


def make_rendition(
    src: str | Path,
    probe: ProbeResult,
    analysis: SourceAnalysis,
    profile: Profile,
    out_dir: str | Path,
    *,
    tags: dict[str, str],
    on_progress: Callable[[float], None] | None = None,
    timeout_s: float | None = None,
    display_name: str | None = None,
) -> RenditionResult:
    """Encode `src` with `profile` into `out_dir` and return the verified RenditionResult; raise MediaError on a miss.

    `tags` holds title, artist and album; only profiles with radio_tags write them. `display_name` names the source
    in error messages (default: the file name of `src`).
    """
    name = display_name or Path(src).name
    out_dir = Path(out_dir)
    token = secrets.token_hex(8)
    part = out_dir / f".{profile.name}-{token}.part.{profile.extension}"
    poster_part = out_dir / f".{profile.name}-{token}.part.jpg"
    timeout = timeout_s if timeout_s is not None else _default_timeout(profile, analysis.decoded_duration_s)
    progress = _Progress(on_progress)
    finished: list[Path] = []
    try:
        gain, loudness, duration, encodes = _encode_to_target(
            src, probe, analysis, profile, part, progress, timeout, name
        )
        if profile.radio_tags:
            write_radio_tags(
                part, title=tags.get("title", ""), artist=tags.get("artist", ""), album=tags.get("album", "")
            )
        poster = poster_sha = None
        if profile.video is not None:
            run(poster_argv(probe, src, poster_part, profile), duration_s=None, timeout_s=120.0)
            poster_sha, _ = _hash(poster_part)
            poster = _finish(poster_part, out_dir / f"{poster_sha}.jpg", finished)
        sha, size = _hash(part)
        final = _finish(part, out_dir / f"{sha}.{profile.extension}", finished)
    except BaseException:
        for path in (part, poster_part, *finished):
            path.unlink(missing_ok=True)
        raise
    if on_progress is not None:
        on_progress(1.0)
    return RenditionResult(profile.name, final, sha, size, duration, loudness, gain, encodes, poster, poster_sha)


def _finish(part: Path, final: Path, finished: list[Path]) -> Path:
    """Rename a complete temporary file to its final name, noting it so a later failure can remove it."""
    part.replace(final)
    finished.append(final)
    return final


def _encode_to_target(
    src: str | Path,
    probe: ProbeResult,
    analysis: SourceAnalysis,
    profile: Profile,
    part: Path,
    progress: _Progress,
    timeout: float,
    display_name: str,
) -> tuple[float, Loudness, float, int]:
    """Encode and measure, re-encoding once with corrected gain and ceiling if needed.

    Returns the gain used, the measured loudness, the decoded duration and the number of encodes.
    """
    gain = first_gain_db(profile, probe, analysis)
    ceiling = profile.limiter_ceiling_dbtp
    share = 0.9 if profile.video is not None else 1.0
    for attempt in (1, 2):
        loudness, duration = _encode_once(
            src, probe, analysis, profile, part, gain, ceiling, progress.span(0.0, share), timeout
        )
        tp = loudness.true_peak_dbtp if loudness.true_peak_dbtp is not None else float("inf")
        if profile.loudness_ok(loudness.integrated_lufs, tp):
            return gain, loudness, duration, attempt
        if attempt == 1:
            gain, ceiling = corrected(profile, gain, ceiling, loudness.integrated_lufs, tp)
    raise MediaError(
        "loudness_target_missed",
        _t("{display_name}: the {name} rendition measured {integrated_lufs:.1f} LUFS and {tp:+.1f} dBTP after a "
           "corrective encode: {value}; the target is {target_lufs:.0f} ±{tolerance_lu:.0f} LUFS with peaks at or "
           "below {max_true_peak_dbtp:.1f} dBTP",
           display_name=display_name,
           name=profile.name,
           integrated_lufs=loudness.integrated_lufs,
           tp=tp,
           value=miss_reason(profile, probe, analysis, loudness.integrated_lufs, tp),
           target_lufs=profile.target_lufs,
           tolerance_lu=profile.tolerance_lu,
           max_true_peak_dbtp=profile.max_true_peak_dbtp),
        filename=display_name,
        limit=f"{profile.target_lufs:.0f} LUFS, {profile.max_true_peak_dbtp:.1f} dBTP",
    )


def corrected(profile: Profile, gain: float, ceiling: float, lufs: float, tp: float) -> tuple[float, float]:
    """Return the gain and limiter ceiling of the corrective encode, from what the first one measured.

    The gain moves by the loudness missed. Where the limiter was at work (the output's peak at or above its
    ceiling), the encoder's overshoot on this very sound is known, so the ceiling moves to where that overshoot lands
    the peaks a margin under the target: down if they passed it, up if a quiet result left headroom unused (the
    profile's ceiling allows for the worst overshoot seen on speech, most sound overshoots less).
    """
    new_gain = round(gain + profile.target_lufs - lufs, 2)
    overshoot = tp - ceiling
    too_quiet = lufs < profile.target_lufs - profile.tolerance_lu
    if tp > profile.max_true_peak_dbtp or (too_quiet and overshoot >= 0):
        ceiling = round(profile.max_true_peak_dbtp - _CORRECTION_MARGIN_DB - max(overshoot, 0.0), 2)
    return new_gain, ceiling


def miss_reason(profile: Profile, probe: ProbeResult, analysis: SourceAnalysis, lufs: float, tp: float) -> str:
    """Return why a rendition still missed its target, in words staff can act on."""
    if tp > profile.max_true_peak_dbtp:
        return "the encoder put its peaks back over the ceiling"
    if lufs > profile.target_lufs + profile.tolerance_lu:
        return "it came out too loud"
    measured = analysis.for_channels(profile.output_channels(probe))
    if measured.peak_db is None:
        return "too quiet"
    return (
        f"too quiet, because the source's peaks stand {measured.peak_db - measured.integrated_lufs:.1f} dB above its "
        "loudness, more than compression and the limiter could bring in; record it again at a steadier level, with "
        "the microphone a little further from the mouth"
    )


def _encode_once(
    src: str | Path,
    probe: ProbeResult,
    analysis: SourceAnalysis,
    profile: Profile,
    part: Path,
    gain: float,
    ceiling: float,
    on_progress: Callable[[float], None] | None,
    timeout: float,
) -> tuple[Loudness, float]:
    """Run one encode into `part` and return the rendition's measured loudness and decoded duration."""
    duration = analysis.decoded_duration_s
    mono = profile.output_channels(probe) == 1
    if profile.video is None and profile.measure_format is not None:
        stages = encode_pipeline(profile, probe, analysis, src, part, gain_db=gain, ceiling_dbtp=ceiling)
        measured = run_pipeline(
            stages.argvs(), duration_s=duration, on_progress=on_progress, timeout_s=timeout, keep_lines=_SUMMARY_LINES
        )[-1]
        return measured_rendition(measured.stderr_tail), measured.out_time_s or 0.0
    argv = encode_argv(profile, probe, analysis, src, part, gain_db=gain, ceiling_dbtp=ceiling)
    run(argv, duration_s=duration, on_progress=on_progress, timeout_s=timeout)
    return measure_rendition(part, mono, profile.output_sample_rate(probe), timeout_s=timeout)


def _default_timeout(profile: Profile, duration_s: float) -> float:
    """Return how long one encode may run: generous, only there to stop a hung ffmpeg."""
    per_second = 4.0 if profile.video is not None else 0.5
    return 300.0 + duration_s * per_second


def _hash(path: Path) -> tuple[str, int]:
    """Return the sha256 hex digest and size of a file."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
