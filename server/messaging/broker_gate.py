"""The device listener's subscription gate: Mosquitto's dynamic-security plugin, kept equal to the enrolled devices.

Mosquitto 2.0's acl_file grants every SUBSCRIBE (security_default.c: "FIXME - implement ACL subscription strings")
and filters only when a message is delivered. That is harmless for an ordinary filter, but a shared subscription
takes its share of the messages away from the other members: a device that joined ingest's `$share` group was dealt
a share of every device's events, its read ACL dropped them, and ingest never stored them. The dynamic-security
plugin that Debian ships with Mosquitto checks subscriptions when they are made, so a refused filter gets SUBACK
reason 135 (not authorised) and never exists.

The plugin here is a gate, not the password store: devices still authenticate against the password file and their
reads and writes are still checked by the acl_file (with its %u patterns, reloaded by SIGHUP). The plugin knows
every enrolled device as a client with no password (so it defers the password check to the file) and:

- a role per device granting SUBSCRIBE to its own config, cmd and ack topics (literal topics only);
- a role per channel granting SUBSCRIBE to its notify topic, held by the channel's devices;
- the group every device is in, whose role refuses every other filter (`#` covers `$share/...` too).

The plugin disconnects a client whose roles change, so a publish that moves a device to another channel makes it
reconnect once (it resumes its session). Changing a role that many devices hold would disconnect all of them,
which is why no role shared by devices ever changes.

A device the plugin does not know would fall through to the acl_file, which grants every subscription. So a device
goes into the password file only once the plugin knows it (`gated`): an error here leaves a new device unable to
connect, never connected without the gate.

The plugin's state lives in the broker: it reads its JSON file once at start and takes changes at run time as
commands on `$CONTROL/dynamic-security/v1` from an admin client on the same listener. So `write_config` writes the
file from the database before the broker starts, and `sync` sends the difference while it runs.
"""

from __future__ import annotations

import glob
import json
import logging
import secrets
import threading
import uuid
from pathlib import Path
from typing import Mapping, Optional

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from playlists import topics
from server.keyfiles import write_private
from server.messaging.hang_up import hang_up

log = logging.getLogger(__name__)

ADMIN_USER = "lessoncast-gate-admin"
DEVICES_GROUP = "lessoncast-devices"
CONTROL = "$CONTROL/dynamic-security/v1"
PLUGIN_NAME = "mosquitto_dynamic_security.so"
# The device listener refuses what no role grants; reads and writes fall through (defer) to the acl_file.
DEFAULT_ACCESS = {"publishClientSend": False, "publishClientReceive": False, "subscribe": False,
                  "unsubscribe": True}


def gate_admin_password(services) -> str:
    """The password of the subscription gate's admin account on the device listener, created on first use."""
    path = services.data / "broker" / "gate-admin.secret"
    if not path.exists():
        write_private(path, secrets.token_urlsafe(32))
    return path.read_text().strip()


class GateUnavailable(RuntimeError):
    """The broker's dynamic-security plugin could not be reached or did not answer."""


def plugin_path() -> Optional[str]:
    """Where Debian's mosquitto package put the dynamic-security plugin (arch-specific), or None."""
    for pattern in (f"/usr/lib/*/{PLUGIN_NAME}", f"/usr/lib/{PLUGIN_NAME}", f"/usr/local/lib/{PLUGIN_NAME}"):
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def device_role(uid: str) -> str:
    """The name of the role that grants device UID its own topics."""
    return f"lessoncast-device-{uid}"


def _literal(topic: str, allow: bool = True) -> dict:
    return {"acltype": "subscribeLiteral", "topic": topic, "allow": allow}


def device_acls(uid: str) -> list[dict]:
    """The subscriptions a device may make on its own topics."""
    return [_literal(topics.config(uid)), _literal(topics.cmd(uid)), _literal(topics.ack(uid))]


def channel_role(channel: str) -> str:
    """The name of the role that grants a channel's devices its notify topic."""
    return f"lessoncast-channel-{channel}"


def device_roles(uid: str, channel: Optional[str]) -> list[dict]:
    """The roles of device UID in CHANNEL."""
    return [{"rolename": device_role(uid)}] + ([{"rolename": channel_role(channel)}] if channel else [])


# Client roles are checked before group roles, and a role's literals before its patterns: this refuses the rest.
GROUP_ACLS = [{"acltype": "subscribePattern", "topic": "#", "allow": False}]


def _password_fields(line_hash: str) -> dict:
    """The plugin's password fields from a "$7$iterations$salt$hash" Mosquitto hash (the same PBKDF2-SHA512)."""
    _empty, seven, iterations, salt, digest = line_hash.split("$")
    assert seven == "7", "a Mosquitto $7$ hash"
    return {"password": digest, "salt": salt, "iterations": int(iterations)}


