"""The one place that runs ffmpeg: argv lists in, progress and the stderr tail out, FfmpegError on failure.

`run` executes one argv; `run_pipeline` executes several connected stdout-to-stdin, which lets a conditioning
process, an encoder and a measurement run on different cores at once. Progress comes from `-progress pipe:1` on the
last process. Every stderr is read by its own thread, so no pipe can fill up and deadlock a process.
"""

from __future__ import annotations

import collections
import fcntl
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from media.errors import FfmpegError, FfmpegTimeout

TAIL_LINES = 20
# What ffmpeg prints when it cannot write its output. The tee muxer (a rendition written to a file and measured
# from a pipe at once) logs a failing file slave and still exits 0, leaving a truncated file; such a line fails
# the stage whatever its exit status.
WRITE_ERRORS = ("No space left on device", "Disk quota exceeded", "File too large", "Input/output error")
# Pipes between stages hold 1 MB instead of Linux's 64 KB: with the small default the stages run in lock-step and
# keep stalling one another; on a 40-minute radio encode this took about a fifth off the wall time.
PIPE_BYTES = 1024 * 1024

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    """What one finished ffmpeg process left: its last stderr lines and its last progress report."""

    argv: list[str]
    returncode: int
    stderr_tail: list[str]
    progress: dict[str, str] = field(default_factory=dict)
    progress_reports: int = 0
    elapsed_s: float = 0.0
    write_errors: list[str] = field(default_factory=list)  # lines saying the output could not be written

    @property
    def failed(self) -> bool:
        """Whether the stage failed: a non-zero exit, or output it could not write (a full disk)."""
        return self.returncode != 0 or bool(self.write_errors)

    @property
    def out_time_s(self) -> float | None:
        """Return the output position of the last progress report, in seconds."""
        return progress_seconds(self.progress)


def run(
    argv: list[str],
    *,
    duration_s: float | None,
    on_progress: Callable[[float], None] | None = None,
    timeout_s: float | None = None,
    keep_lines: int = TAIL_LINES,
) -> RunResult:
    """Run one ffmpeg argv to completion and return its RunResult; raise FfmpegError if it fails or times out."""
    results = run_pipeline(
        [argv], duration_s=duration_s, on_progress=on_progress, timeout_s=timeout_s, keep_lines=keep_lines
    )
    return results[0]


def run_pipeline(
    argvs: Sequence[list[str]],
    *,
    duration_s: float | None,
    on_progress: Callable[[float], None] | None = None,
    timeout_s: float | None = None,
    keep_lines: int = TAIL_LINES,
) -> list[RunResult]:
    """Run argvs connected stdout to stdin and return one RunResult each; raise FfmpegError for the failing stage."""
    pipeline = _Pipeline(keep_lines)
    pipeline.start(argvs)
    timer = threading.Timer(timeout_s, pipeline.time_out) if timeout_s else None
    if timer:
        timer.daemon = True
        timer.start()
    try:
        progress, reports = _follow_progress(pipeline.progress_stream, duration_s, on_progress)
    except BaseException:
        # The progress callback may raise (a cancelled job); ffmpeg must not outlive it.
        pipeline.kill()
        raise
    finally:
        pipeline.reap()
        if timer:
            timer.cancel()
    results = pipeline.results(argvs, progress, reports)
    if pipeline.timed_out.is_set():
        reason = f"timed out after {timeout_s:.0f} s"
        raise FfmpegTimeout(results[-1].argv, None, _joined_tail(results), reason=reason)
    failed = [result for result in results if result.failed]
    if failed:
        # A failing stage makes the stages before it die of a broken pipe and may make those after it fail on a
        # short or empty input, so the cause is the first failure that is not a broken pipe.
        cause = next((result for result in failed if not _broken_pipe(result)), failed[-1])
        tail = cause.stderr_tail + [line for line in cause.write_errors if line not in cause.stderr_tail]
        raise FfmpegError(cause.argv, cause.returncode, tail[-TAIL_LINES:])
    if on_progress is not None:
        on_progress(1.0)
    return results


