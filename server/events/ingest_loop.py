"""The ingest's MQTT loop: a shared, persistent subscription to every device's events and status, a worker thread
that stores each message (``server.events.ingest``) before acknowledging it to the broker, and the ingest's heartbeat.
"""

from __future__ import annotations

import gc
import logging
import signal
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Optional

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from playlists import topics
from server import models  # noqa: F401  every model, registered before any thread queries (a model module
# imported lazily in one thread while another configures the mappers breaks them for the process's life)
from server.attendance.fold import CACHE_TTL_S, Lookups
from server.events import ingest
from server.events.ingest_queue import DeviceQueues, Limits
from server.health.beats import Beater, clock_from_monotonic
from server.messaging import retained
from server.messaging.broker import share_group
from server.messaging.hang_up import hang_up
from server.messaging.mqtt_link import BrokerAddress, BrokerUnavailable, ServerLink

log = logging.getLogger(__name__)

BEAT_S = 5.0
# The flusher thread sends acks as soon as a commit made some, and looks at least this often: acks must never wait
# for the queue to run empty (with a backlog it never does, and devices would resend what is already stored).
ACK_FLUSH_S = 0.5
# Group commit: at most this many batches, or this many payload bytes, in one transaction. A batch's ack waits for
# its whole group, and a device keeps only a few batches unacknowledged (the agent 5), so a larger group holds every
# device's next batches back longer: at 50 the store threads waited for work a third of the time on a quiet
# machine, at 20 they stored about a fifth more events a second (BENCHMARKS.md, event ingest).
GROUP_BATCHES = 20
GROUP_BYTES = 2 * 1024 * 1024
# MQTT 5 Receive Maximum (the largest allowed): the broker sends ingest every message at once instead of 20 at a
# time (Mosquitto's default without it), so its queue for ingest never reaches max_queued_messages and drops
# some, and ingest, not the broker's FIFO, decides which device is served next (server.events.ingest_queue).
RECEIVE_MAXIMUM = 65_535
# A device whose messages are shed is named in the log at most this often.
SHED_LOG_S = 30.0
# Long enough to cover an ingest restart or a server reboot; a decommissioned ingest's session (and the messages
# the broker queued for it) goes away after a day, and the devices send those events again anyway.
SESSION_EXPIRY_S = 86_400
GC_YOUNG = 10_000


class _BurstReadingClient(mqtt.Client):
    """paho's client, reading every packet that has arrived per wake-up instead of one.

    paho's loop reads one packet per ``select()`` and then runs its write and housekeeping steps: about 120 µs of CPU
    per message, so during a flood ingest read more slowly than one paho client can publish, and every device's
    messages queued at the broker behind the flood. Reading what is there first takes about half that. This leans on
    paho internals (``_packet_read``, ``_loop_rc_handle``, checked against paho-mqtt 2.1 and 2.2); without them it
    reads as paho does.
    """

    READ_BURST = 1000

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        read, handle = getattr(self, "_packet_read", None), getattr(self, "_loop_rc_handle", None)
        if read is None or handle is None:
            return super().loop_read(max_packets)
        for _ in range(self.READ_BURST):
            if getattr(self, "_sock", None) is None:
                return mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = read()
            if rc == mqtt.MQTTErrorCode.MQTT_ERR_AGAIN:
                break
            if rc > 0:
                return handle(rc)
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS


@dataclass(frozen=True)
class _Message:
    kind: str
    device: str
    properties: dict[str, str]
    payload: bytes
    mid: int
    qos: int
    generation: int
    received_at: datetime
    retained: bool = False


