"""/healthz tells a busy process from a down one: heartbeats come from a thread of their own and go to a file first,
so an ingest (or worker) waiting for SQLite's write lock still beats and says it is busy; one holding work and
finishing none for too long is "stalled"; one that stopped or died is down."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import uuid

import pytest

from playlists import topics
from server.events.ingest_loop import Ingest
from server.health import checks as health
from server.health.beats import Beater, beat_dir, write_file_beat
from server.health.checks import check_ingest, check_worker
from server.jobs.worker import _Housekeeping
from tests.e2e.stack import wait_for
from tests.mqtt_client import MqttProbe

SILENCE_S = 1.0  # instead of 30 s, so the test need not wait half a minute


@pytest.fixture
def quick(monkeypatch):
    monkeypatch.setattr(health, "SILENCE_S", SILENCE_S)


def _publish_one(services, answer) -> None:
    device, mqtt = answer["device"], answer["mqtt"]
    probe = MqttProbe(services.settings.mqtt_port, mqtt["username"], mqtt["password"], client_id=device).connect()
    event = {"id": str(uuid.uuid4()), "seq": 1, "type": "note"}
    payload = json.dumps({"device": device, "epoch": 1, "events": [event]}).encode()
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("device", device), ("epoch", "1"), ("seq", "1-1")]
    probe.client.publish(topics.events(device), payload, qos=1, properties=props).wait_for_publish(5)
    probe.close()


def test_an_ingest_waiting_for_the_write_lock_is_busy_then_stalled_not_down(broker, enrolled, quick, monkeypatch):
    answer = enrolled("radio")
    ingest = Ingest(broker, client_id="lessoncast-ingest-health", beat_s=0.1).start()
    keeper = _Housekeeping(broker)
    worker_beat = Beater(broker, "worker", keeper.state, beat_s=0.1).start()
    holder = sqlite3.connect(broker.data / "lessoncast.db", isolation_level=None)
    try:
        assert ingest.subscribed.wait(10)
        wait_for(lambda: check_ingest(broker).get("state") == "idle", 10, "an idle ingest")
        # The file beats and the database beats come from separate threads: wait for both rows before the lock.
        wait_for(lambda: holder.execute("SELECT count(*) FROM process_beats WHERE name IN ('ingest', 'worker')")
                 .fetchone()[0] == 2, 10, "the first database beats")
        holder.execute("BEGIN IMMEDIATE")  # a long import, another ingest's commit, a backup...
        keeper.round_since = 0.0  # as when a housekeeping round waits for the database
        _publish_one(broker, answer)
        wait_for(lambda: ingest.in_hand, 10, "ingest to take the batch")
        # The database row of the beat cannot be written now; the beat files go on.
        wait_for(lambda: sqlite3.connect(broker.data / "lessoncast.db").execute(
            "SELECT (julianday('now') - julianday(max(seen_at))) * 86400 FROM process_beats").fetchone()[0]
            > 2 * SILENCE_S, 10, "the database beats to go stale")
        state = check_ingest(broker)
        assert state["up"] and state["state"] == "busy" and state["waiting"] == 1, state
        assert check_worker(broker)["up"] and check_worker(broker)["state"] == "busy"
        monkeypatch.setattr(health, "STALL_S", 0.5)
        state = wait_for(lambda: (s := check_ingest(broker))["up"] is False and s, 10, "a stalled ingest")
        assert state["state"] == "stalled" and "nothing finished" in state["error"], state
    finally:
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()
    monkeypatch.setattr(health, "STALL_S", 120.0)
    wait_for(lambda: check_ingest(broker).get("state") == "idle", 20, "the ingest to catch up")
    ingest.stop()
    worker_beat.stop()
    state = wait_for(lambda: (s := check_ingest(broker))["up"] is False and s, 10, "a stopped ingest to be down")
    assert "heartbeat" in state["error"]
    assert not list(beat_dir(broker).glob("ingest-*.json")), "a stopped ingest leaves no beat file"


def test_a_dead_process_beat_file_does_not_count(services, quick):
    path = write_file_beat(services, "ingest", {"state": "busy", "waiting": 3})
    assert check_ingest(services)["up"]
    dead = subprocess.Popen(["true"])
    dead.wait()
    body = json.loads(path.read_text())
    path.write_text(json.dumps({**body, "pid": dead.pid}))
    state = check_ingest(services)
    assert not state["up"] and "no ingest has ever started" in state["error"]
    assert not path.exists()
