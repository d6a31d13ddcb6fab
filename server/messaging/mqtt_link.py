"""The server's MQTT client (paho-mqtt 2, MQTT 5): publish retained config and notify messages, and commands.

lessoncast's processes connect to the broker's server listener as one account with distinct client ids, so web
workers, job workers and ingest processes never take over each other's sessions.
"""

from __future__ import annotations

import os
import secrets
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Optional
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from server.messaging.broker import SERVER_USER, server_password
from server.messaging.hang_up import hang_up


class BrokerUnavailable(RuntimeError):
    """The broker could not be reached or refused the server's account."""


@dataclass(frozen=True)
class BrokerAddress:
    """Where and as whom lessoncast's own processes connect."""

    host: str
    port: int
    username: str
    password: str
    tls: bool = False

    @classmethod
    def from_services(cls, services) -> "BrokerAddress":
        """The external broker of LESSONCAST_MQTT_URL, or the server listener of the broker lessoncast runs."""
        s = services.settings
        if s.mqtt_url:
            url = urlsplit(s.mqtt_url)
            tls = url.scheme == "mqtts"
            return cls(url.hostname or "127.0.0.1", url.port or (8883 if tls else 1883),
                       unquote(url.username or ""), unquote(url.password or ""), tls)
        return cls(s.mqtt_server_host, s.mqtt_server_port, SERVER_USER, server_password(services))


class ServerLink:
    """One MQTT 5 connection that publishes at QoS 1 and waits for the broker's PUBACK."""

    def __init__(self, address: BrokerAddress, role: str, timeout: float = 10.0):
        self.address = address
        self.timeout = timeout
        client_id = f"lessoncast-{role}-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if address.username:
            self._client.username_pw_set(address.username, address.password)
        if address.tls:
            self._client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        self._connected = threading.Event()
        self._reason: Optional[str] = None
        self._client.on_connect = self._on_connect

    def _on_connect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        self._reason = str(reason_code)
        if not reason_code.is_failure:
            self._connected.set()

    def connect(self) -> "ServerLink":
        """Connect, or raise BrokerUnavailable saying why."""
        a = self.address
        try:
            self._client.connect(a.host, a.port, keepalive=30)
        except OSError as exc:
            raise BrokerUnavailable(f"cannot reach the MQTT broker at {a.host}:{a.port}: {exc}") from exc
        self._client.loop_start()
        if not self._connected.wait(self.timeout):
            self.close()
            raise BrokerUnavailable(f"the MQTT broker at {a.host}:{a.port} did not accept the server's account "
                                    f"({self._reason or 'no answer'})")
        return self

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, expiry_s: Optional[int] = None) -> None:
        """Publish at QoS 1 and return once the broker acknowledged it."""
        if not self._client.is_connected():
            # Fail at once rather than wait out the timeout: callers keep the message and try again later.
            raise BrokerUnavailable(f"not connected to the MQTT broker at {self.address.host}:{self.address.port}")
        props = None
        if expiry_s is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.MessageExpiryInterval = int(expiry_s)
        info = self._client.publish(topic, payload, qos=1, retain=retain, properties=props)
        info.wait_for_publish(self.timeout)
        if not info.is_published():
            raise BrokerUnavailable(f"the MQTT broker did not acknowledge {topic} within {self.timeout:.0f} s")

    def publish_many(self, messages: list[tuple[str, bytes]], *, retain: bool = False) -> None:
        """Publish (topic, payload) MESSAGES at QoS 1, all in flight at once; return once the broker acknowledged
        every one (raises BrokerUnavailable otherwise, and then some may have arrived: callers send them again)."""
        if not self._client.is_connected():
            raise BrokerUnavailable(f"not connected to the MQTT broker at {self.address.host}:{self.address.port}")
        infos = [self._client.publish(topic, payload, qos=1, retain=retain) for topic, payload in messages]
        deadline = time.monotonic() + self.timeout
        for info in infos:
            info.wait_for_publish(max(0.01, deadline - time.monotonic()))
            if not info.is_published():
                raise BrokerUnavailable(f"the MQTT broker did not acknowledge {len(infos)} messages within "
                                        f"{self.timeout:.0f} s")

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        hang_up(self._client)

    def __enter__(self) -> "ServerLink":
        return self.connect()

    def __exit__(self, *_exc) -> None:
        self.close()
