"""systemd readiness and watchdog notifications (sd_notify), without a library: one datagram to $NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import time
from typing import Optional


class Watchdog:
    """Tells systemd the agent is ready, then that it is alive, at most every ``every`` seconds."""

    def __init__(self, every: float = 10.0, environ: Optional[dict] = None):
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET")
        self.every = every
        self._last = 0.0

    def _send(self, message: str) -> None:
        if not self.address:
            return
        address = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            try:
                sock.sendto(message.encode(), address)
            except OSError:
                pass  # systemd went away (shutdown); nothing to tell

    def ready(self) -> None:
        """The agent has started."""
        self._send("READY=1")

    def alive(self) -> None:
        """The main loop went round (throttled)."""
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self._send("WATCHDOG=1")
