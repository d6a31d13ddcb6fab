"""A terminal records the check-ins its reader read since the last round in one commit, in the order read."""

from __future__ import annotations

from datetime import datetime, timezone

from device_agent.agent import Agent, AgentOptions
from device_agent.store import AgentStore
from firmware_stub.sim import SimClock, sim_hardware

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=timezone.utc)


def test_a_burst_of_checkins_is_one_commit_in_reading_order(tmp_path):
    store = AgentStore(tmp_path / "agent")
    store.ensure()
    store.write_json("credentials.json", {
        "device": "t-0000000001", "kind": "terminal", "http_token": "lcd_x",
        "mqtt": {"host": "127.0.0.1", "port": 9, "username": "t-0000000001", "password": "p"},
        "metadata_url": "http://127.0.0.1:9/tuf/metadata/", "targets_url": "http://127.0.0.1:9/tuf/targets/",
        "media_base_url": "http://127.0.0.1:9/", "config": {"device": "t-0000000001", "channel": None}},
        private=True)
    agent = Agent(store, sim_hardware("terminal", store.media_dir, clock=SimClock(T0)), AgentOptions())
    try:
        commits = []
        record_many = agent.outbox.record_many
        agent.outbox.record_many = lambda batch: commits.append(len(batch)) or record_many(batch)
        for n in range(250):
            agent.hw.checkin.present("card" if n % 2 else "qr", f"M-{n:03d}")
        agent.step()
        assert [c for c in commits if c] == [250], "one commit for the burst, not one fsync per member"
        pending = agent.outbox.pending(1000)
        assert [e["credential"] for e in pending] == [f"M-{n:03d}" for n in range(250)]
        assert [e["seq"] for e in pending] == list(range(1, 251))
        agent.step()
        assert agent.outbox.depth() == 250, "nothing recorded twice"
    finally:
        agent.outbox.close()
