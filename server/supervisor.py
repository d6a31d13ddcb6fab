"""Supervise the processes of one lessoncast machine: broker, worker and web server.

Each child runs in its own process group, so stopping one stops whatever it started (ffmpeg under the worker), and
a Ctrl-C in the terminal reaches the supervisor alone, which then stops the children in order. A child that dies is
restarted with backoff; Ctrl-C, SIGTERM or SIGHUP (a closed terminal, a dropped SSH session) stops all of them, web
first, broker last.

A supervisor that cannot stop them (SIGKILL, the OOM killer) must not leave them behind: a restart would find the
ports taken and two sets of ingest processes pushing each other off the broker. On Linux each child asks the kernel
for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``). The children's own children die with them: gunicorn's
arbiter stops its workers on SIGTERM, nginx's master its workers, and a job's ffmpeg loses its reader.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

log = logging.getLogger(__name__)


def system_executable(name: str) -> str | None:
    """A program the stack runs (Mosquitto, nginx): NAME on PATH, or Debian's /usr/sbin copy, which is not on a
    user's PATH; None when neither is there."""
    found = shutil.which(name)
    if found:
        return found
    fallback = Path("/usr/sbin") / name
    return str(fallback) if fallback.is_file() and os.access(fallback, os.X_OK) else None


PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with_parent(parent: int) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child get SIGTERM when PARENT (the supervisor) dies, on Linux; elsewhere it
    does nothing and the supervisor's own stop is all there is."""
    libc_name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(libc_name, use_errno=True) if libc_name and os.uname().sysname == "Linux" else None

    def preexec() -> None:
        if libc is None:
            return
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        # The supervisor may have died between fork and prctl: then no signal will ever come.
        if os.getppid() != parent:
            os._exit(1)

    return preexec


@dataclass
class Child:
    """A supervised process: how to start it, and its current state."""

    name: str
    argv: list[str]
    env: dict[str, str]
    proc: Optional[subprocess.Popen] = None
    restarts: list[float] = field(default_factory=list)

    def start(self) -> None:
        """Start the process in a new session (its own process group), to get SIGTERM when this process dies."""
        self.proc = subprocess.Popen(self.argv, env=self.env, start_new_session=True,
                                     preexec_fn=_die_with_parent(os.getpid()))
        log.info("started %s (pid %s)", self.name, self.proc.pid)

    def signal(self, sig: int) -> None:
        """Send SIG to the child's whole process group."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass


class Supervisor:
    """Start children in order, restart those that die, stop them all in reverse order on request."""

    MAX_RESTARTS = 5
    RESTART_WINDOW_S = 60.0
    STOP_TIMEOUT_S = 15.0

    def __init__(self, children: list[Child], on_ready: Optional[Callable[[], None]] = None):
        self.children = children
        self.on_ready = on_ready
        self._stopping = False

    def _request_stop(self, signum, _frame) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        self._stopping = True

    def run(self) -> int:
        """Run until asked to stop or a child keeps dying; return the exit status."""
        signal.signal(signal.SIGINT, self._request_stop)
        signal.signal(signal.SIGTERM, self._request_stop)
        # A closed terminal or a dropped SSH session: stop cleanly instead of dying with the children left running.
        signal.signal(signal.SIGHUP, self._request_stop)
        status = 0
        try:
            for child in self.children:
                child.start()
            if self.on_ready:
                self.on_ready()
            while not self._stopping:
                time.sleep(0.5)
                failed = self._restart_dead()
                if failed:
                    log.error("%s keeps stopping (%d times in %.0f s); giving up. Its log lines are above.",
                              failed, self.MAX_RESTARTS, self.RESTART_WINDOW_S)
                    status = 1
                    break
        finally:
            self.stop()
        return status

    def _restart_dead(self) -> Optional[str]:
        now = time.monotonic()
        for child in self.children:
            code = child.proc.poll() if child.proc else None
            if code is None:
                continue
            child.restarts = [t for t in child.restarts if now - t < self.RESTART_WINDOW_S] + [now]
            if len(child.restarts) > self.MAX_RESTARTS:
                return child.name
            delay = min(10.0, 0.5 * 2 ** (len(child.restarts) - 1))
            log.warning("%s exited with status %s; restarting in %.1f s", child.name, code, delay)
            time.sleep(delay)
            if self._stopping:
                return None
            child.start()
        return None

    def stop(self) -> None:
        """Ask every child to stop (web first, broker last), then kill what is left after the timeout."""
        for child in reversed(self.children):
            child.signal(signal.SIGTERM)
            deadline = time.monotonic() + self.STOP_TIMEOUT_S
            while child.proc is not None and child.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            if child.proc is not None and child.proc.poll() is None:
                log.warning("%s did not stop in %.0f s; killing it", child.name, self.STOP_TIMEOUT_S)
                child.signal(signal.SIGKILL)
                child.proc.wait()
            log.info("stopped %s", child.name)