def config(devices: Mapping[str, Optional[str]], admin_hash: str) -> dict:
    """The plugin's JSON file for DEVICES (uid -> channel) and the admin account (a $7$ hash)."""
    admin_acls = [{"acltype": kind, "topic": f"{CONTROL}/#", "allow": True}
                  for kind in ("publishClientSend", "publishClientReceive", "subscribePattern")]
    return {
        "defaultACLAccess": DEFAULT_ACCESS,
        "clients": [{"username": ADMIN_USER, "clientid": ADMIN_USER, "roles": [{"rolename": ADMIN_USER}],
                     **_password_fields(admin_hash)}]
                   + [{"username": uid, "roles": device_roles(uid, c)} for uid, c in sorted(devices.items())],
        "groups": [{"groupname": DEVICES_GROUP, "roles": [{"rolename": DEVICES_GROUP}],
                    "clients": [{"username": uid} for uid in sorted(devices)]}],
        "roles": [{"rolename": ADMIN_USER, "acls": admin_acls}, {"rolename": DEVICES_GROUP, "acls": GROUP_ACLS}]
                 + [{"rolename": device_role(uid), "acls": device_acls(uid)} for uid in sorted(devices)]
                 + [{"rolename": channel_role(c), "acls": [_literal(topics.notify(c))]}
                    for c in sorted({c for c in devices.values() if c})],
    }


def listener_only_config() -> dict:
    """The file of a second device listener (TLS). Mosquitto 2.0.11 initialises the plugin once per listener but
    the plugin keeps one state for the process: loading the clients again would duplicate them (and crash the
    broker when it stops), so the second listener's file holds only the default access, and it shares the state
    loaded from the first listener's file."""
    return {"defaultACLAccess": DEFAULT_ACCESS}


class GateAdmin:
    """An MQTT 5 client on the device listener that sends dynamic-security commands and waits for the answers.

    The device listener takes the username as client id, so two admins would take over each other's connection:
    callers hold the broker's auth lock.
    """

    def __init__(self, host: str, port: int, password: str, timeout: float = 10.0):
        self.host, self.port, self.timeout = host, port, timeout
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=ADMIN_USER, protocol=mqtt.MQTTv5)
        self._client.username_pw_set(ADMIN_USER, password)
        self._answers: dict[str, list] = {}
        self._ready = threading.Event()
        self._answered = threading.Condition()
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *_a: self._ready.set()
        self._client.on_message = self._on_message

    @classmethod
    def for_services(cls, services) -> "GateAdmin":
        """The admin of the broker lessoncast runs (its device listener, over loopback when it listens on all)."""
        s = services.settings
        host = "127.0.0.1" if s.mqtt_host in ("", "0.0.0.0", "::") else s.mqtt_host
        return cls(host, s.mqtt_port, gate_admin_password(services))

    def _on_connect(self, client, _userdata, _flags, reason_code, _properties) -> None:
        if not reason_code.is_failure:
            client.subscribe(f"{CONTROL}/response", qos=1)

    def _on_message(self, _client, _userdata, msg) -> None:
        responses = json.loads(msg.payload).get("responses", [])
        # The plugin echoes each command's correlationData in its response (not as an MQTT property).
        correlation = responses[0].get("correlationData", "") if responses else ""
        with self._answered:
            self._answers[correlation] = responses
            self._answered.notify_all()

    def __enter__(self) -> "GateAdmin":
        try:
            self._client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise GateUnavailable(f"cannot reach the broker's device listener {self.host}:{self.port}: {exc}") from exc
        self._client.loop_start()
        if not self._ready.wait(self.timeout):
            self.__exit__()
            raise GateUnavailable(f"the broker at {self.host}:{self.port} did not accept the gate's admin account")
        return self

    def __exit__(self, *_exc) -> None:
        hang_up(self._client)

    def run(self, commands: list[dict]) -> list[dict]:
        """Send COMMANDS in one message; return the plugin's responses (each may hold an "error")."""
        if not commands:
            return []
        correlation = uuid.uuid4().hex
        commands = [{**c, "correlationData": correlation} for c in commands]
        with self._answered:
            self._client.publish(CONTROL, json.dumps({"commands": commands}), qos=1)
            if not self._answered.wait_for(lambda: correlation in self._answers, self.timeout):
                raise GateUnavailable(f"the broker's dynamic-security plugin did not answer {commands[0]['command']}")
            return self._answers.pop(correlation)


def _check(responses: list[dict], allowed: tuple[str, ...] = ()) -> list[str]:
    """The errors among RESPONSES, except the ALLOWED ones (e.g. "Client already exists")."""
    return [f"{r.get('command')}: {r['error']}" for r in responses if r.get("error") and r["error"] not in allowed]


