"""Many agents in one process: their MQTT clients driven from one selector loop, their syncs in a small thread pool.

Each simulated device is a real ``Agent`` over its own store, with its own credentials and MQTT session; only the
threads differ from a device. paho-mqtt 2 clients run without network threads: their sockets sit in one
``selectors`` selector, and the loop calls ``loop_read``, ``loop_write`` and ``loop_misc`` (paho's external event
loop). A sync (TUF refresh, manifest and media downloads) blocks on HTTP, so it runs in a thread pool whose size
bounds how many devices download at once. Every agent's ``step`` runs in the loop's thread, so an agent's state is
touched by one thread only, as on a device.
"""

from __future__ import annotations

import heapq
import logging
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Optional

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device_agent.agent import Agent
from device_agent.link import Link
from device_agent.sync import NETWORK, SyncResult

log = logging.getLogger(__name__)
CONNACK_TIMEOUT_S = 15.0
MISC_EVERY_S = 1.0  # how often every client's keepalive is looked after


class MuxLink(Link):
    """The agent's link without a network thread: the ``Mux`` connects it and moves its bytes."""

    def __init__(self, mux: "Mux", *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.mux = mux
        self.attempt = 0
        self.connect_at: Optional[float] = None  # real monotonic time of the next connect, None while not wanted
        self.connack_deadline: Optional[float] = None
        self.reachable: Callable[[], bool] = lambda: True  # False while the device is out of range (a boat)
        self.client.on_disconnect = self._lost
        self.client.on_socket_open = lambda _c, _u, sock: mux.watch(self, sock)
        self.client.on_socket_close = lambda _c, _u, sock: mux.unwatch(sock)
        self.client.on_socket_register_write = lambda _c, _u, sock: mux.want_write(sock, True)
        self.client.on_socket_unregister_write = lambda _c, _u, sock: mux.want_write(sock, False)

    def start(self) -> None:
        """Connect soon (the mux spreads first connects over its ``spread_s``)."""
        self._stop.clear()
        self.connect_at = time.monotonic() + self.rng.uniform(0, self.mux.spread_s)

    def stop(self) -> None:
        """Disconnect cleanly (no last will) and stay disconnected."""
        self._stop.set()
        self.connect_at = None
        if self.client.socket() is not None:
            self.client.disconnect()
            self.client.loop_write()

    def drop(self) -> None:
        """Lose the connection without a goodbye (out of range, battery out); the broker publishes the will."""
        sock = self.client.socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already broken: the read below reports it all the same
            self.client.loop_read()  # paho reads end-of-stream, closes the socket and reports the loss
        self.connected.clear()

    def _lost(self, client, userdata, flags, reason_code, properties) -> None:
        self._on_disconnect(client, userdata, flags, reason_code, properties)
        self.connack_deadline = None
        if not self._stop.is_set():
            self.attempt += 1
            self.connect_at = time.monotonic() + self._delay(self.attempt)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connack_deadline = None
        super()._on_connect(client, userdata, flags, reason_code, properties)
        if reason_code.is_failure:
            self.attempt += 1
            self.connect_at = time.monotonic() + self._delay(self.attempt)
        else:
            self.attempt = 0

    def tend(self, now: float) -> None:
        """Connect when due; give up on a connection whose CONNACK is late; keepalive."""
        if self.connack_deadline is not None and now > self.connack_deadline:
            self.connack_deadline = None
            self.drop()
            return
        if self.client.socket() is not None:
            if not self.reachable():
                self.drop()
                return
            self.client.loop_misc()
            return
        if self.connect_at is None or now < self.connect_at:
            return
        if not self.reachable():
            self.connect_at = now + 5.0
            return
        m = self.creds["mqtt"]
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.options.session_expiry_s
        self.connect_at = None
        try:
            self.client.connect(m["host"], int(m["port"]), keepalive=self.options.keepalive_s, clean_start=False,
                                properties=props)
            self.connack_deadline = now + CONNACK_TIMEOUT_S
        except (OSError, ssl.SSLError) as exc:
            log.info("%s cannot reach the broker at %s:%s: %s", self.device, m["host"], m["port"], exc)
            self.attempt += 1
            self.connect_at = now + self._delay(self.attempt)


@dataclass(order=True)
class _Due:
    at: float
    n: int
    device: "SimulatedDevice" = field(compare=False)


class SimulatedDevice:
    """One agent in the mux, with its hardware and the behaviour that acts on it."""

    def __init__(self, agent: Agent, behaviour=None):
        self.agent = agent
        self.behaviour = behaviour
        self.offline_until = 0.0  # device-clock monotonic time until which the device has no network
        self.syncs = 0
        self.steps = 0  # rounds of its agent so far
        self.downloaded = 0

    @property
    def uid(self) -> str:
        return self.agent.device

    def reachable(self) -> bool:
        """Whether the device has a network now."""
        return self.agent.hw.clock.monotonic() >= self.offline_until


class Mux:
    """Runs SimulatedDevices: one selector loop for their MQTT, a pool of SYNC_THREADS for their downloads."""

    def __init__(self, *, speed: float = 1.0, tick_s: float = 10.0, sync_threads: int = 8, spread_s: float = 5.0):
        self.speed = speed
        self.tick_s = tick_s  # device-clock seconds between two rounds of an agent with nothing to wake it
        self.spread_s = spread_s
        self.devices: list[SimulatedDevice] = []
        self.selector = selectors.DefaultSelector()
        self.pool = ThreadPoolExecutor(max_workers=sync_threads, thread_name_prefix="fleet-sync")
        self._links: dict[int, MuxLink] = {}
        self._masks: dict[int, int] = {}
        self._woken: deque = deque()  # devices to step at once (thread-safe appends from the pool)
        self._due: list[_Due] = []
        self._n = 0
        self._by_link: dict[int, SimulatedDevice] = {}
        self.stop_event = threading.Event()
        self.rounds = 0
        self.loop_seconds = 0.0  # real seconds the loop spent working (not waiting in select)

    # -- building agents -----------------------------------------------------------------------------------------
    def link_factory(self, *args, **kwargs) -> MuxLink:
        """For ``Agent(link_factory=...)``: a link this mux drives."""
        return MuxLink(self, *args, **kwargs)

    def spawn_for(self, holder: list) -> Callable:
        """For ``Agent(spawn=...)``: run a sync in the pool; HOLDER[0] is the device, set once it exists."""
        def spawn(fn, *args):
            device: SimulatedDevice = holder[0]
            device.syncs += 1
            if not device.reachable():
                # No network: the sync fails at once, as it would after its first request timed out.
                device.agent.inbox.put(("synced", None, (SyncResult("error", reason=NETWORK + "no network (offline)",
                                                                    problem="network"), None)))
                self._woken.append(device)
                return True
            future = self.pool.submit(fn, *args)
            future.add_done_callback(lambda _f: self._woken.append(device))
            return future
        return spawn

    def add(self, device: SimulatedDevice) -> None:
        """Start DEVICE's agent (recover, connect soon, first sync) and schedule its rounds."""
        self.devices.append(device)
        link: MuxLink = device.agent.link  # type: ignore[assignment]
        link.reachable = device.reachable
        self._by_link[id(link)] = device
        device.agent.start()
        self._schedule(device, time.monotonic() + self.tick_s / self.speed * (len(self.devices) % 97) / 97)

    def wake(self, device: SimulatedDevice) -> None:
        """Step DEVICE's agent at the loop's next turn (safe from any thread): after its clock jumped, say."""
        self._woken.append(device)

    def _schedule(self, device: SimulatedDevice, at: float) -> None:
        self._n += 1
        heapq.heappush(self._due, _Due(at, self._n, device))

    # -- the selector (called from paho inside the loop thread) -------------------------------------------------------
    def watch(self, link: MuxLink, sock) -> None:
        fd = sock.fileno()
        self._links[fd] = link
        self._masks[fd] = selectors.EVENT_READ
        self.selector.register(sock, selectors.EVENT_READ, link)

    def unwatch(self, sock) -> None:
        fd = sock.fileno()
        if fd in self._links:
            del self._links[fd], self._masks[fd]
            try:
                self.selector.unregister(sock)
            except (KeyError, ValueError):
                pass  # already gone with its socket

    def want_write(self, sock, on: bool) -> None:
        fd = sock.fileno()
        if fd not in self._masks:
            return
        mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if on else 0)
        if mask != self._masks[fd]:
            self._masks[fd] = mask
            self.selector.modify(sock, mask, self._links[fd])

    # -- the loop ------------------------------------------------------------------------------------------------------
    def run(self, until: Optional[Callable[[], bool]] = None, on_round: Optional[Callable[[], None]] = None) -> None:
        """Drive every device until STOP_EVENT is set or UNTIL() is true; ON_ROUND runs about once a second."""
        next_misc = time.monotonic()
        while not self.stop_event.is_set():
            now = time.monotonic()
            timeout = 0.2
            if self._due:
                timeout = max(0.0, min(timeout, self._due[0].at - now))
            if self._woken:
                timeout = 0.0
            events = self.selector.select(timeout)
            began = time.monotonic()
            for key, mask in events:
                link: MuxLink = key.data
                if mask & selectors.EVENT_READ:
                    link.client.loop_read()
                if mask & selectors.EVENT_WRITE and link.client.socket() is not None:
                    link.client.loop_write()
                self._woken.append(self._by_link[id(link)])
            now = time.monotonic()
            if now >= next_misc:
                next_misc = now + MISC_EVERY_S
                for device in self.devices:
                    device.agent.link.tend(now)  # type: ignore[attr-defined]
                if on_round is not None:
                    on_round()
                if until is not None and until():
                    break
            seen: set[int] = set()
            while self._woken:
                device = self._woken.popleft()
                if id(device) not in seen:
                    seen.add(id(device))
                    self._step(device)
            while self._due and self._due[0].at <= now:
                entry = heapq.heappop(self._due)
                if id(entry.device) not in seen:
                    self._step(entry.device)
                self._schedule(entry.device, now + self.tick_s / self.speed)
            self.rounds += 1
            self.loop_seconds += time.monotonic() - began

    def _step(self, device: SimulatedDevice) -> None:
        agent = device.agent
        if device.behaviour is not None:
            device.behaviour.act(device)
        device.steps += 1
        try:
            agent.step()
        except Exception:  # one device's crash is reported and the fleet goes on, as a watchdog would restart it
            log.exception("device %s: the agent's round failed", device.uid)
        if agent._reboot_requested:
            agent._reboot_requested = False
        if agent.link.client.want_write():
            agent.link.client.loop_write()

    def close(self) -> None:
        """Stop every agent cleanly (outboxes closed, clean disconnects) and the pool."""
        self.stop_event.set()
        self.pool.shutdown(wait=True, cancel_futures=True)
        for device in self.devices:
            try:
                device.agent.close()
            except Exception:
                log.exception("device %s did not close cleanly", device.uid)
        self.selector.close()
