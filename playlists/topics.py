"""MQTT topics: the one place they are built and parsed, so server, agent and broker ACL agree on every string.

Ids are checked before they go into a topic: a device id holding "/", "+" or "#" would let a topic (or an ACL line
built from it) match other devices' traffic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "lc/v1"

DEVICE_TOPICS = ("config", "cmd", "ack", "events", "status")
CHANNEL_TOPICS = ("notify",)

ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"  # a device id, a channel id or a shared-subscription group name
_ID = re.compile(ID_PATTERN)


@dataclass(frozen=True)
class Topic:
    """A parsed topic: its kind ("config", "cmd", "ack", "events", "status" or "notify") and the device or channel."""

    kind: str
    id: str


def is_valid_id(value: object) -> bool:
    """True when value may be a device id, a channel id or a shared-subscription group name."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def _checked(value: object, what: str) -> str:
    if not is_valid_id(value):
        raise ValueError(f"{what}: {value!r} is not a valid id (1-64 of A-Z a-z 0-9 _ . -, starting alphanumeric)")
    return value  # type: ignore[return-value]


def _device_topic(device: str, leaf: str) -> str:
    return f"{PREFIX}/devices/{_checked(device, 'device')}/{leaf}"


def config(device: str) -> str:
    """The retained config topic of a device."""
    return _device_topic(device, "config")


def cmd(device: str) -> str:
    """The command topic of a device."""
    return _device_topic(device, "cmd")


def ack(device: str) -> str:
    """The retained event-ack topic of a device."""
    return _device_topic(device, "ack")


def events(device: str) -> str:
    """The topic a device publishes its event batches on."""
    return _device_topic(device, "events")


def status(device: str) -> str:
    """The retained status (and last-will) topic of a device."""
    return _device_topic(device, "status")


def notify(channel: str) -> str:
    """The retained "refresh now" topic of a channel."""
    return f"{PREFIX}/channels/{_checked(channel, 'channel')}/notify"


def all_events() -> str:
    """The filter matching every device's events topic."""
    return f"{PREFIX}/devices/+/events"


def all_status() -> str:
    """The filter matching every device's status topic."""
    return f"{PREFIX}/devices/+/status"


def shared(group: str, topic_filter: str) -> str:
    """The MQTT 5 shared subscription "$share/<group>/<filter>", so server workers split the load."""
    _checked(group, "group")
    if not isinstance(topic_filter, str) or topic_filter == "" or topic_filter.startswith("$"):
        raise ValueError(f"topic_filter: {topic_filter!r} is not a plain topic filter")
    return f"$share/{group}/{topic_filter}"


def parse(topic: str) -> Topic:
    """The Topic of a concrete lessoncast topic; ValueError for filters, other prefixes or bad ids."""
    if not isinstance(topic, str):
        raise ValueError(f"topic: {topic!r} is not a string")
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != PREFIX:
        raise ValueError(f"topic: {topic!r} is not {PREFIX}/devices/<device>/<kind> "
                         f"or {PREFIX}/channels/<channel>/notify")
    _, _, scope, ident, leaf = parts
    if scope == "devices" and leaf in DEVICE_TOPICS:
        return Topic(kind=leaf, id=_checked(ident, "device"))
    if scope == "channels" and leaf in CHANNEL_TOPICS:
        return Topic(kind=leaf, id=_checked(ident, "channel"))
    raise ValueError(f"topic: {topic!r} has no {scope!r}/{leaf!r} kind")
