"""A terminal agent (the real Agent, player and schedule over simulated hardware and a real ffmpeg-made lesson) plays
a Monday-to-Friday slot on weekdays only, in the county's time zone, and still plays every day from a manifest
written before slots had days. The clock is stepped by the test: no sleeps, no timed assertions."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from device_agent.agent import Agent
from device_agent.store import AgentStore
from device_agent.sync import SyncResult
from firmware_stub.sim import SimClock, sim_hardware
from playlists.manifest import build_manifest, canonical_json
from playlists.model import WEEKDAYS, Audience, Item, LessonVersion, Programme, Rendition, Slot
from tests.generated_media import tone

SHANGHAI = ZoneInfo("Asia/Shanghai")
FRIDAY = date(2026, 11, 27)
STEP_S = 120.0  # well inside the 10 minutes a slot may start late: no slot can slip between two rounds


class Idle:
    """The sync: this test owns no server; every sync finds the manifest already in the store."""

    def run(self, config, *, force=False):
        return SyncResult("idle", 1)


@pytest.fixture(scope="module")
def lesson_file(tmp_path_factory):
    return tone(tmp_path_factory.mktemp("media") / "lesson.m4a", 6.0)


def terminal(tmp_path, lesson_file, days, start_local: datetime) -> Agent:
    """A terminal in Asia/Shanghai whose stored manifest has one 07:00 broadcast slot on DAYS."""
    store = AgentStore(tmp_path / "agent")
    store.ensure()
    data = lesson_file.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    rendition = Rendition("terminal-audio", f"media/{sha}.m4a", len(data), sha, 6.0)
    programme = Programme(1, "2026-Q4", 1, "2026年第四季度", date(2026, 10, 1), date(2026, 12, 31),
                          (Item(1, LessonVersion(41, "第一讲", "cmn", (rendition,))),), (Slot("07:00", days=days),))
    audience = Audience("terminal", "cmn", frozenset())
    manifest = build_manifest(channel="ch-t", audience=audience, version=1,
                              issued_at=datetime(2026, 11, 1, tzinfo=timezone.utc), programmes=[programme],
                              today=date(2026, 11, 1), grace_days=30)
    store.manifest_path.write_bytes(canonical_json(manifest))
    store.media_file(rendition.path).write_bytes(data)
    store.write_json("credentials.json", {
        "device": "t-0000000001", "kind": "terminal", "http_token": "lcd_x",
        "mqtt": {"host": "127.0.0.1", "port": 9, "username": "t-0000000001", "password": "p"},
        "metadata_url": "http://127.0.0.1:9/tuf/metadata/", "targets_url": "http://127.0.0.1:9/tuf/targets/",
        "media_base_url": "http://127.0.0.1:9/",
        "config": {"device": "t-0000000001", "channel": "ch-t", "language": "cmn", "download_window": None,
                   "timezone": "Asia/Shanghai"}}, private=True)
    clock = SimClock(start_local.replace(tzinfo=SHANGHAI).astimezone(timezone.utc), stepped=True)
    agent = Agent(store, sim_hardware("terminal", store.media_dir, clock=clock),
                  spawn=lambda fn, *args: fn(*args) or object())  # the sync runs inside the round: no thread
    agent.syncer = Idle()
    return agent


def run_until(agent: Agent, local_end: datetime) -> None:
    """Step the agent's loop every STEP_S seconds of device time until local_end (Shanghai)."""
    end = local_end.replace(tzinfo=SHANGHAI)
    while agent.time.now() < end:
        agent.hw.clock.advance(STEP_S)
        agent.step()


def slot_plays(agent: Agent) -> list[str]:
    """The local date and time each scheduled play started, from the play events the agent recorded."""
    starts = []
    for e in agent.outbox.pending(limit=-1):
        if e["type"] == "play" and e["phase"] == "started" and e["trigger"] == "schedule":
            at = datetime.strptime(e["started_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
            starts.append(at.astimezone(SHANGHAI).strftime("%a %Y-%m-%d %H:%M"))
    return starts


def test_a_monday_to_friday_slot_is_silent_on_the_weekend_and_plays_on_monday(tmp_path, lesson_file):
    agent = terminal(tmp_path, lesson_file, ("mon", "tue", "wed", "thu", "fri"),
                     datetime.combine(FRIDAY, datetime.min.time()).replace(hour=6, minute=50))
    try:
        assert agent.manifest is not None and agent.manifest.schema == 2
        run_until(agent, datetime(2026, 11, 27, 12, 0))   # Friday morning: plays
        assert [p[:14] for p in slot_plays(agent)] == ["Fri 2026-11-27"]
        run_until(agent, datetime(2026, 11, 29, 23, 59))  # the whole of Saturday and Sunday: nothing
        assert len(slot_plays(agent)) == 1
        run_until(agent, datetime(2026, 11, 30, 12, 0))   # Monday morning: plays again
        plays = slot_plays(agent)
        assert [p[:14] for p in plays] == ["Fri 2026-11-27", "Mon 2026-11-30"]
        assert all("07:00" <= p[-5:] <= "07:10" for p in plays), plays
    finally:
        agent.outbox.close()


def test_a_manifest_from_before_slot_days_plays_its_slot_on_saturday_too(tmp_path, lesson_file):
    agent = terminal(tmp_path, lesson_file, WEEKDAYS, datetime(2026, 11, 28, 6, 50))  # a Saturday
    try:
        assert agent.manifest.schema == 1 and b'"days"' not in agent.store.current_manifest()
        run_until(agent, datetime(2026, 11, 29, 12, 0))
        assert [p[:14] for p in slot_plays(agent)] == ["Sat 2026-11-28", "Sun 2026-11-29"]
    finally:
        agent.outbox.close()
