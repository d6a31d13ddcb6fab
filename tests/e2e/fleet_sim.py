"""A simulated fleet for ingest tests and benchmarks: many devices on one broker, each with its own credentials, that
publish event batches the way the agent does and send again whatever the server's ack does not cover.

Pieces:

- ``MosquittoProcess``: the broker with lessoncast's generated config, which can be stopped and started again on the
  same ports and persistence directory (a broker restart).
- ``start_ingest``: a ``lessoncast ingest`` process with a chosen client id.
- ``device_events``: realistic event bodies (``device_agent.events.play``: started, progress, completed).
- ``SimDevice``: one device's MQTT 5 session (clean_start False, session expiry), its batches and its acked point.
- ``plan_batches``: what a device sends, with duplicates, overlapping batches and reordering.
- ``Fleet``: connects the devices, sends their plans from one thread at a given rate, and resends unacked batches
  (after ``resend_after_s`` without ack progress, and at once after every reconnect), as the agent does.
"""

from __future__ import annotations

import json
import random
import selectors
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Optional, Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device_agent import events as agent_events
from playlists import topics
from playlists.manifest import format_utc

# ---------------------------------------------------------------------------------------------------------------
# Processes


class MosquittoProcess:
    """The instance's Mosquitto (lessoncast's generated config); ``restart`` keeps ports, config and persistence."""

    def __init__(self, services, log: Optional[Path] = None):
        from server.messaging.broker import mosquitto_executable, write_config

        self.services = services
        self.conf = write_config(services)
        self.exe = mosquitto_executable(services)
        assert self.exe, "these tests need Mosquitto (apt install mosquitto)"
        self.log_path = log or services.data / "broker" / "mosquitto.log"
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0

    def start(self, timeout: float = 10) -> "MosquittoProcess":
        handle = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=handle, stderr=subprocess.STDOUT)
        handle.close()
        self.starts += 1
        ports = (self.services.settings.mqtt_port, self.services.settings.mqtt_server_port)
        deadline = time.monotonic() + timeout
        for port in ports:
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise AssertionError(f"mosquitto did not start (port {port}):\n{self.log_tail()}")
                    time.sleep(0.02)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        """Stop the broker; SIGTERM lets it write its persistence file (sessions, queues, retained messages)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=timeout)
        self.proc = None

    def restart(self, down_s: float = 0.5) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def log_tail(self, size: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-size:] if self.log_path.exists() else ""


def lessoncast_env(services) -> dict[str, str]:
    """Environment for a lessoncast process on the same instance as SERVICES (data dir, database, ports)."""
    import os

    from tests.e2e.stack import VENV_BIN

    s = services.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("LESSONCAST_")}
    env.update({"LESSONCAST_DATA_DIR": str(services.data), "LESSONCAST_PORT": str(s.port),
                "LESSONCAST_MQTT_PORT": str(s.mqtt_port), "LESSONCAST_MQTT_SERVER_PORT": str(s.mqtt_server_port),
                "PATH": f"{VENV_BIN}:{env.get('PATH', '')}"})
    if s.database_url:
        env["LESSONCAST_DATABASE_URL"] = s.database_url
    return env


def start_ingest(env: dict[str, str], client_id: str, log: Path) -> subprocess.Popen:
    """Start ``lessoncast ingest --client-id CLIENT_ID`` in its own process group, appending to LOG."""
    from tests.e2e.stack import start

    return start(["ingest", "--client-id", client_id], env, log)


# ---------------------------------------------------------------------------------------------------------------
# Events and batches


@dataclass(frozen=True)
class Batch:
    """One publish: its range (first..last), the JSON body and the user properties the agent sets."""

    first: int
    last: int
    payload: bytes
    properties: tuple[tuple[str, str], ...]
    ids: tuple[str, ...]


def device_events(device: str, epoch: int, count: int, start: datetime, rng: random.Random) -> list[dict]:
    """COUNT play events as the agent records them (ids, seq 1..COUNT): plays of five events each (started,
    three progress, completed), one second apart from START, each event a real ``device_agent.events.play`` body."""
    out: list[dict] = []
    sha = "%064x" % rng.getrandbits(256)
    item = {"programme": "2026-Q4", "lesson": 41, "sha256": sha}
    play_id, started_at = "", ""
    for n in range(count):
        moment = start + timedelta(seconds=n)
        clock = SimpleNamespace(now=lambda m=moment: m)
        time_ = SimpleNamespace(clock=clock, offset=-1.5, now=lambda m=moment: m - timedelta(seconds=1.5))
        step = n % 5
        if step == 0:
            play_id, started_at = str(uuid.UUID(int=rng.getrandbits(128), version=4)), format_utc(moment)
        phase = ("started", "progress", "progress", "progress", "completed")[step]
        body = agent_events.play(time_, phase=phase, play_id=play_id, item=item, start=0.0, end=30.0 * step,
                                 volume=70, muted=False, trigger="schedule", started_at=started_at)
        out.append({**body, "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "seq": n + 1,
                    "epoch": epoch})
    return out


def make_batch(device: str, epoch: int, events: Sequence[dict]) -> Batch:
    """The publish the agent would make for EVENTS (consecutive, of one epoch)."""
    first, last = events[0]["seq"], events[-1].get("seq_last", events[-1]["seq"])
    body = json.dumps({"device": device, "epoch": epoch, "events": list(events)}, ensure_ascii=False,
                      separators=(",", ":")).encode()
    props = (("device", device), ("epoch", str(epoch)), ("seq", f"{first}-{last}"))
    return Batch(first, last, body, props, tuple(e["id"] for e in events))


def split_batches(device: str, epoch: int, events: Sequence[dict], size: int) -> list[Batch]:
    """EVENTS cut into consecutive batches of SIZE."""
    return [make_batch(device, epoch, events[i:i + size]) for i in range(0, len(events), size)]


def plan_batches(device: str, epoch: int, events: Sequence[dict], size: int, rng: random.Random, *,
                 duplicate_share: float = 0.1, overlap_share: float = 0.1) -> list[Batch]:
    """What a device publishes, in order: every batch once, about DUPLICATE_SHARE of them twice, and about
    OVERLAP_SHARE extra batches that straddle two neighbours (the second half of one and the first half of the next),
    all shuffled, so later sequences arrive before earlier ones."""
    batches = split_batches(device, epoch, events, size)
    plan = list(batches)
    plan += [b for b in batches if rng.random() < duplicate_share]
    for i in range(len(batches) - 1):
        if rng.random() < overlap_share:
            lo = i * size + size // 2
            plan.append(make_batch(device, epoch, events[lo:lo + size]))
    rng.shuffle(plan)
    if plan[0].first == 1 and len(plan) > 1:  # make sure this device's first publish is out of order
        plan.append(plan.pop(0))
    return plan


# ---------------------------------------------------------------------------------------------------------------
# Devices


class SimDevice:
    """A device's MQTT 5 session and delivery state: its batches, what it sent, and the highest ack it saw.

    Its paho client has no network thread: a ``Fleet`` drives every device's client from one selector loop (paho's
    external event loop), so a process holds as many devices as it has file descriptors (two sockets' worth fewer
    than paho's own loop, which also needs select() and its fds below 1024: about 340 clients per process).
    """

    def __init__(self, uid: str, password: str, port: int, epoch: int, events: list[dict], batches: list[Batch],
                 plan: list[Batch], *, keepalive: int = 30):
        self.uid, self.epoch, self.port = uid, epoch, port
        self.events, self.batches, self.plan = events, batches, plan
        self.total = max(b.last for b in batches)
        self.acked = 0
        self.ack_messages = 0
        self.ack_regressions = 0  # acks lower than one seen before (a stale retained copy, or an older ack late)
        self.connects = 0
        self.publishes = 0
        self.resends = 0
        self.sent: set[int] = set()  # indexes into self.batches published at least once
        self.last_progress = time.monotonic()
        self.resend_due = False
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.keepalive = keepalive
        # The fleet's loop: when to (re)connect, and until when a connection may wait for its CONNACK and SUBACK.
        self.connect_at: Optional[float] = None
        self.handshake_deadline: Optional[float] = None
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=uid, protocol=mqtt.MQTTv5)
        client.username_pw_set(uid, password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self.client = client

    # the fleet's loop thread
    def _on_connect(self, client, _userdata, _flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            return
        self.connects += 1
        # Like the agent: subscribe on every connect (the retained ack comes with it), and after a reconnect send
        # again whatever is unacked.
        client.subscribe(topics.ack(self.uid), qos=1)
        if self.connects > 1:
            self.resend_due = True
        self.connected.set()

    def _on_subscribe(self, *_args) -> None:
        self.handshake_deadline = None
        self.subscribed.set()

    def _on_disconnect(self, *_args) -> None:
        self.connected.clear()
        self.subscribed.clear()
        self.handshake_deadline = None
        self.connect_at = time.monotonic() + random.uniform(1.0, 2.0)

    def _on_message(self, _client, _userdata, msg) -> None:
        if msg.topic != topics.ack(self.uid):
            return
        ack = json.loads(msg.payload)
        self.ack_messages += 1
        if ack.get("epoch") != self.epoch:
            return
        if ack["seq"] > self.acked:  # an older copy arriving late never moves the acked point back
            self.acked = ack["seq"]
            self.last_progress = time.monotonic()
        elif ack["seq"] < self.acked:
            self.ack_regressions += 1

    def open(self, session_expiry_s: int = 3600) -> bool:
        """Connect now (a TCP connect to the local broker, then CONNECT); False if the broker refused the socket."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = session_expiry_s
        self.connect_at = None
        try:
            self.client.connect("127.0.0.1", self.port, keepalive=self.keepalive, clean_start=False,
                                properties=props)
        except OSError:
            self.connect_at = time.monotonic() + random.uniform(1.0, 2.0)  # the broker is down: try again soon
            return False
        self.handshake_deadline = time.monotonic() + HANDSHAKE_S
        return True

    def drop(self) -> None:
        """Hang up a connection stuck in its handshake; the disconnect callback schedules the next try."""
        sock = self.client.socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.client.loop_read()  # paho reads end-of-stream, closes the socket and calls _on_disconnect

    def publish(self, batch: Batch) -> None:
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = list(batch.properties)
        # While the broker is away paho keeps QoS 1 messages and sends them once it is back.
        self.client.publish(topics.events(self.uid), batch.payload, qos=1, properties=props)
        self.publishes += 1
        # A batch straddling two others counts as a send of both (for resending, as the agent would).
        self.sent.update(i for i, b in enumerate(self.batches) if b.first <= batch.last and batch.first <= b.last)

    def unacked_sent(self) -> list[Batch]:
        return [b for i, b in enumerate(self.batches) if i in self.sent and b.last > self.acked]

    def resend_unacked(self, window: int = 5) -> int:
        """Publish again the first WINDOW sent batches the ack does not cover (the agent's window); return how many."""
        again = self.unacked_sent()[:window]
        for batch in again:
            self.publish(batch)
        self.resends += len(again)
        self.last_progress = time.monotonic()
        self.resend_due = False
        return len(again)

    @property
    def done(self) -> bool:
        return self.acked >= self.total

    def close(self) -> None:
        """Disconnect cleanly and close every socket now (not when the garbage collector gets to the client)."""
        self.connect_at = None
        if self.client.socket() is not None:
            self.client.disconnect()
            self.client.loop_write()  # sends DISCONNECT; paho then closes the socket
        sock = self.client.socket()
        if sock is not None:
            sock.close()


HANDSHAKE_S = 20.0  # a connection without CONNACK and SUBACK after this long is dropped and tried again
TEND_EVERY_S = 0.1  # how often the loop looks for due connects and late handshakes
MISC_EVERY_S = 1.0  # how often every client's keepalive is looked after


@dataclass
class FleetStats:
    planned: int = 0
    sent: int = 0
    resent: int = 0
    started: float = field(default_factory=time.monotonic)


class Fleet:
    """Many SimDevices driven by one thread: a selector loop (epoll) over their sockets that connects them (at most
    ``handshakes`` at once, as hundreds of CONNECTs at one instant overwhelm a busy machine), sends their plans at a
    given rate, and resends unacked batches (after ``resend_after_s`` without ack progress, and after every
    reconnect), as the agent does. No thread per device, and no file descriptor limit but the process's own."""

    def __init__(self, devices: list[SimDevice], *, resend_after_s: float = 6.0, resend_window: int = 5,
                 rounds: int = 3, seed: int = 0, handshakes: int = 50):
        self.devices = devices
        self.resend_after_s = resend_after_s
        self.resend_window = resend_window
        self.handshakes = handshakes
        self.stats = FleetStats(planned=sum(len(d.plan) for d in devices))
        self._order = self._interleave(rounds, random.Random(seed))
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._selector = selectors.DefaultSelector()
        self._rate: Optional[float] = None
        self._began = 0.0
        self.plan_done = threading.Event()
        for d in devices:
            d.client.on_socket_open = lambda _c, dev, sock: self._selector.register(sock, selectors.EVENT_READ, dev)
            d.client.on_socket_close = lambda _c, _dev, sock: self._unwatch(sock)
            d.client.on_socket_register_write = lambda _c, dev, sock: self._want_write(sock, dev, True)
            d.client.on_socket_unregister_write = lambda _c, dev, sock: self._want_write(sock, dev, False)
            d.client.user_data_set(d)

    def _interleave(self, rounds: int, rng: random.Random) -> list[tuple[SimDevice, Batch]]:
        """Every device's plan cut into ROUNDS parts; round r sends part r of every device, devices shuffled."""
        order: list[tuple[SimDevice, Batch]] = []
        for r in range(rounds):
            part = []
            for d in self.devices:
                n = len(d.plan)
                part += [(d, b) for b in d.plan[n * r // rounds:n * (r + 1) // rounds]]
            rng.shuffle(part)
            order += part
        return order

    # the selector (called from paho, in the loop thread)
    def _unwatch(self, sock) -> None:
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            pass  # never registered, or already gone

    def _want_write(self, sock, device: SimDevice, on: bool) -> None:
        try:
            self._selector.modify(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if on else 0), device)
        except (KeyError, ValueError):
            pass  # the socket closed in between

    # the loop
    def _loop(self) -> None:
        next_tend = next_misc = next_resend = time.monotonic()
        sent = 0
        while not self._stop.is_set():
            for key, mask in self._selector.select(0.02):
                device: SimDevice = key.data
                if mask & selectors.EVENT_READ:
                    device.client.loop_read()
                if mask & selectors.EVENT_WRITE and device.client.socket() is not None:
                    device.client.loop_write()
            now = time.monotonic()
            if now >= next_tend:
                next_tend = now + TEND_EVERY_S
                self._tend(now)
            if now >= next_misc:
                next_misc = now + MISC_EVERY_S
                for d in self.devices:
                    if d.client.socket() is not None:
                        d.client.loop_misc()  # keepalive; notices a connection the broker dropped silently
            if self._rate is not None and sent < len(self._order):
                due = min(len(self._order), int((now - self._began) * self._rate) + 1)
                while sent < due:
                    device, batch = self._order[sent]
                    device.publish(batch)
                    sent += 1
                    self.stats.sent = sent
                if sent == len(self._order):
                    self.plan_done.set()
            if now >= next_resend:
                next_resend = now + 0.25
                for d in self.devices:
                    if d.done or not d.subscribed.is_set():
                        continue
                    if d.resend_due or (d.sent and now - d.last_progress > self.resend_after_s):
                        self.stats.resent += d.resend_unacked(self.resend_window)

    def _tend(self, now: float) -> None:
        """Hang up handshakes that take too long; connect due devices while fewer than HANDSHAKES are under way."""
        busy = 0
        for d in self.devices:
            if d.handshake_deadline is not None:
                if now > d.handshake_deadline:
                    d.drop()
                else:
                    busy += 1
        for d in self.devices:
            if busy >= self.handshakes:
                return
            if d.connect_at is not None and now >= d.connect_at and d.client.socket() is None:
                busy += d.open()

    # use (from the test's thread)
    def connect(self, timeout: float = 30) -> None:
        """Start the loop and connect every device; wait until each is connected and subscribed to its ack."""
        now = time.monotonic()
        for d in self.devices:
            d.connect_at = now
        self._thread = threading.Thread(target=self._loop, name="fleet-loop", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        for d in self.devices:
            if not d.subscribed.wait(max(0.0, deadline - time.monotonic())):
                raise AssertionError(f"device {d.uid} did not connect and subscribe within {timeout} s "
                                     f"({sum(x.subscribed.is_set() for x in self.devices)} of "
                                     f"{len(self.devices)} did)")

    @property
    def progress(self) -> float:
        """Share of the plan handed to the devices' clients so far."""
        return self.stats.sent / max(1, self.stats.planned)

    def start(self, rate: float) -> None:
        """Start sending the plans at RATE publishes per second (resends run from ``connect`` on)."""
        self._began = time.monotonic()
        self._rate = rate

    def wait_until_progress(self, share: float, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.progress < share:
            if time.monotonic() > deadline:
                raise AssertionError(f"the fleet sent only {self.progress:.0%} of its plan in {timeout} s")
            time.sleep(0.02)

    def not_done(self) -> list[SimDevice]:
        return [d for d in self.devices if not d.done]

    def wait_all_acked(self, timeout: float, describe: Callable[[list[SimDevice]], str] = lambda _: "") -> float:
        """Wait until every device saw an ack of its last sequence; return the seconds it took."""
        began = time.monotonic()
        deadline = began + timeout
        while self.not_done():
            if time.monotonic() > deadline:
                missing = self.not_done()
                detail = ", ".join(f"{d.uid} acked {d.acked}/{d.total} (connected={d.connected.is_set()} "
                                   f"subscribed={d.subscribed.is_set()} connects={d.connects} "
                                   f"publishes={d.publishes} resends={d.resends} acks_seen={d.ack_messages})"
                                   for d in missing[:20])
                raise AssertionError(f"{len(missing)} of {len(self.devices)} devices not fully acked after "
                                     f"{timeout} s: {detail}{' ...' if len(missing) > 20 else ''}\n"
                                     f"{describe(missing)}")
            time.sleep(0.1)
        return time.monotonic() - began

    def stop(self) -> None:
        """Stop the loop, disconnect every device and close every socket it opened."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for d in self.devices:
            d.close()
        self._selector.close()
