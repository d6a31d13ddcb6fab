"""The agent's MQTT link (paho-mqtt 2, MQTT 5): a persistent session, a last will, and reconnects with jitter.

The link runs its own network thread. After a broker restart, 6,000 devices must not come back in the same second,
so each reconnect waits a random time between zero and an exponentially growing cap ("full jitter").
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from playlists import topics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LinkOptions:
    """Session and reconnect settings."""

    session_expiry_s: int = 90 * 86400  # a boat may be out for weeks; its queued acks and commands wait for it
    keepalive_s: int = 60
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 300.0


class Link:
    """Connects as the device, keeps the subscriptions, and hands every message to ON_MESSAGE (topic, payload)."""

    def __init__(self, creds: dict, on_message: Callable[[str, bytes, Optional[Properties]], None],
                 *, options: LinkOptions = LinkOptions(), on_connect: Callable[[], None] = lambda: None,
                 rng: Optional[random.Random] = None):
        self.creds = creds
        self.device = creds["device"]
        self.options = options
        self.on_message = on_message
        self.on_connect_cb = on_connect
        self.rng = rng or random.Random()
        self.channel: Optional[str] = None
        self.connected = threading.Event()
        self.refused: Optional[str] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self.client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        m = self.creds["mqtt"]
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.device, protocol=mqtt.MQTTv5)
        client.username_pw_set(m["username"], m["password"])
        if m.get("tls"):
            client.tls_set(ca_certs=m.get("ca_file"), cert_reqs=ssl.CERT_REQUIRED)
        client.will_set(topics.status(self.device), b'{"online":false}', qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = lambda _c, _u, msg: self.on_message(msg.topic, msg.payload, msg.properties)
        return client

    # -- callbacks (paho's thread) -----------------------------------------------------------------------------
    def _on_connect(self, client, _userdata, _flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            self.refused = str(reason_code)
            log.warning("broker refused the connection: %s", reason_code)
            return
        self.refused = None
        subs = [(topics.config(self.device), 1), (topics.cmd(self.device), 1), (topics.ack(self.device), 1)]
        if self.channel:
            subs.append((topics.notify(self.channel), 1))
        client.subscribe(subs)
        self.connected.set()
        self.on_connect_cb()

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        self.connected.clear()
        log.info("disconnected from the broker: %s", reason_code)

    # -- the network thread ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start connecting in the background."""
        self._thread = threading.Thread(target=self._run, name="mqtt-link", daemon=True)
        self._thread.start()

    def _delay(self, attempt: int) -> float:
        cap = min(self.options.backoff_cap_s, self.options.backoff_base_s * (2 ** min(attempt, 20)))
        return self.rng.uniform(0, cap)

    def _run(self) -> None:
        m = self.creds["mqtt"]
        attempt = 0
        while not self._stop.is_set():
            if self.connected.is_set():
                if self.client.loop(timeout=0.5) != mqtt.MQTT_ERR_SUCCESS:
                    self.connected.clear()  # connection lost; on_disconnect has logged why
                attempt = 0
                continue
            if attempt and self._stop.wait(self._delay(attempt)):
                break
            attempt += 1
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.options.session_expiry_s
            try:
                self.client.connect(m["host"], int(m["port"]), keepalive=self.options.keepalive_s,
                                    clean_start=False, properties=props)
            except (OSError, ssl.SSLError) as exc:
                log.info("cannot reach the broker at %s:%s: %s", m["host"], m["port"], exc)
                continue
            # Wait for the CONNACK on this connection before deciding anything; connecting again before it arrives
            # would only take over our own half-open session.
            deadline = time.monotonic() + 15
            while not self.connected.is_set() and not self._stop.is_set() and time.monotonic() < deadline:
                if self.client.loop(timeout=0.2) != mqtt.MQTT_ERR_SUCCESS:
                    break
            if not self.connected.is_set():
                log.info("no answer from the broker at %s:%s; trying again", m["host"], m["port"])
                self.client.disconnect()
        try:
            self.client.disconnect()
        except Exception:  # already gone; nothing to tell anyone
            log.debug("disconnect at stop failed", exc_info=True)

    def stop(self) -> None:
        """Disconnect cleanly (no last will) and stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- use ------------------------------------------------------------------------------------------------------------
    def follow_channel(self, channel: str) -> None:
        """Subscribe to CHANNEL's notify topic instead of the previous one."""
        with self._lock:
            old, self.channel = self.channel, channel
        if old == channel or not self.connected.is_set():
            return
        if old:
            self.client.unsubscribe(topics.notify(old))
        self.client.subscribe(topics.notify(channel), qos=1)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False,
                user_properties: Optional[list[tuple[str, str]]] = None) -> bool:
        """Queue a QoS 1 publish; False when not connected (the caller keeps it and tries later)."""
        if not self.connected.is_set():
            return False
        props = None
        if user_properties:
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = user_properties
        info = self.client.publish(topic, payload, qos=1, retain=retain, properties=props)
        return info.rc == mqtt.MQTT_ERR_SUCCESS