def expire_session(admin: GateAdmin, uid: str, timeout: float = 10.0) -> None:
    """Discard the broker session of device UID with everything it subscribed to.

    Mosquitto 2.0 has no command that ends a session. The plugin gives the device a one-off password (which also
    disconnects it), a connection as that client id with clean start and session expiry 0 replaces the session,
    and the caller then deletes the device from the plugin.
    """
    password = secrets.token_urlsafe(24)
    errors = _check(admin.run([{"command": "setClientPassword", "username": uid, "password": password}]))
    if errors:
        raise GateUnavailable(f"cannot expire the session of {uid}: {errors}")
    done = threading.Event()
    outcome: dict = {}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=uid, protocol=mqtt.MQTTv5)
    client.username_pw_set(uid, password)

    def on_connect(_c, _u, _flags, reason_code, _props):
        outcome["reason"] = reason_code
        done.set()

    client.on_connect = on_connect
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    client.connect(admin.host, admin.port, clean_start=True, properties=props)
    client.loop_start()
    try:
        if not done.wait(timeout) or outcome["reason"].is_failure:
            raise GateUnavailable(f"cannot expire the session of {uid}: {outcome.get('reason', 'no answer')}")
    finally:
        hang_up(client)


def sync(admin: GateAdmin, devices: Mapping[str, Optional[str]]) -> tuple[set[str], list[str]]:
    """Make the plugin know DEVICES (uid -> channel), and expire the sessions of the devices it should drop; return
    the uids it now gates (only those may go into the password file) and the dropped ones.

    A dropped device keeps its plugin client, with the one-off password that refuses it, until `forget`: the caller
    first takes it out of the password file, since a device the plugin does not know falls through to that file."""
    listed = admin.run([{"command": "listClients", "verbose": True}, {"command": "listRoles"}])
    errors = _check(listed)
    if errors:
        raise GateUnavailable(f"the dynamic-security plugin refused to list its clients: {errors}")
    known = {c["username"]: sorted(r["rolename"] for r in c.get("roles", []))
             for c in listed[0]["data"]["clients"] if c["username"] != ADMIN_USER}
    roles = set(listed[1]["data"]["roles"])
    problems: list[str] = []

    channels = {c for c in devices.values() if c}
    problems += _check(admin.run([{"command": "createRole", "rolename": channel_role(c),
                                   "acls": [_literal(topics.notify(c))]}
                                  for c in sorted(channels) if channel_role(c) not in roles]))
    gated = set()
    for uid, channel in sorted(devices.items()):
        wanted = device_roles(uid, channel)
        if uid not in known:
            commands = [{"command": "createRole", "rolename": device_role(uid), "acls": device_acls(uid)},
                        {"command": "createClient", "username": uid, "roles": wanted,
                         "groups": [{"groupname": DEVICES_GROUP}]}]
        elif known[uid] != sorted(r["rolename"] for r in wanted):
            commands = [{"command": "modifyClient", "username": uid, "roles": wanted}]  # moved channel
        else:
            gated.add(uid)
            continue
        errors = _check(admin.run(commands), allowed=("Role already exists",))
        problems += errors
        if not errors or uid in known:
            gated.add(uid)  # a device whose move failed keeps its old notify, and still the gate
    dropped = []
    for uid in sorted(set(known) - set(devices)):
        try:
            expire_session(admin, uid)
            dropped.append(uid)
        except GateUnavailable as exc:
            problems.append(str(exc))  # kept in the plugin: the next sync tries again
    unused = {r for r in roles if r.startswith(channel_role(""))} - {channel_role(c) for c in channels}
    problems += _check(admin.run([{"command": "deleteRole", "rolename": r} for r in sorted(unused)]))
    if problems:
        log.error("the broker's subscription gate did not take every change (tried again at the next change): %s",
                  "; ".join(problems))
    return gated, dropped


def forget(admin: GateAdmin, uids: list[str]) -> None:
    """Delete dropped devices (already out of the password file) from the plugin."""
    problems = _check(admin.run([c for uid in uids for c in (
        {"command": "deleteClient", "username": uid}, {"command": "deleteRole", "rolename": device_role(uid)})]))
    if problems:
        log.error("the broker's subscription gate kept dropped devices (tried again at the next change): %s",
                  "; ".join(problems))


def write_file(path: Path, document: dict) -> None:
    """Write the plugin's JSON file (0600: it holds the admin's password hash)."""
    write_private(path, json.dumps(document, ensure_ascii=False, indent=1))


def file_clients(path: Path) -> set[str]:
    """The devices a gate file (as written before the broker started) lets in."""
    try:
        return {c["username"] for c in json.loads(path.read_text())["clients"]} - {ADMIN_USER}
    except (OSError, ValueError, KeyError):
        return set()
