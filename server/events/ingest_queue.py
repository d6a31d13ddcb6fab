"""What ingest holds between the broker and the database: one queue per device, served round-robin, with a
per-device allowance (a token bucket of batches per second), a per-device backlog and a bound on the bytes held.

Why per device: the broker delivers the shared subscription in arrival order, so with one FIFO a device that sends
20,000 batches puts every other device's events behind them. Ingest takes every message off the broker at once (so
the broker's queue for ingest never fills and drops messages), and this class decides what is stored next: one
batch from each device in turn, from devices within their allowance.

A message that does not fit (its device's backlog is full, or ingest holds too many bytes and its device holds the
most) is *shed*: the broker gets its PUBACK, and nothing is stored or acknowledged to the device. A device keeps its
events until the server's ack covers them and sends unacked ones again (docs/PROTOCOL.md §5.4), so shedding slows
the flooding device down and loses nothing. An agent keeps at most a few batches unacked, so a well-behaved device,
even one back after weeks offline with 10,000 events, never reaches its backlog and is never shed.

Thread-safe: paho's network thread puts, the ingest's store thread takes. The clock is injected (monotonic seconds).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable, Generic, Optional, Protocol, TypeVar


class Queued(Protocol):
    """What the queue needs of a message: its device and its size."""

    device: str
    payload: bytes


M = TypeVar("M", bound=Queued)


@dataclass(frozen=True)
class Limits:
    """A device's allowance: RATE batches per second once BURST are spent, at most BACKLOG waiting; at most
    TOTAL_BYTES of payload held for all devices together."""

    rate: float
    burst: float
    backlog: int
    total_bytes: int


class _Device(Generic[M]):
    __slots__ = ("queue", "tokens", "refilled_at", "bytes", "shed")

    def __init__(self, burst: float, now: float):
        self.queue: deque[M] = deque()
        self.tokens = burst
        self.refilled_at = now
        self.bytes = 0
        self.shed = 0


class DeviceQueues(Generic[M]):
    """Per-device FIFO queues, served round-robin to devices that have tokens left."""

    def __init__(self, limits: Limits, clock: Callable[[], float]):
        self.limits = limits
        self.clock = clock
        self._devices: "OrderedDict[str, _Device[M]]" = OrderedDict()  # rotation order: the next to serve first
        self._lock = threading.Condition()
        self._closed = False
        self.held = 0  # messages waiting
        self.held_bytes = 0
        self.shed_total = 0

    # paho's network thread ------------------------------------------------------------------------------------

    def put(self, message: M) -> list[M]:
        """Queue MESSAGE; return the messages shed to make room (MESSAGE itself, or the newest of the device that
        holds the most bytes). The caller PUBACKs those to the broker without storing them."""
        with self._lock:
            now = self.clock()
            device = self._devices.get(message.device)
            if device is None:
                device = self._devices[message.device] = _Device(self.limits.burst, now)
            if len(device.queue) >= self.limits.backlog:
                return [self._count_shed(device, message)]
            shed = []
            size = len(message.payload)
            while self.held_bytes + size > self.limits.total_bytes:
                biggest_uid, biggest = max(self._devices.items(), key=lambda kv: kv[1].bytes)
                if biggest is device or not biggest.queue or biggest.bytes <= device.bytes + size:
                    shed.append(self._count_shed(device, message))
                    return shed
                dropped = biggest.queue.pop()
                self._forget(biggest, dropped)
                shed.append(self._count_shed(biggest, dropped))
            device.queue.append(message)
            device.bytes += size
            self.held += 1
            self.held_bytes += size
            self._lock.notify()
            return shed

    def _count_shed(self, device: _Device[M], message: M) -> M:
        device.shed += 1
        self.shed_total += 1
        return message

    def _forget(self, device: _Device[M], message: M) -> None:
        size = len(message.payload)
        device.bytes -= size
        self.held -= 1
        self.held_bytes -= size

    # the store thread -----------------------------------------------------------------------------------------

    def take(self, max_messages: int, max_bytes: int, timeout: Optional[float] = None) -> list[M]:
        """Up to MAX_MESSAGES (and about MAX_BYTES) messages, one per device in turn, from devices with tokens;
        waits up to TIMEOUT seconds for one (for ever when None). Empty when closed or timed out."""
        with self._lock:
            deadline = None if timeout is None else self.clock() + timeout
            while True:
                if self._closed:
                    return []
                now = self.clock()
                taken = self._take_ready(now, max_messages, max_bytes)
                if taken:
                    return taken
                wait = self._next_ready_in(now)
                if deadline is not None:
                    left = deadline - now
                    if left <= 0:
                        return []
                    wait = left if wait is None else min(wait, left)
                self._lock.wait(wait)

    def _refill(self, device: _Device[M], now: float) -> None:
        if device.tokens < self.limits.burst:
            device.tokens = min(self.limits.burst, device.tokens + (now - device.refilled_at) * self.limits.rate)
        device.refilled_at = now

    def _take_ready(self, now: float, max_messages: int, max_bytes: int) -> list[M]:
        taken: list[M] = []
        size = 0
        while len(taken) < max_messages and size < max_bytes:
            progressed = False
            for uid in list(self._devices):
                device = self._devices[uid]
                self._devices.move_to_end(uid)  # served (or passed over): it goes to the back of the rotation
                if not device.queue:
                    self._refill(device, now)
                    if device.shed == 0 and device.tokens >= self.limits.burst:
                        del self._devices[uid]  # nothing to remember: a full bucket is what a new device gets
                    continue
                self._refill(device, now)
                if device.tokens < 1:
                    continue
                device.tokens -= 1
                message = device.queue.popleft()
                self._forget(device, message)
                taken.append(message)
                size += len(message.payload)
                progressed = True
                if len(taken) >= max_messages or size >= max_bytes:
                    break
            if not progressed:
                break
        return taken

    def _next_ready_in(self, now: float) -> Optional[float]:
        """Seconds until a waiting device earns a token; None when nothing waits."""
        waits = [(1 - d.tokens) / self.limits.rate - (now - d.refilled_at)
                 for d in self._devices.values() if d.queue]
        if not waits:
            return None
        return max(0.001, min(waits))

    # lifecycle and reporting ----------------------------------------------------------------------------------

    def drain(self) -> list[M]:
        """Remove and return everything waiting (a reconnect: the broker sends unacked messages again)."""
        with self._lock:
            out = [m for d in self._devices.values() for m in d.queue]
            for device in self._devices.values():
                device.queue.clear()
                device.bytes = 0
            self.held = self.held_bytes = 0
            return out

    def close(self) -> None:
        """Wake the store thread for good: ``take`` returns nothing from now on."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    def shed_by_device(self) -> dict[str, int]:
        """How many messages each device had shed since it was last seen idle with a full bucket."""
        with self._lock:
            return {uid: d.shed for uid, d in self._devices.items() if d.shed}
