"""Full-decode checks and source loudness: the background half of probing.

One ffmpeg pass decodes the whole source under the same whitelists as the probe and measures EBU R128 integrated
loudness and true peak on the signal as each rendition will carry it: the mono downmix (radio) and the stereo or
mono-as-source layout (terminals). The same pass catches files that are cut short (a copy that stopped early still
declares its full length), files longer than declared, and files that do not decode.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from media.commands import analysis_argv, file_url, measure_argv
from media.errors import FfmpegError, FfmpegTimeout, MediaError, _t, format_duration
from media.limits import Limits
from media.loudness import measured_rendition, parse_ebur128_summaries
from media.model import Loudness, ProbeResult, SourceAnalysis
from media.runner import run

# Enough stderr to hold two ebur128 summaries after whatever ffmpeg printed before them.
_SUMMARY_LINES = 80


def analyse(
    path: str | Path,
    probe: ProbeResult,
    limits: Limits,
    display_name: str,
    on_progress: Callable[[float], None] | None = None,
    *,
    layouts: tuple[str, ...] = ("mono", "stereo"),
    true_peak: bool = True,
    timeout_s: float | None = None,
) -> SourceAnalysis:
    """Decode all of `path` once and return its SourceAnalysis; raise MediaError if it is truncated or undecodable.

    `layouts=("mono",)` and `true_peak=False` skip work a lone radio rendition does not need: its gain comes from the
    integrated loudness, its limiter guards the peaks whatever the source's were, and the sample peak (nearly free,
    where the true peak costs a 192 kHz resampling) is enough to tell whether it needs a compressor.
    """
    # Decoding stops a little past the limit, so a file that lies about its length cannot keep a worker busy.
    stop_at = limits.max_duration_s + limits.duration_tolerance(limits.max_duration_s)
    argv = analysis_argv(path, probe, layouts=layouts, true_peak=true_peak, max_duration_s=stop_at)
    timeout = timeout_s if timeout_s is not None else 120.0 + probe.duration_s * (2.0 if probe.has_video else 0.5)
    try:
        result = run(
            argv, duration_s=probe.duration_s, on_progress=on_progress, timeout_s=timeout, keep_lines=_SUMMARY_LINES
        )
    except FfmpegTimeout:
        # A stuck or starved worker, not a verdict on the file: the job fails and can be retried.
        raise
    except FfmpegError as exc:
        raise MediaError(
            "decode_error",
            _t("{display_name}: could not be decoded ({value}); the file is damaged, export or copy it again",
               display_name=display_name, value=_reason(exc.tail, path, display_name)),
            filename=display_name,
        ) from exc
    decoded = result.out_time_s or 0.0
    _check_decoded_length(decoded, probe, limits, display_name)
    summaries = parse_ebur128_summaries(result.stderr_tail)
    mono = summaries["mono"]
    if mono.is_silent:
        raise MediaError(
            "silent",
            _t("{display_name}: the sound track is silent (below −70 LUFS); check the recording",
               display_name=display_name),
            filename=display_name,
        )
    stereo = summaries.get("stereo") or (mono if probe.channels == 1 else None)
    return SourceAnalysis(decoded_duration_s=round(decoded, 3), mono=mono, stereo=stereo)


def _check_decoded_length(decoded: float, probe: ProbeResult, limits: Limits, display_name: str) -> None:
    """Raise MediaError if the decode found nothing, found too much, or stopped well short of the declared length."""
    if decoded <= 0:
        raise MediaError(
            "decode_error", _t("{display_name}: no sound could be decoded; the file is damaged",
                               display_name=display_name), filename=display_name
        )
    if decoded > limits.max_duration_s:
        raise MediaError(
            "too_long",
            _t("{display_name}: it plays for more than {value} although it declares {value2}; split the lesson into "
               "parts",
               display_name=display_name,
               value=format_duration(limits.max_duration_s),
               value2=format_duration(probe.duration_s)),
            filename=display_name,
            limit=format_duration(limits.max_duration_s),
        )
    if decoded < probe.duration_s - limits.duration_tolerance(probe.duration_s):
        raise MediaError(
            "truncated",
            _t("{display_name}: only {value} of the declared {value2} could be decoded; the file is cut short (an "
               "incomplete copy?), upload the complete file",
               display_name=display_name, value=format_duration(decoded), value2=format_duration(probe.duration_s)),
            filename=display_name,
            limit=format_duration(probe.duration_s),
        )


def measure_loudness(path: str | Path, mono: bool, sample_rate: int | None = None) -> Loudness:
    """Return the integrated loudness and true peak of an encoded rendition, measured on its own."""
    return measure_rendition(path, mono, sample_rate)[0]


def measure_rendition(
    path: str | Path, mono: bool, sample_rate: int | None = None, timeout_s: float = 600.0
) -> tuple[Loudness, float]:
    """Return a rendition's loudness and its decoded duration in seconds."""
    argv = measure_argv(path, mono=mono, sample_rate=sample_rate)
    result = run(argv, duration_s=None, timeout_s=timeout_s, keep_lines=_SUMMARY_LINES)
    return measured_rendition(result.stderr_tail), result.out_time_s or 0.0


def _reason(tail: list[str], path: str | Path, display_name: str) -> str:
    """Return the most telling line of ffmpeg's stderr tail for an error message, the server's path left out."""
    telling = [line for line in tail if "rror" in line or "nvalid" in line] or tail or ["no details"]
    line = telling[-1].split("] ", 1)[-1].strip()
    return line.replace(file_url(path), display_name).replace(os.path.abspath(path), display_name)
