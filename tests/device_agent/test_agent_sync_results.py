"""What the agent does with a finished sync: a network failure is tried again soon with growing waits (a simulated
clock stepped by the test, no sleeps), a refused or over-the-limit sync is not, and each kind is logged and shown
with its reason."""

from __future__ import annotations

import logging
import random
from datetime import datetime, timezone

import pytest

from device_agent.agent import Agent, AgentOptions, Backoff
from device_agent.store import AgentStore
from device_agent.sync import NETWORK, SyncResult
from firmware_stub.sim import SimClock, sim_hardware

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=timezone.utc)
NETWORK_DOWN = SyncResult("error", reason=NETWORK + "refreshing signed metadata for channels/ch-1/manifest.json "
                          "could not be fetched (DownloadError: connection refused)", problem="network")
REFUSED = SyncResult("error", reason="refreshing signed metadata for channels/ch-1/manifest.json failed "
                     "verification (BadVersionNumberError: ...)", problem="refused")
NO_ROOM = SyncResult("error", reason="not enough storage: the new programme needs 412.0 MB more, 180.3 MB free; "
                     "keeping the current programme", problem="limit")
OK = SyncResult("idle", 3)


class Top(random.Random):
    """Always the top of the jitter range, so the test knows each wait exactly."""

    def random(self) -> float:
        return 1.0


class FakeSyncer:
    """Hands out prepared results and records each sync's force flag."""

    def __init__(self, results):
        self.results = list(results)
        self.calls: list[bool] = []

    def run(self, config, *, force=False):
        self.calls.append(force)
        return self.results.pop(0)


@pytest.fixture
def agent(tmp_path):
    store = AgentStore(tmp_path / "agent")
    store.ensure()
    store.write_json("credentials.json", {
        "device": "r-0000000001", "kind": "radio", "http_token": "lcd_x",
        "mqtt": {"host": "127.0.0.1", "port": 9, "username": "r-0000000001", "password": "p"},
        "metadata_url": "http://127.0.0.1:9/tuf/metadata/", "targets_url": "http://127.0.0.1:9/tuf/targets/",
        "media_base_url": "http://127.0.0.1:9/",
        "config": {"device": "r-0000000001", "channel": "ch-1", "language": "cmn", "download_window": None}},
        private=True)
    clock = SimClock(T0, stepped=True)  # only advance moves it: a slow round does not bring a retry forward
    agent = Agent(store, sim_hardware("radio", store.media_dir, clock=clock),
                  AgentOptions(retry_first_s=30.0, retry_cap_s=120.0), rng=Top())
    yield agent
    agent.outbox.close()


def step(agent) -> bool:
    """One loop round; if it started a sync, wait for that sync's thread and hand its result in. True if it synced."""
    agent.step()
    thread = agent._sync_thread
    if thread is None:
        return False
    thread.join(10)
    agent.step()
    return True


def test_a_network_failure_is_tried_again_soon_with_growing_waits(agent, caplog):
    syncer = agent.syncer = FakeSyncer([NETWORK_DOWN] * 4 + [OK, NETWORK_DOWN, OK])
    clock = agent.hw.clock
    caplog.set_level(logging.WARNING, logger="device_agent.agent")

    assert step(agent)  # the first sync, as at start or after a notify
    assert agent.sync_state == "error" and agent.sync_reason.startswith("network: ")
    assert "sync failed: network: " in caplog.text and "trying again in 30 s" in caplog.text
    assert "failed verification" not in caplog.text and "sync refused" not in caplog.text

    for wait in (30, 60, 120, 120):  # doubling, up to the cap
        clock.advance(wait - 1)
        assert not step(agent), f"retried before {wait} s"
        clock.advance(1)
        assert step(agent), f"not retried after {wait} s"
    assert len(syncer.calls) == 5 and agent.sync_state == "idle"

    agent.request_sync()  # a notify: the network fails again...
    assert step(agent) and agent.sync_state == "error"
    clock.advance(30)  # ...and the wait starts from the beginning, since the last sync got through
    assert step(agent) and agent.sync_state == "idle"
    assert syncer.results == []


def test_a_retry_keeps_ignoring_the_download_window_when_the_failed_sync_did(agent):
    syncer = agent.syncer = FakeSyncer([OK, NETWORK_DOWN, OK])
    assert step(agent)  # the start-up sync
    agent.request_sync(force=True)  # a resync command

    assert step(agent)
    agent.hw.clock.advance(30)
    assert step(agent)

    assert syncer.calls == [False, True, True]


@pytest.mark.parametrize("result, line", [
    (REFUSED, "sync refused: refreshing signed metadata"),
    (NO_ROOM, "sync failed: not enough storage: the new programme needs 412.0 MB more"),
])
def test_a_refused_or_limited_sync_is_logged_with_its_reason_and_not_hurried(agent, caplog, result, line):
    syncer = agent.syncer = FakeSyncer([result])
    caplog.set_level(logging.WARNING, logger="device_agent.agent")

    assert step(agent)
    agent.hw.clock.advance(3600)
    assert not step(agent), "only the 6-hour timer, a notify, a reconnect or a command syncs again"

    assert line in caplog.text
    assert len(syncer.calls) == 1
    assert agent.hw.display.last == "同步失败 sync failed: " + result.reason  # no programme yet: the reason shows


def test_a_long_reason_is_cut_on_the_display_but_whole_in_the_log(agent, caplog):
    long = SyncResult("error", reason="x" * 500, problem="refused")
    agent.syncer = FakeSyncer([long])
    caplog.set_level(logging.WARNING, logger="device_agent.agent")

    step(agent)

    assert "sync refused: " + "x" * 500 in caplog.text
    assert agent.hw.display.last == "同步失败 sync failed: " + "x" * 119 + "…"


def test_backoff_draws_from_the_upper_half_of_each_step():
    backoff = Backoff(30.0, 1800.0, random.Random(7))
    waits = [backoff.next_delay() for _ in range(10)]
    for n, wait in enumerate(waits):
        step_s = min(1800.0, 30.0 * 2 ** n)
        assert step_s / 2 <= wait <= step_s
    backoff.reset()
    assert 15.0 <= backoff.next_delay() <= 30.0
