"""Agent releases as TUF targets: the contract between the server that signs them and the device that installs them.

A release is three kinds of target in the county's repository, all signed by the targets key like a lesson:

- ``agent/wheels/<wheel file name>``: the agent's own wheel and each dependency wheel. A wheel's file name carries
  its version, so a dependency that did not change keeps its path and hash, and a device that already holds it
  downloads nothing for it.
- ``agent/releases/<version>/release.json``: the release descriptor (which wheels, the oldest state format the
  release reads).
- ``agent/assign/<bucket>.json``: which release each device of a bucket should run. A bucket is the first two hex
  digits of the sha256 of the device id (256 buckets), so starting a stage re-signs the targets metadata once and
  adds at most a few small files, never a channel manifest; a device reads only its own bucket.

Pure functions over plain data: nothing here touches the network or the clock.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Optional

WHEELS_DIR = "agent/wheels"
DESCRIPTOR_FORMAT = 1
_VERSION = re.compile(r"^\d+(\.\d+){0,3}$")
_WHEEL = re.compile(r"^(?P<name>[A-Za-z0-9_.]+)-(?P<version>[A-Za-z0-9_.+!]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ReleaseError(ValueError):
    """A release descriptor, wheel name or assignment is malformed; the message names the field and the fix."""


def version_key(version: str) -> tuple[int, ...]:
    """A sortable key of a release version ("1.2.3"); ReleaseError for anything but dot-separated numbers."""
    if not isinstance(version, str) or not _VERSION.match(version):
        raise ReleaseError(f"version {version!r} is not dot-separated numbers such as 1.4.2: build the wheel with a "
                           "plain release version")
    parts = tuple(int(p) for p in version.split("."))
    return parts + (0,) * (4 - len(parts))


def wheel_name(filename: str) -> tuple[str, str]:
    """(distribution, version) of a wheel file name; ReleaseError when it is not a wheel's name."""
    match = _WHEEL.match(filename)
    if not match:
        raise ReleaseError(f"{filename} is not a wheel file name (name-version-python-abi-platform.whl)")
    return match["name"].lower().replace("_", "-"), match["version"]


def descriptor_path(version: str) -> str:
    """The target path of a release's descriptor."""
    version_key(version)
    return f"agent/releases/{version}/release.json"


def wheel_path(filename: str) -> str:
    """The target path of a wheel."""
    wheel_name(filename)
    return f"{WHEELS_DIR}/{filename}"


def bucket(device: str) -> str:
    """The assignment bucket of a device id: two hex digits."""
    return hashlib.sha256(device.encode()).hexdigest()[:2]


def assignment_path(device: str) -> str:
    """The target path of the assignment file holding DEVICE."""
    return f"agent/assign/{bucket(device)}.json"


@dataclass(frozen=True)
class Wheel:
    """One wheel of a release, as signed: its file name, length and sha256."""

    filename: str
    length: int
    sha256: str

    @property
    def path(self) -> str:
        """Its target path."""
        return wheel_path(self.filename)


@dataclass(frozen=True)
class Release:
    """A release descriptor: the agent version, its wheel, its dependencies' wheels and the oldest state it reads."""

    version: str
    agent_wheel: Wheel
    dependencies: tuple[Wheel, ...]
    reads_state_from: int = 1

    @property
    def wheels(self) -> tuple[Wheel, ...]:
        """Every wheel a device needs for this release."""
        return (self.agent_wheel, *self.dependencies)


def _wheel_json(w: Wheel) -> dict[str, Any]:
    return {"filename": w.filename, "length": w.length, "sha256": w.sha256}


def encode_release(release: Release) -> bytes:
    """The canonical bytes of a descriptor (what is signed as a target)."""
    body = {"format": DESCRIPTOR_FORMAT, "version": release.version, "agent": _wheel_json(release.agent_wheel),
            "dependencies": [_wheel_json(w) for w in release.dependencies],
            "reads_state_from": release.reads_state_from}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _wheel(raw: Any, where: str) -> Wheel:
    if not isinstance(raw, dict):
        raise ReleaseError(f"{where}: not an object")
    filename, length, sha = raw.get("filename"), raw.get("length"), raw.get("sha256")
    if not isinstance(filename, str):
        raise ReleaseError(f"{where}.filename: missing")
    wheel_name(filename)
    if not isinstance(length, int) or isinstance(length, bool) or length <= 0:
        raise ReleaseError(f"{where}.length: {length!r} is not a positive byte count")
    if not isinstance(sha, str) or not _SHA256.match(sha):
        raise ReleaseError(f"{where}.sha256: not 64 lowercase hex digits")
    return Wheel(filename, length, sha)


def parse_release(data: bytes) -> Release:
    """A descriptor from its bytes; ReleaseError naming the bad field."""
    try:
        raw = json.loads(data)
    except ValueError as exc:
        raise ReleaseError(f"release.json is not JSON: {exc}") from None
    if not isinstance(raw, dict) or raw.get("format") != DESCRIPTOR_FORMAT:
        raise ReleaseError(f"release.json: format {raw.get('format') if isinstance(raw, dict) else None!r} is not "
                           f"{DESCRIPTOR_FORMAT}; this agent cannot read it")
    version = raw.get("version")
    version_key(version)
    agent = _wheel(raw.get("agent"), "agent")
    if wheel_name(agent.filename) != ("lessoncast", version):
        raise ReleaseError(f"agent wheel {agent.filename} is not lessoncast {version}")
    deps = raw.get("dependencies")
    if not isinstance(deps, list):
        raise ReleaseError("dependencies: not a list")
    reads = raw.get("reads_state_from", 1)
    if not isinstance(reads, int) or isinstance(reads, bool) or reads < 1:
        raise ReleaseError(f"reads_state_from: {reads!r} is not a format number from 1")
    return Release(version, agent, tuple(_wheel(d, f"dependencies[{i}]") for i, d in enumerate(deps)), reads)


@dataclass(frozen=True)
class Assignment:
    """What one device is told to run: a release version, whether it may be older than what runs (an admin's
    pinned rollback), and the attempt number (a retry of failed devices raises it, so they try once more)."""

    version: str
    allow_downgrade: bool = False
    attempt: int = 1


def encode_assignments(assignments: dict[str, Assignment]) -> bytes:
    """The canonical bytes of one bucket's assignment file."""
    body = {"format": 1, "devices": {uid: {"version": a.version, "allow_downgrade": a.allow_downgrade,
                                           "attempt": a.attempt} for uid, a in sorted(assignments.items())}}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def assignment_of(data: bytes, device: str) -> Optional[Assignment]:
    """DEVICE's assignment in a bucket file's bytes, or None when the file does not name it."""
    try:
        raw = json.loads(data)
        entry = raw["devices"].get(device)
    except (ValueError, KeyError, AttributeError, TypeError):
        raise ReleaseError("the assignment file is not {\"devices\": {...}}") from None
    if entry is None:
        return None
    version_key(entry.get("version"))
    attempt = entry.get("attempt", 1)
    return Assignment(entry["version"], entry.get("allow_downgrade") is True,
                      attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else 1)