class _Pipeline:
    """The processes of one run, their stderr readers and tails."""

    def __init__(self, keep_lines: int) -> None:
        self.keep_lines = keep_lines
        self.procs: list[subprocess.Popen[bytes]] = []
        self.tails: list[collections.deque[str]] = []
        self.write_errors: list[list[str]] = []
        self.readers: list[threading.Thread] = []
        self.timed_out = threading.Event()
        self.started = time.monotonic()

    @property
    def progress_stream(self):
        """Return the last stage's stdout, where `-progress pipe:1` reports go."""
        return self.procs[-1].stdout

    def start(self, argvs: Sequence[list[str]]) -> None:
        """Start every stage, each reading the previous one's stdout; on failure stop those already started."""
        try:
            for argv in argvs:
                stdin = self.procs[-1].stdout if self.procs else subprocess.DEVNULL
                proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                if len(argvs) > 1:
                    _widen_pipe(proc.stdout)
                if self.procs:
                    # Only the next stage may hold this pipe, so a stage that dies gives its upstream EPIPE, not a hang.
                    self.procs[-1].stdout.close()
                self.procs.append(proc)
                tail: collections.deque[str] = collections.deque(maxlen=self.keep_lines)
                errors: list[str] = []
                reader = threading.Thread(target=_read_lines, args=(proc.stderr, tail, errors), daemon=True)
                reader.start()
                self.tails.append(tail)
                self.write_errors.append(errors)
                self.readers.append(reader)
        except BaseException:
            self.kill()
            self.reap()
            raise

    def kill(self) -> None:
        """Kill every stage that is still running."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()

    def time_out(self) -> None:
        """Record a timeout and kill every stage (called from the timer thread)."""
        self.timed_out.set()
        self.kill()

    def reap(self) -> None:
        """Wait for every stage and stderr reader, and close the last stdout."""
        for proc in self.procs:
            proc.wait()
        for reader in self.readers:
            reader.join()
        if self.procs and not self.procs[-1].stdout.closed:
            self.procs[-1].stdout.close()

    def results(self, argvs: Sequence[list[str]], progress: dict[str, str], reports: int) -> list[RunResult]:
        """Return a RunResult per stage; only the last one has progress reports."""
        elapsed = time.monotonic() - self.started
        results = [
            RunResult(list(argv), proc.returncode, list(tail), elapsed_s=elapsed, write_errors=list(errors))
            for argv, proc, tail, errors in zip(argvs, self.procs, self.tails, self.write_errors)
        ]
        last = results[-1]
        results[-1] = RunResult(last.argv, last.returncode, last.stderr_tail, progress, reports, elapsed,
                                last.write_errors)
        return results


def _follow_progress(
    stream, duration_s: float | None, on_progress: Callable[[float], None] | None
) -> tuple[dict[str, str], int]:
    """Read `-progress` key=value blocks until EOF; report fractions; return the last block and the block count."""
    block: dict[str, str] = {}
    last: dict[str, str] = {}
    reports = 0
    for raw in stream:
        key, sep, value = raw.decode("utf-8", "replace").strip().partition("=")
        if not sep:
            continue
        block[key] = value
        if key == "progress":
            last, block = block, {}
            reports += 1
            seconds = progress_seconds(last)
            if on_progress is not None and duration_s and seconds is not None:
                on_progress(min(1.0, max(0.0, seconds / duration_s)))
    return last, reports


def progress_seconds(block: dict[str, str]) -> float | None:
    """Return the output time of a `-progress` block in seconds (out_time_us, or out_time_ms which is also µs)."""
    for key in ("out_time_us", "out_time_ms"):
        value = block.get(key, "N/A")
        if value not in ("N/A", ""):
            try:
                return max(0.0, int(value) / 1_000_000)
            except ValueError:
                continue
    return None


def _widen_pipe(stream) -> None:
    """Enlarge a pipe between stages to PIPE_BYTES; where the system refuses, the stages still work, only slower."""
    if not hasattr(fcntl, "F_SETPIPE_SZ"):
        return
    try:
        fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except OSError as exc:
        log.warning("could not enlarge an ffmpeg pipe to %d bytes, keeping the default: %s", PIPE_BYTES, exc)


def _broken_pipe(result: RunResult) -> bool:
    """Return whether a stage died because the stage after it had gone (SIGPIPE or EPIPE)."""
    return result.returncode == -signal.SIGPIPE or any("Broken pipe" in line for line in result.stderr_tail)


def _read_lines(stream, tail: collections.deque[str], write_errors: list[str]) -> None:
    """Keep the last lines of a stderr stream, and every line saying output could not be written (however early);
    ffmpeg ends status lines with \\r, so split on both."""
    for raw in stream:
        for line in raw.decode("utf-8", "replace").replace("\r", "\n").splitlines():
            if line.strip():
                tail.append(line.rstrip())
                if any(marker in line for marker in WRITE_ERRORS) and len(write_errors) < TAIL_LINES:
                    write_errors.append(line.rstrip())
    stream.close()


def _joined_tail(results: list[RunResult]) -> list[str]:
    """Return the stderr tails of all stages, the last stage last, trimmed to TAIL_LINES."""
    lines = [line for result in results for line in result.stderr_tail]
    return lines[-TAIL_LINES:]
