"""Probe the broker lessoncast runs as a device would, for ``lessoncast doctor``: anonymous clients are refused,
and a device may subscribe to its own topics but not to ingest's shared subscription nor another device's topics.

The probe is a throw-away device the subscription gate's admin creates with a random password, in the devices'
group and with a device's own role, exactly as enrolment makes one; it is deleted afterwards. No real device's
credentials are needed or touched.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Optional

import paho.mqtt.client as mqtt

from playlists import topics
from server.file_lock import exclusive
from server.messaging import broker_gate
from server.messaging.broker import share_group
from server.messaging.hang_up import hang_up


@dataclass
class Session:
    """One probing connection: whether the broker accepted it, and the SUBACK verdict of each filter."""

    accepted: Optional[bool] = None
    reason: str = ""
    granted: dict[str, bool] = field(default_factory=dict)


def _connect(host: str, port: int, username: Optional[str], password: Optional[str], filters: list[str],
             timeout: float) -> Session:
    """Connect (MQTT 5) and subscribe to FILTERS in one SUBSCRIBE; the broker's answers."""
    session = Session()
    connected, subscribed = threading.Event(), threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=username or "", protocol=mqtt.MQTTv5)
    if username:
        client.username_pw_set(username, password)

    def on_connect(c, _u, _flags, reason_code, _props):
        session.accepted, session.reason = not reason_code.is_failure, str(reason_code)
        connected.set()
        if session.accepted and filters:
            c.subscribe([(f, 1) for f in filters])

    def on_subscribe(_c, _u, _mid, reason_codes, _props):
        session.granted = {f: not rc.is_failure for f, rc in zip(filters, reason_codes)}
        subscribed.set()

    def on_disconnect(_c, _u, _flags, reason_code, _props):
        if session.accepted is None:
            session.accepted, session.reason = False, str(reason_code)
        connected.set()
        subscribed.set()

    client.on_connect, client.on_subscribe, client.on_disconnect = on_connect, on_subscribe, on_disconnect
    try:
        client.connect(host, port, keepalive=10)
    except OSError as exc:
        session.accepted, session.reason = None, str(exc)
        return session
    client.loop_start()
    try:
        connected.wait(timeout)
        if session.accepted and filters:
            subscribed.wait(timeout)
    finally:
        hang_up(client)
    return session


def anonymous(services, timeout: float = 15.0) -> Session:
    """A connection without credentials to the device listener (the broker must refuse it)."""
    admin = broker_gate.GateAdmin.for_services(services)
    return _connect(admin.host, admin.port, None, None, [], timeout)


def device_filters(services, uid: str) -> dict[str, str]:
    """What the probe device tries to subscribe to: a name for each filter (own: must be granted; the rest refused)."""
    other = "lessoncast-doctor-other"
    return {"own": topics.config(uid),
            "share": f"$share/{share_group(services)}/{topics.PREFIX}/devices/+/events",
            "other": topics.cmd(other),
            "all": "#"}


def as_device(services, timeout: float = 15.0) -> tuple[Session, dict[str, str]]:
    """Connect as a throw-away device and try DEVICE_FILTERS; (session, name -> filter). Raises
    broker_gate.GateUnavailable when the gate's admin cannot create the probe."""
    uid = f"lessoncast-doctor-{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(18)
    filters = device_filters(services, uid)
    with exclusive(services.data / "broker" / "gate.lock"), broker_gate.GateAdmin.for_services(services) as admin:
        created = admin.run([
            {"command": "createRole", "rolename": broker_gate.device_role(uid), "acls": broker_gate.device_acls(uid)},
            {"command": "createClient", "username": uid, "password": password,
             "roles": broker_gate.device_roles(uid, None), "groups": [{"groupname": broker_gate.DEVICES_GROUP}]}])
        errors = [r["error"] for r in created if r.get("error")]
        try:
            if errors:
                raise broker_gate.GateUnavailable(f"cannot create the probe device: {errors}")
            session = _connect(admin.host, admin.port, uid, password, list(filters.values()), timeout)
        finally:
            admin.run([{"command": "deleteClient", "username": uid},
                       {"command": "deleteRole", "rolename": broker_gate.device_role(uid)}])
    return session, filters
