"""Power cuts: the agent process is SIGKILLed 20 times at random points while it syncs and plays. Afterwards the
device plays a complete verified programme, never used a partial file, and the server has every event exactly once."""

import hashlib
import json
import os
import random
import signal
import subprocess
import time

import pytest

from playlists import topics
from playlists.manifest import media_of, parse_manifest
from server.messaging.mqtt_link import BrokerAddress, ServerLink
from server.programmes import service as programmes, publish
from server.programmes.models import Channel
from tests.e2e.agent_harness import add_and_enrol, covered_exactly_once, poll, server_events, start_ingest
from tests.e2e.stack import VENV_BIN

pytestmark = pytest.mark.long_running(60)  # seconds of a worker; see tests/conftest.py

CUTS = 20


def _agent_env(store_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LESSONCAST_")}
    env.update({"LESSONCAST_AGENT_DIR": str(store_dir), "LESSONCAST_AGENT_TEST_FAST": "1",
                "LESSONCAST_AGENT_TICK": "0.2", "LESSONCAST_AGENT_PROGRESS": "1", "LESSONCAST_AGENT_RESEND": "1"})
    return env


def _start(store_dir, log):
    return subprocess.Popen([str(VENV_BIN / "lessoncast"), "agent", "run", "--hal", "sim", "--speed", "2"],
                            env=_agent_env(store_dir), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _ran(services, device: str, command_id: str) -> bool:
    """Whether the server stored DEVICE's report of running the command COMMAND_ID."""
    from sqlalchemy import select

    from server.events.models import DeviceEvent

    with services.db.session() as session:
        bodies = session.scalars(select(DeviceEvent.body).where(DeviceEvent.device_uid == device,
                                                                DeviceEvent.type == "command")).all()
    return any(body.get("command") == command_id for body in bodies)


def _publish(services, lessons, first=False):
    items = [{"lesson": lesson} for lesson in lessons]
    if first:
        pid = programmes.create(services, {"code": "Q4", "title": "第四季度", "valid_from": "2026-10-01",
                                           "valid_until": "2026-12-31", "items": items}, "test")
    else:
        pid = programmes.new_version(services, "Q4", "test")
        programmes.update(services, pid, {"items": items}, "test")
    publish.publish(services, pid, "test")


def test_twenty_power_cuts(broker, org, ready_lesson, live_server, tmp_path):
    services = org
    lessons = [ready_lesson(f"第{n}课", 6.0 + n) for n in range(1, 5)]
    store = add_and_enrol(services, live_server, tmp_path / "radio")
    device = store.credentials()["device"]
    _publish(services, lessons[:2], first=True)
    ingest = start_ingest(services)
    rng = random.Random(20261122)
    log = open(tmp_path / "agent.log", "ab")
    link = ServerLink(BrokerAddress.from_services(services), "test").connect()
    try:
        for cut in range(CUTS):
            if cut % 4 == 2:  # a new programme: the next run has files to download when the power goes
                _publish(services, rng.sample(lessons, 2 + cut % 3))
            proc = _start(store.root, log)
            command = {"id": f"cut-{cut}", "type": "play-now", "programme": "Q4", "position": 1,
                       "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            link.publish(topics.cmd(device), json.dumps(command).encode(), expiry_s=86400)
            time.sleep(rng.uniform(0.8, 3.5))
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

        # Power stays on: the device settles, plays once more and delivers everything.
        proc = _start(store.root, log)
        final = {"id": "final", "type": "play-now", "programme": "Q4", "position": 1,
                 "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        link.publish(topics.cmd(device), json.dumps(final).encode(), expiry_s=86400)

        with services.db.session() as session:
            latest = session.get(Channel, json.loads(store.current_manifest() or b"{}").get("channel") or
                                 store.read_json("config.json")["channel"]).manifest

        def settled():
            from device_agent.outbox import Outbox

            if store.current_manifest() != latest:
                return False
            outbox = Outbox(store.outbox_path)
            try:
                if outbox.depth() != 0:
                    return False
                acked = outbox.acked(outbox.epoch)
            finally:
                outbox.close()
            # Everything the device recorded is stored, up to its ack, and the final command ran. The play it
            # starts goes on recording progress after the command's own event, so that event need not be the last.
            stored = server_events(services, device)
            return (bool(stored) and stored[-1][2] == acked
                    and _ran(services, device, "final"))
        poll(settled, 90, "the device to settle on the latest programme with every event delivered")
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        link.close()
        ingest.stop()
        log.close()

    # A complete, verified programme: every file present, every file's bytes match its signed name.
    manifest = parse_manifest(store.current_manifest())
    for item in media_of(manifest).values():
        path = store.media_file(item.path)
        assert path.is_file(), f"{item.path} missing"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == item.sha256
    for path in store.media_dir.iterdir():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name.split(".")[0], "no partial file in media/"
    # Every event exactly once, no gap.
    rows = server_events(services, device)
    covered = covered_exactly_once(rows)
    assert covered == set(range(1, max(covered) + 1))
    from sqlalchemy import select

    from server.events.models import DeviceEvent
    from server.lessons.models import Rendition

    with services.db.session() as session:
        bodies = session.scalars(select(DeviceEvent.body).where(DeviceEvent.device_uid == device)).all()
        verified = set(session.scalars(select(Rendition.sha256)))
    played = {b["sha256"] for b in bodies if b.get("type") == "play"}
    assert played and played <= verified, "only verified renditions were ever played"
    assert sum(1 for b in bodies if b.get("type") == "play" and b.get("phase") == "started") >= 5
