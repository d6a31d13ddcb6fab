"""Start lessoncast processes for whole-system tests, each on its own data directory and free ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import requests

from tests.conftest import free_port

VENV_BIN = Path(sys.executable).parent


def stack_env(data_dir: Path, **settings) -> dict[str, str]:
    """Environment for a lessoncast process: the test's data directory and ports, nothing from the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LESSONCAST_")}
    env.update({"LESSONCAST_DATA_DIR": str(data_dir), "LESSONCAST_PORT": str(free_port()),
                "LESSONCAST_MQTT_PORT": str(free_port()), "LESSONCAST_MQTT_SERVER_PORT": str(free_port()),
                "LESSONCAST_WEB_BACKEND_PORT": str(free_port()),
                "PATH": f"{VENV_BIN}:{env.get('PATH', '')}"})
    env.update({f"LESSONCAST_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start `lessoncast ARGS` in its own process group, logging to LOG."""
    handle = open(log, "ab")
    return subprocess.Popen([str(VENV_BIN / "lessoncast"), *args], env=env, stdout=handle, stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_for(predicate: Callable[[], object], timeout: float, what: str, log: Optional[Path] = None):
    """Poll PREDICATE until it returns something truthy; fail with WHAT (and the log) after TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{tail}")


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 30) -> int:
    """Signal the process (group leader only, like Ctrl-C would reach it) and wait for it to exit."""
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout=timeout)


def get_json(url: str, **kwargs):
    """GET a URL and return (status, JSON) or (None, None) when nothing answers yet.

    A web worker's first answer can take seconds on a loaded machine (imports, first database connection); a
    timeout counts as "not yet", and the caller's deadline decides.
    """
    try:
        response = requests.get(url, timeout=5, **kwargs)
        return response.status_code, response.json()
    except (requests.ConnectionError, requests.Timeout, ValueError):
        return None, None