class Ingest:
    """Subscribes (shared, persistent session) to every device's events and status, stores them and acks.

    paho's network thread only queues messages; one worker thread does the database work and then sends the
    broker its PUBACK (manual ack), so a message this process received but did not handle before it stopped is
    delivered again when the session resumes.

    Mosquitto 2.0 deals a shared subscription's messages round-robin to every member, including members whose
    persistent session is offline: with several ingest processes, a stopped one's share waits in its session until
    it returns (or the session expires and the devices send those events again).
    """

    def __init__(self, services, *, client_id: Optional[str] = None, group: Optional[str] = None,
                 session_expiry_s: int = SESSION_EXPIRY_S, beat_s: float = BEAT_S):
        self.services = services
        self.address = BrokerAddress.from_services(services)
        # Stable across restarts, so the broker resumes this process's session (and what it queued meanwhile).
        self.client_id = client_id or f"lessoncast-ingest-{socket.gethostname()}"
        group = group or share_group(services)
        self.filters = [topics.shared(group, topics.all_events()), topics.shared(group, topics.all_status())]
        self.session_expiry_s = session_expiry_s
        self.beat_s = beat_s
        self.subscribed = threading.Event()
        self._stop = threading.Event()
        st = services.settings
        self._queue: DeviceQueues[_Message] = DeviceQueues(
            Limits(rate=st.ingest_device_rate, burst=st.ingest_device_burst, backlog=st.ingest_device_backlog,
                   total_bytes=st.ingest_backlog_bytes), time.monotonic)
        self._shed_logged: dict[str, float] = {}
        self.busy_since: Optional[float] = None  # monotonic time the store thread started on what it holds
        self.stored_at: Optional[float] = None  # monotonic time of its last finished group
        self.in_hand = 0  # messages the store thread is working on
        self._beater = Beater(services, "ingest", self.beat_state, beat_s)
        self._generation = 0
        self._pending_subs: set[int] = set()
        self._link: Optional[ServerLink] = None
        self._threads: list[threading.Thread] = []
        self._wake_flusher = threading.Event()
        self._client = self._make_client()

        # Devices, durations and programme windows for attendance, looked up once per CACHE_TTL_S, not per batch.
        self.lookups = Lookups(ttl_s=CACHE_TTL_S)

    def _make_client(self) -> mqtt.Client:
        client = _BurstReadingClient(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                     protocol=mqtt.MQTTv5, manual_ack=True)
        if self.address.username:
            client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            import ssl

            client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    # paho's network thread ------------------------------------------------------------------------------------

    def _on_connect(self, client, _userdata, flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            log.error("the broker at %s:%d refused ingest (%s); trying again", self.address.host, self.address.port,
                      reason_code)
            return
        self._generation += 1
        log.info("ingest connected to %s:%d as %s (session %s)", self.address.host, self.address.port,
                 self.client_id, "resumed" if flags.session_present else "new")
        # Subscribing again on a resumed session covers a session the broker lost. Retained statuses come only
        # with a new subscription: a restart does not make the broker resend every device's status.
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        _rc, mid = client.subscribe([(f, options) for f in self.filters])
        self._pending_subs.add(mid)
        # What the last connection delivered and nothing stored yet comes again (unacked, in the session).
        self._queue.drain()
        self._wake_flusher.set()

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        self.subscribed.clear()
        if not self._stop.is_set():
            log.warning("ingest lost the broker (%s); reconnecting with back-off", reason_code)

    def _on_subscribe(self, _client, _userdata, mid, reason_codes, _properties) -> None:
        self._pending_subs.discard(mid)
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            log.error("the broker refused ingest's subscriptions %s: %s", self.filters, refused)
        elif not self._pending_subs:
            self.subscribed.set()

    def _on_message(self, client, _userdata, msg) -> None:
        try:
            parsed = topics.parse(msg.topic)
        except ValueError as exc:
            log.warning("ignored a message on %s: %s", msg.topic, exc)
            client.ack(msg.mid, msg.qos)
            return
        props = dict(getattr(msg.properties, "UserProperty", None) or [])
        # The retain flag is set only on a stored copy the broker sends because of a new subscription (Mosquitto
        # 2.0 sends them to shared subscriptions too); live messages, and those queued for this session, lack it.
        shed = self._queue.put(_Message(parsed.kind, parsed.id, props, bytes(msg.payload), msg.mid, msg.qos,
                                        self._generation, self.services.clock(), bool(msg.retain)))
        for message in shed:
            # Not stored, and not acknowledged to the device: it sends them again (PROTOCOL §5.4). The broker's
            # PUBACK only frees the message; keeping it would fill the broker's queue for ingest instead.
            if message.generation == self._generation:
                client.ack(message.mid, message.qos)
            self._log_shed(message)

    def _log_shed(self, message: _Message) -> None:
        now = time.monotonic()
        if now - self._shed_logged.get(message.device, -SHED_LOG_S) < SHED_LOG_S:
            return
        self._shed_logged[message.device] = now
        log.warning("%s sends faster than its allowance (%s batches/s, burst %s, backlog %s): %d of its messages "
                    "not taken so far; it is not acked for them and sends them again later",
                    message.device, self._queue.limits.rate, self._queue.limits.burst, self._queue.limits.backlog,
                    self._queue.shed_by_device().get(message.device, 0))

    # the worker thread ----------------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            taken = self._queue.take(GROUP_BATCHES, GROUP_BYTES)
            if not taken:  # closed
                return
            self.busy_since = self.busy_since or time.monotonic()
            self.in_hand = len(taken)
            # Group commit: the events batches taken (one per device in turn) are stored in one transaction.
            events = [m for m in taken if m.kind == "events"]
            groups = ([events] if events else []) + [[m] for m in taken if m.kind != "events"]
            for group in groups:
                try:
                    self._handle(group)
                except Exception:  # logged with its traceback; the device sends unacked events again
                    log.exception("ingest could not handle %d %s message(s) of %s", len(group), group[0].kind,
                                  group[0].device)
                for done in group:
                    if done.generation == self._generation:
                        # A PUBACK for a message of an earlier connection would name a packet id the broker reuses.
                        self._client.ack(done.mid, done.qos)
            self.stored_at = time.monotonic()
            self.in_hand = 0
            if not self._queue.held:
                self.busy_since = None
            self._wake_flusher.set()

    def _handle(self, group: list[_Message]) -> None:
        item = group[0]
        if item.kind == "events":
            try:
                ingest.store_batches(self.services, [ingest.Incoming(m.device, m.properties, m.payload,
                                                                     m.received_at) for m in group], self.lookups)
                return
            except SQLAlchemyError as exc:
                if len(group) > 1:
                    log.warning("storing %d batches together failed (%s); storing them one by one", len(group),
                                exc)
            except Exception as exc:  # a bug one batch trips over must not hold back the batches grouped with it
                log.warning("storing %d batch(es) failed (%r); storing them one by one", len(group), exc)
            for m in group:
                try:
                    ingest.store_batch(self.services, m.device, m.properties, m.payload, m.received_at, self.lookups)
                except OperationalError:
                    log.exception("events of %s (epoch %s, seq %s) not stored: the database is unavailable or "
                                  "busy; not acked, the device sends them again", m.device,
                                  m.properties.get("epoch"), m.properties.get("seq"))
                except Exception as exc:  # this batch cannot be stored: a poison batch must not block the device
                    log.exception("events of %s (epoch %s, seq %s) cannot be stored; quarantining the batch",
                                  m.device, m.properties.get("epoch"), m.properties.get("seq"))
                    try:
                        ingest.quarantine_batch(self.services, m.device, m.properties, m.payload, m.received_at,
                                                f"could not be stored: {exc!r}"[:1000])
                    except SQLAlchemyError:
                        log.exception("quarantining it failed too; not acked, the device sends it again")
        elif item.kind == "status":
            if ingest.store_status(self.services, item.device, item.payload, item.received_at,
                                   retained_copy=item.retained):
                self._advance_rollouts(item.device)

    def _advance_rollouts(self, device: str) -> None:
        """A device of a running agent rollout reported: its stage may have passed a threshold."""
        from server.agent_releases import rollouts

        try:
            rollouts.evaluate(self.services, device)
        except Exception:  # the status is stored; the worker's next round applies the thresholds
            log.exception("agent rollout thresholds not applied after %s reported", device)

    def _flusher(self) -> None:
        """Send the acks (retained messages) the worker's commits made, in their own thread: the worker goes on
        storing while the broker acknowledges them. At least every ACK_FLUSH_S while there is work."""
        while True:
            self._wake_flusher.wait(ACK_FLUSH_S)
            if not self._wake_flusher.is_set():
                continue
            self._wake_flusher.clear()
            self._flush()  # once more when stopping, for the worker's last commits
            if self._stop.is_set():
                return

    def _flush(self) -> None:
        try:
            if self._link is None:
                self._link = ServerLink(self.address, "ingest-acks").connect()
            retained.flush(self.services, self._link)
        except (BrokerUnavailable, RuntimeError, ValueError, OSError, SQLAlchemyError) as exc:
            log.warning("acks wait for the broker (%s); sent on reconnect or by the worker", exc)
            self._close_link()

    def _close_link(self) -> None:
        if self._link is not None:
            link, self._link = self._link, None
            link.close()

    def beat_state(self) -> dict:
        """What the heartbeat says about this process: idle or busy, batches waiting (and in hand), messages shed,
        and when the store thread last finished a group (so /healthz tells busy from stalled)."""
        now = time.monotonic()
        waiting = self._queue.held + self.in_hand
        return {"state": "busy" if waiting or self.busy_since is not None else "idle", "waiting": waiting,
                "shed": self._queue.shed_total,
                "busy_since": clock_from_monotonic(self.services, self.busy_since, now),
                "stored_at": clock_from_monotonic(self.services, self.stored_at, now)}

    # lifecycle --------------------------------------------------------------------------------------------------

    def start(self) -> "Ingest":
        """Start connecting (retried with back-off until the broker answers), the worker and the heartbeat."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        self._client.connect_async(self.address.host, self.address.port, keepalive=30, clean_start=False,
                                   properties=props)
        self._client.loop_start()
        self._threads = [threading.Thread(target=self._work, name="ingest-store", daemon=True),
                         threading.Thread(target=self._flusher, name="ingest-acks", daemon=True)]
        for thread in self._threads:
            thread.start()
        self._beater.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the message in hand, then disconnect; what is still queued is delivered again next session."""
        self._stop.set()
        self._queue.drain()  # what the worker has not started stays unacked, so the broker keeps it for the session
        self._queue.close()
        self._wake_flusher.set()
        for thread in self._threads:
            thread.join(timeout)
        self._beater.stop()
        hang_up(self._client)
        self._close_link()

    def run(self) -> None:
        """Run until SIGTERM or SIGINT."""

        def request_stop(signum, _frame) -> None:
            log.info("received %s; stopping", signal.Signals(signum).name)
            self._stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        # Parsing a batch allocates a few objects per event, so the cyclic garbage collector runs often, and its
        # older-generation passes walked every object made at start (modules, SQLAlchemy's metadata, the models):
        # a sixth of an event's CPU. In the ingest's own process those are frozen out of the passes, and the
        # youngest generation is collected every 10,000 allocations instead of 700.
        gc.freeze()
        gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])
        self.start()
        try:
            while not self._stop.wait(1.0):
                pass
        finally:
            self.stop()
