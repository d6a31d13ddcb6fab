"""The launcher: runs ``current/bin/lessoncast agent run``, restarts it into a new release, and rolls back one that
fails its trial.

systemd starts the launcher (``lessoncast agent launch``); the launcher starts the agent of the ``current`` release.
After an update the agent has switched ``current`` and exits with ``RESTART_EXIT``; the launcher starts the new
release *on trial*: if it exits before it reports itself healthy (connected and synced), or does not within the trial
time, the launcher kills it, points ``current`` back at the previous release, records why in ``agent_update.json``
and starts the previous release, which reports the failure. The agent itself holds the data directory's lock, so two
agents never run at once, whoever starts them.
"""

from __future__ import annotations

import collections
import logging
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

from device_agent.store import AgentStore
from device_agent.update import INSTALL_DIR_ENV, RESTART_EXIT, UPDATE_FILE, InstallDir

log = logging.getLogger(__name__)


class Launcher:
    """Supervises one agent process at a time for a data directory and an install directory."""

    def __init__(self, install: InstallDir, store: AgentStore, run_args: list[str], *, trial_s: float = 300.0,
                 restart_s: float = 5.0, env: Optional[dict] = None):
        self.install = install
        self.store = store
        self.run_args = run_args
        self.trial_s = trial_s
        self.restart_s = restart_s
        self.env = env
        self.stop = threading.Event()
        self._proc: Optional[subprocess.Popen] = None
        self._tail: collections.deque[str] = collections.deque(maxlen=8)

    def _state(self) -> dict:
        return self.store.read_json(UPDATE_FILE) or {}

    def _start(self) -> subprocess.Popen:
        command = [str(self.install.current / "bin" / "lessoncast"), "agent", "run", *self.run_args]
        self._tail.clear()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self.env)

        def pump() -> None:  # the agent's output goes on to ours (the journal); the last lines explain a failure
            for raw in proc.stdout:
                line = raw.decode(errors="replace")
                sys.stderr.write(line)
                sys.stderr.flush()
                if line.strip():
                    self._tail.append(line.strip())

        self._pump = threading.Thread(target=pump, name="agent-output", daemon=True)
        self._pump.start()
        return proc

    def _end(self, proc: subprocess.Popen) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        return proc.wait()

    def rollback(self, state: dict, reason: str) -> None:
        """Point ``current`` back at the previous release and record the failure for the previous agent to report."""
        previous = state.get("previous")
        if previous:
            self.install.switch(self.install.root / previous)
        log.error("release %s failed its trial (%s); rolled back to %s", state.get("version"), reason, previous)
        self.store.write_json(UPDATE_FILE, {"state": "rolled_back", "version": state.get("version"),
                                            "attempt": state.get("attempt", 1), "reason": reason[:500],
                                            "from": state.get("from")})

    def run_once(self) -> Optional[int]:
        """Run the current release until it exits (or fails its trial); return its exit code, None if stopped."""
        state = self._state()
        trial = state.get("state") == "trial"
        proc = self._proc = self._start()
        started = time.monotonic()
        while proc.poll() is None and not self.stop.is_set():
            if trial:
                state = self._state()
                if state.get("state") != "trial":
                    trial = False
                elif time.monotonic() - started > self.trial_s:
                    self._end(proc)
                    self.rollback(state, f"did not connect and sync within {self.trial_s:.0f} s")
                    return None if self.stop.is_set() else 0
            self.stop.wait(0.2)
        if self.stop.is_set():
            self._end(proc)
            return None
        code = proc.wait()
        self._pump.join(timeout=5)  # its last lines say why it failed
        if trial and self._state().get("state") == "trial":
            last = self._tail[-1] if self._tail else "no output"
            self.rollback(self._state(), f"exited with code {code} at start: {last}")
        return code

    def run(self) -> None:
        """Keep an agent running until ``stop`` is set."""
        while not self.stop.is_set():
            code = self.run_once()
            if code is None:
                return
            if code not in (0, RESTART_EXIT):
                log.warning("the agent exited with code %s; starting it again in %.0f s", code, self.restart_s)
                self.stop.wait(self.restart_s)


def launch(install_dir: Path, data_dir: Path, run_args: list[str], trial_s: float, restart_s: float) -> None:
    """Run the launcher until SIGTERM or SIGINT, then stop the agent cleanly."""
    import os

    env = dict(os.environ, **{INSTALL_DIR_ENV: str(install_dir), "LESSONCAST_AGENT_DIR": str(data_dir)})
    launcher = Launcher(InstallDir(Path(install_dir)), AgentStore(Path(data_dir)), run_args, trial_s=trial_s,
                        restart_s=restart_s, env=env)

    def shutdown(*_args) -> None:
        launcher.stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, shutdown)
    launcher.run()
