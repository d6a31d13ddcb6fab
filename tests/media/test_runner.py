"""The runner: progress parsing, stderr tails, failures, timeouts and pipelines, with real ffmpeg processes."""

from __future__ import annotations

import pytest

from media.errors import FfmpegError, FfmpegTimeout
from media.runner import progress_seconds, run, run_pipeline

FFMPEG = ["ffmpeg", "-nostdin", "-hide_banner", "-nostats"]


def tone(seconds: float) -> list[str]:
    """Return an argv that renders a sine tone into the null muxer, reporting progress."""
    return FFMPEG + ["-f", "lavfi", "-i", f"sine=f=440:d={seconds}", "-progress", "pipe:1", "-f", "null", "-"]


def test_progress_fractions_rise_to_one():
    seen: list[float] = []
    result = run(tone(20), duration_s=20, on_progress=seen.append)
    assert seen[-1] == 1.0 and seen == sorted(seen)
    assert result.returncode == 0 and result.progress["progress"] == "end"
    assert result.out_time_s == pytest.approx(20.0, abs=0.1)


def test_failure_keeps_argv_status_and_the_last_stderr_lines(tmp_path):
    argv = FFMPEG + ["-i", str(tmp_path / "missing.wav"), "-f", "null", "-"]
    with pytest.raises(FfmpegError) as caught:
        run(argv, duration_s=None)
    error = caught.value
    assert error.argv == argv and error.returncode == 1
    assert 0 < len(error.tail) <= 20 and "No such file or directory" in error.tail[-1]


def test_timeout_kills_ffmpeg():
    endless = FFMPEG + ["-re", "-f", "lavfi", "-i", "sine", "-f", "null", "-"]
    with pytest.raises(FfmpegTimeout) as caught:
        run(endless, duration_s=None, timeout_s=1.0)
    assert "timed out" in str(caught.value)


def test_a_raising_progress_callback_stops_ffmpeg():
    class Cancelled(Exception):
        """What a job's progress callback raises when the job is cancelled."""

    def cancel(fraction: float) -> None:
        """Cancel at the first report."""
        raise Cancelled

    slow = FFMPEG + ["-re", "-f", "lavfi", "-i", "sine=d=30", "-progress", "pipe:1", "-f", "null", "-"]
    with pytest.raises(Cancelled):
        run(slow, duration_s=30, on_progress=cancel, timeout_s=20)


def test_pipeline_passes_data_and_reports_the_last_stage():
    produce = FFMPEG + ["-f", "lavfi", "-i", "sine=d=5", "-f", "s16le", "-ac", "1", "pipe:1"]
    consume = FFMPEG + ["-f", "s16le", "-sample_rate", "44100", "-ch_layout", "mono", "-i", "pipe:0",
                        "-progress", "pipe:1", "-f", "null", "-"]
    results = run_pipeline([produce, consume], duration_s=5)
    assert results[-1].out_time_s == pytest.approx(5.0, abs=0.1)


def test_pipeline_blames_the_stage_that_failed_not_its_neighbours():
    broken = FFMPEG + ["-f", "lavfi", "-i", "sine=d=5", "-af", "nosuchfilter", "-f", "s16le", "pipe:1"]
    consume = FFMPEG + ["-f", "s16le", "-i", "pipe:0", "-f", "null", "-"]
    with pytest.raises(FfmpegError) as caught:
        run_pipeline([broken, consume], duration_s=5)
    assert caught.value.argv == broken
    produce = FFMPEG + ["-f", "lavfi", "-i", "sine=d=60", "-f", "s16le", "pipe:1"]
    refuse = FFMPEG + ["-f", "s16le", "-i", "pipe:0", "-af", "nosuchfilter", "-f", "null", "-"]
    with pytest.raises(FfmpegError) as caught:
        run_pipeline([produce, refuse], duration_s=60)
    assert caught.value.argv == refuse


@pytest.mark.parametrize(
    ("block", "seconds"),
    [
        ({"out_time_us": "1500000"}, 1.5),
        ({"out_time_us": "N/A", "out_time_ms": "2000000"}, 2.0),  # ffmpeg's out_time_ms is in µs too
        ({}, None),
        ({"out_time_us": "-5"}, 0.0),
    ],
)
def test_progress_seconds(block, seconds):
    assert progress_seconds(block) == seconds


def test_a_tee_slave_that_cannot_write_fails_the_run_although_ffmpeg_exits_0():
    # The tee muxer logs a file it cannot write (a full disk: /dev/full always is) and goes on with the other
    # slaves, exiting 0; the truncated file must not pass as a rendition.
    argv = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "sine=d=2",
            "-map", "0:a", "-c:a", "aac", "-f", "tee", "[f=adts]/dev/full|[f=adts]pipe:1"]

    with pytest.raises(FfmpegError) as caught:
        run(argv, duration_s=2.0)

    assert caught.value.returncode == 0
    assert any("No space left on device" in line for line in caught.value.tail)
