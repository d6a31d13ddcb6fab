"""A small TCP proxy for tests: it can cut the network, refuse connections, drop each connection after N bytes,
stall a connection for a while mid-stream, and throttle what it passes towards the client."""

from __future__ import annotations

import socket
import threading
import time
from typing import Callable, Optional

from tests.conftest import free_port


class TcpProxy:
    """Forwards 127.0.0.1:port to 127.0.0.1:target_port, with faults the test switches on and off."""

    def __init__(self, target_port: int, *, drop_after: Optional[int] = None,
                 faults: Optional[Callable[[int], dict]] = None):
        self.target_port = target_port
        self.port = free_port()
        self.drop_after = drop_after  # close each connection after this many bytes towards the client
        # FAULTS(n) gives the n-th connection its own faults: {"drop_after": bytes, "stall_after": bytes,
        # "stall_s": seconds, "throttle_bps": bytes per second}; keys left out are not applied.
        self.faults = faults
        self.connections = 0
        self.stalls = 0
        self.online = True
        self.bytes_to_client = 0
        self.cuts = 0
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if not self.online:
                client.close()
                continue
            fault = self.faults(self.connections) if self.faults else {}
            try:
                upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                if fault.get("throttle_bps"):
                    # A small receive window, so the server's bytes wait at the server, not in this proxy's buffers:
                    # a throttled download is still in progress at the server end.
                    upstream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
                upstream.settimeout(5)
                upstream.connect(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            self.connections += 1
            budget = [fault.get("drop_after", self.drop_after)]
            threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, budget, fault), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, budget: Optional[list], fault: Optional[dict] = None
              ) -> None:
        fault = fault or {}
        passed, began = 0, time.monotonic()
        stall_at = fault.get("stall_after")
        rate = fault.get("throttle_bps")
        try:
            while True:
                data = src.recv(16384 if not rate else max(1024, min(16384, rate // 10)))
                if not data:
                    break
                if stall_at is not None and passed >= stall_at:
                    stall_at = None
                    with self._lock:
                        self.stalls += 1
                    time.sleep(fault.get("stall_s", 2.0))  # the link hangs, then carries on
                passed += len(data)
                if rate:
                    ahead = began + passed / rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
                if budget is not None and budget[0] is not None:
                    if len(data) >= budget[0]:
                        dst.sendall(data[: budget[0]])
                        self._count(budget[0])
                        with self._lock:
                            self.cuts += 1
                        break
                    budget[0] -= len(data)
                dst.sendall(data)
                if budget is not None:
                    self._count(len(data))
        except OSError:
            pass  # the other side closed or the test cut the network: that is the point of this proxy
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def _count(self, n: int) -> None:
        with self._lock:
            self.bytes_to_client += n

    def cut(self) -> None:
        """Drop every open connection and refuse new ones (the boat sails out of range)."""
        self.online = False
        with self._lock:
            conns, self._conns = self._conns, []
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def restore(self) -> None:
        """Accept connections again."""
        self.online = True

    def close(self) -> None:
        """Stop the proxy."""
        self._closed.set()
        self.cut()
        self._server.close()
