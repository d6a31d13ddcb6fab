"""A small paho-mqtt 2 test client that records what arrives, for tests against a real Mosquitto."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Optional

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from server.messaging.hang_up import hang_up


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool


@dataclass
class MqttProbe:
    """Connects with MQTT 5, records the CONNACK reason, every message and whether the broker dropped it."""

    port: int
    username: Optional[str]
    password: Optional[str]
    client_id: str = ""
    clean_start: bool = True
    session_expiry: int = 0
    messages: list[Received] = field(default_factory=list)

    def __post_init__(self):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        if self.username is not None:
            self.client.username_pw_set(self.username, self.password)
        self.reason = None
        self.session_present = False
        self.disconnected = threading.Event()
        self._connack = threading.Event()
        self._subacks: dict[int, list] = {}
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, msg: self.messages.append(Received(msg.topic, msg.payload,
                                                                                   bool(msg.retain)))
        self.client.on_disconnect = lambda *_a: self.disconnected.set()
        self.client.on_subscribe = self._on_subscribe

    def _on_connect(self, _c, _u, flags, reason_code, _props):
        self.reason = reason_code
        self.session_present = bool(flags.session_present)
        self._connack.set()

    def _on_subscribe(self, _c, _u, mid, reason_codes, _props):
        self._subacks[mid] = reason_codes

    def connect(self, timeout: float = 10) -> "MqttProbe":
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry
        self.client.connect("127.0.0.1", self.port, clean_start=self.clean_start, properties=props)
        self.client.loop_start()
        self._connack.wait(timeout)
        return self

    @property
    def accepted(self) -> bool:
        return self.reason is not None and not self.reason.is_failure

    def subscribe(self, topic: str, timeout: float = 5) -> None:
        _rc, mid = self.client.subscribe(topic, qos=1)
        deadline = time.monotonic() + timeout
        while mid not in self._subacks and time.monotonic() < deadline:
            time.sleep(0.02)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5)

    def topics(self) -> set[str]:
        return {m.topic for m in self.messages}

    def wait_for(self, topic: str, timeout: float = 10) -> Received:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msg in self.messages:
                if msg.topic == topic:
                    return msg
            time.sleep(0.02)
        raise AssertionError(f"{self.username}: nothing arrived on {topic} within {timeout} s; got {self.topics()}")

    def wait_for_payload(self, topic: str, predicate, timeout: float = 10) -> Received:
        """The first message on TOPIC whose payload satisfies PREDICATE, waiting up to TIMEOUT seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msg in list(self.messages):
                if msg.topic == topic and predicate(msg.payload):
                    return msg
            time.sleep(0.02)
        raise AssertionError(f"{self.username}: no matching message on {topic} within {timeout} s: "
                             f"{[m.payload[:200] for m in self.messages if m.topic == topic]}")

    def close(self) -> None:
        hang_up(self.client)
