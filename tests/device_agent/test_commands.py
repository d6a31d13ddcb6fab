"""Remote commands: each runs at most once, an old one is not run late, and every outcome is an event."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timedelta, timezone

import pytest

from device_agent import commands
from device_agent.outbox import Outbox
from device_agent.player import Player
from device_agent.store import AgentStore
from device_agent.timekeeping import TimeKeeper
from firmware_stub.sim import SimClock, sim_hardware
from playlists.manifest import build_manifest, canonical_json, format_utc, parse_manifest
from playlists.model import Audience, Item, LessonVersion, Programme, Rendition
from tests.generated_media import tone

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=timezone.utc)
RADIO = Audience("radio", "cmn", frozenset())


class Device:
    """The parts of an Agent that commands act on, wired as agent.py wires them (real store, outbox, player)."""

    def __init__(self, root, manifest):
        self.store = AgentStore(root)
        self.store.ensure()
        self.hw = sim_hardware("radio", self.store.media_dir, clock=SimClock(T0))
        self.time = TimeKeeper(self.hw.clock, self.store)
        self.outbox = Outbox(self.store.outbox_path, clock=self.hw.clock)
        self.player = Player(self.hw, self.outbox, self.store, self.time)
        self.manifest = manifest
        self.syncs: list[bool] = []
        self.reboots = 0

    def request_sync(self, force: bool = False) -> None:
        self.syncs.append(force)

    def request_reboot(self) -> None:
        self.reboots += 1

    def find_item(self, programme, position):
        return next((i for i in self.manifest.items if i.programme == programme and i.position == position), None)

    def command_events(self) -> list[dict]:
        return [e for e in self.outbox.pending(limit=-1) if e["type"] == "command"]


@pytest.fixture(scope="module")
def lesson_file(tmp_path_factory):
    return tone(tmp_path_factory.mktemp("media") / "lesson.mp3", 2.0)


@pytest.fixture
def device(tmp_path, lesson_file):
    data = lesson_file.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    rendition = Rendition("radio", f"media/{sha}.mp3", len(data), sha, 2.0)
    programme = Programme(1, "2026-Q4", 1, "2026年第四季度", date(2026, 10, 1), date(2026, 12, 31),
                         (Item(1, LessonVersion(41, "第一讲", "cmn", (rendition,))),))
    built = build_manifest(channel="radio-cmn", audience=RADIO, version=1, issued_at=T0, programmes=[programme],
                           today=date(2026, 11, 22), grace_days=30)
    dev = Device(tmp_path / "agent", parse_manifest(canonical_json(built)))
    (dev.store.media_dir / f"{sha}.mp3").write_bytes(data)
    yield dev
    dev.outbox.close()


def send(device: Device, **cmd) -> None:
    commands.handle(device, json.dumps(cmd).encode())


def ago(hours: float) -> str:
    return format_utc(T0 - timedelta(hours=hours))


@pytest.mark.parametrize("cmd, result, name, says", [
    ({"id": "c1", "type": "set-volume", "volume": 35}, "done", "set-volume", "volume 35"),
    ({"id": "c2", "type": "set-volume", "volume": 150}, "failed", "set-volume", "150 is not an integer from 0 to 100"),
    ({"id": "c3", "type": "set-volume", "volume": "loud"}, "failed", "set-volume", "'loud'"),
    ({"id": "c4", "type": "self-destruct"}, "unknown", "self-destruct", "unknown command type 'self-destruct'"),
    ({"type": "set-volume", "volume": 10}, "malformed", "set-volume", "needs an 'id'"),
    ({"id": "", "type": "stop"}, "malformed", "stop", "needs an 'id'"),
    ({"id": "c5", "type": "set-volume", "volume": 10, "issued_at": ago(25)}, "expired", "set-volume", "issued at"),
    ({"id": "c6", "type": "set-volume", "volume": 10, "issued_at": "yesterday"}, "malformed", "set-volume",
     "bad issued_at"),
    ({"id": "c7", "type": "set-volume", "volume": 10, "issued_at": 1700000000}, "malformed", "set-volume",
     "bad issued_at"),
    ({"id": "c10", "type": "reboot", "issued_at": "2026-11-22T02:00:00"}, "malformed", "reboot", "bad issued_at"),
    ({"id": "c8", "type": ["set-volume"]}, "unknown", ["set-volume"], "unknown command type"),
    ({"id": "c9", "type": "play-now", "programme": "2026-Q4", "position": 9}, "failed", "play-now",
     "no item 2026-Q4 #9"),
])
def test_each_command_outcome_is_recorded_with_its_id(device, cmd, result, name, says):
    send(device, **cmd)

    [event] = device.command_events()
    assert (event["command"], event["name"], event["result"]) == (cmd.get("id") or None, name, result)
    assert says in event["message"]
    assert event["time"].startswith("2026-11-22T03:00")  # stamped with the device's trusted time


@pytest.mark.parametrize("payload, says", [
    (b"not json at all", "unreadable command"),
    (b"\xff\xfe\x00garbage", "unreadable command"),
    (b"[1, 2, 3]", "not a JSON object"),
])
def test_an_unreadable_command_is_recorded_as_malformed(device, payload, says):
    commands.handle(device, payload)

    [event] = device.command_events()
    assert (event["command"], event["result"]) == (None, "malformed")
    assert says in event["message"]


def test_set_volume_changes_the_hardware_volume(device):
    send(device, id="v1", type="set-volume", volume=35, issued_at=ago(1))

    assert device.hw.audio.volume == 35


@pytest.mark.parametrize("volume", [150, -1, "loud", True, 3.5])
def test_a_bad_volume_leaves_the_volume_alone(device, volume):
    before = device.hw.audio.volume

    send(device, id="v2", type="set-volume", volume=volume)

    assert device.hw.audio.volume == before
    assert device.command_events()[0]["result"] == "failed"


def test_a_command_delivered_twice_runs_once(device):
    send(device, id="twice", type="set-volume", volume=20)
    device.hw.audio.set_volume(90)  # a member turned it up in between

    send(device, id="twice", type="set-volume", volume=20)  # QoS 1 redelivery

    assert device.hw.audio.volume == 90
    assert [e["result"] for e in device.command_events()] == ["done"]


def test_a_command_seen_before_a_restart_is_not_run_again(device):
    send(device, id="r1", type="reboot")
    restarted = Device(device.store.root, device.manifest)  # same data directory after the reboot
    try:
        send(restarted, id="r1", type="reboot")
        assert restarted.reboots == 0
    finally:
        restarted.outbox.close()


def test_a_command_older_than_a_day_is_not_run(device):
    send(device, id="old", type="reboot", issued_at=ago(25))

    assert device.reboots == 0
    assert device.command_events()[0]["result"] == "expired"


def test_resync_forces_a_sync(device):
    send(device, id="s1", type="resync", issued_at=ago(1))

    assert device.syncs == [True]
    assert device.command_events()[0]["result"] == "done"


def test_reboot_asks_for_a_reboot(device):
    send(device, id="b1", type="reboot")

    assert device.reboots == 1
    assert device.command_events()[0]["message"] == "rebooting"


def test_play_now_plays_the_item_and_stop_stops_it(device):
    send(device, id="p1", type="play-now", programme="2026-Q4", position=1)

    assert device.hw.audio.state() == "playing"
    assert device.player.playing["item"]["lesson"] == 41

    send(device, id="p2", type="stop")

    assert device.hw.audio.state() == "idle"
    plays = [e for e in device.outbox.pending(limit=-1) if e["type"] == "play"]
    assert [(p["phase"], p["trigger"]) for p in plays] == [("started", "command"), ("stopped", "command")]
    assert [(e["command"], e["result"]) for e in device.command_events()] == [("p1", "done"), ("p2", "done")]
