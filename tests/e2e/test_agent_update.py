"""Three real agents, each in its own install and data directory, update themselves through the signed channel: a
release goes out in two stages (the second starts by itself when the first passes), then a broken release fails on
its first device, which rolls back by itself and reports why, and the rollout pauses at its error threshold. Every
event the outboxes hold reaches the server exactly once throughout."""

from __future__ import annotations

import os
import signal
import subprocess
import threading

import pytest
from sqlalchemy import select

from device_agent.outbox import Outbox
from device_agent.update import InstallDir
from server.agent_releases import releases, rollouts
from server.events.models import DeviceEvent, DeviceStatus
from tests.e2e.agent_harness import add_and_enrol, covered_exactly_once, poll, publish_lessons, server_events, \
    start_ingest
from tests.e2e.agent_releases import build_wheels, install_first_release

pytestmark = pytest.mark.long_running(70)  # seconds of a worker; see tests/conftest.py

GOOD, NEXT, BROKEN = "0.9.1", "0.9.2", "0.9.3"


@pytest.fixture(scope="session")
def agent_wheels(tmp_path_factory):
    """The three releases' wheels and the dependencies, built once for every worker of the session."""
    base = tmp_path_factory.getbasetemp().parent / "agent-release-wheels"
    base.mkdir(exist_ok=True)
    return build_wheels(base, {GOOD: False, NEXT: False, BROKEN: True})


def _launch(root, log):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LESSONCAST_", "PYTHON", "VIRTUAL_ENV"))}
    env.update({"LESSONCAST_AGENT_TEST_FAST": "1", "LESSONCAST_AGENT_TICK": "0.2", "LESSONCAST_AGENT_RESEND": "1"})
    launcher = root / "install" / "releases" / GOOD / "bin" / "lessoncast"
    return subprocess.Popen([str(launcher), "agent", "launch", "--install", str(root / "install"), "--data",
                             str(root / "data"), "--trial-s", "120", "--restart-s", "0.5", "--hal", "sim"],
                            env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _status(services, uid):
    with services.db.session() as session:
        row = session.get(DeviceStatus, uid)
        return (row.agent_version, (row.body or {}).get("update")) if row else (None, None)


def _updates(services, uid):
    with services.db.session() as session:
        bodies = session.scalars(select(DeviceEvent.body).where(DeviceEvent.device_uid == uid,
                                                                DeviceEvent.type == "update")
                                 .order_by(DeviceEvent.seq)).all()
    return [(b["result"], b["version"], b["reason"]) for b in bodies]


def _delivered(services, root, uid) -> bool:
    outbox = Outbox(root / "data" / "outbox.db")
    try:
        if outbox.depth() != 0:
            return False
        acked = outbox.acked(outbox.epoch)
    finally:
        outbox.close()
    stored = server_events(services, uid)
    return bool(stored) and stored[-1][2] == acked


def test_a_staged_rollout_a_rollback_and_a_pause(broker, org, ready_lesson, live_server, tmp_path, agent_wheels):
    services = org
    wheels, deps = agent_wheels
    publish_lessons(services, [ready_lesson("第1课", 4.0)])
    roots, uids = [], []
    for n in range(3):
        root = tmp_path / f"agent{n}"
        store = add_and_enrol(services, live_server, root / "data")
        roots.append(root)
        uids.append(store.credentials()["device"])
    installs = [threading.Thread(target=install_first_release, args=(InstallDir(r / "install"), GOOD, wheels, deps))
                for r in roots]
    for thread in installs:
        thread.start()
    for release in (NEXT, BROKEN):
        releases.add(services, wheels / f"lessoncast-{release}-py3-none-any.whl", deps, "test")
    for thread in installs:
        thread.join(timeout=600)
    assert all((r / "install" / "current" / "bin" / "lessoncast").exists() for r in roots)

    ingest = start_ingest(services)
    logs = [open(r / "launcher.log", "ab") for r in roots]
    procs = [_launch(r, log) for r, log in zip(roots, logs)]
    try:
        poll(lambda: all(_status(services, uid)[0] == GOOD for uid in uids), 120, f"three agents reporting {GOOD}")

        # Two stages: one device, then the county. The second starts by itself when the first passes.
        first = rollouts.create(services, {"release": NEXT, "stages": [
            {"kind": "devices", "count": 1, "success_pct": 100, "error_pct": 50, "time_limit_min": 30},
            {"kind": "county", "success_pct": 100, "error_pct": 50, "time_limit_min": 30}]}, "test")
        stage1 = first["stages"][0]
        assert stage1["devices"] == 1 and first["stages"][1]["devices"] == 0
        poll(lambda: rollouts.show(services, first["id"])["current_stage"] == 1, 150,
             "stage 1 passing and stage 2 starting by itself")
        poll(lambda: rollouts.show(services, first["id"])["state"] == "done", 200, "stage 2 passing")
        for uid in uids:
            version, update = _status(services, uid)
            assert version == NEXT and update["state"] == "healthy", (uid, version, update)
            assert [u[:2] for u in _updates(services, uid)] == [("installed", NEXT), ("healthy", NEXT)]

        # A broken release: its first device rolls back by itself, says why, and the rollout pauses.
        second = rollouts.create(services, {"release": BROKEN, "stages": [
            {"kind": "devices", "count": 1, "success_pct": 100, "error_pct": 0, "time_limit_min": 30},
            {"kind": "county", "success_pct": 100, "error_pct": 0}]}, "test")
        victim = sorted(uids)[0]
        poll(lambda: rollouts.show(services, second["id"])["state"] == "paused", 150,
             "the rollout pausing at its error threshold")
        paused = rollouts.show(services, second["id"])
        assert "error threshold" in paused["reason"] and paused["stages"][1]["devices"] == 0
        reason = paused["stages"][0]["failures"][victim]
        assert "exited with code 1 at start" in reason and "this build is broken" in reason
        version, update = _status(services, victim)
        assert version == NEXT and update["state"] == "failed" and update["version"] == BROKEN
        assert [u[:2] for u in _updates(services, victim)][-2:] == [("installed", BROKEN), ("rolled_back", BROKEN)]
        assert os.readlink(roots[uids.index(victim)] / "install" / "current") == f"releases/{NEXT}"

        # Exactly once: every outbox drained, and the server holds each sequence number once, none missing.
        for root, uid in zip(roots, uids):
            poll(lambda: _delivered(services, root, uid), 60, f"{uid}'s outbox delivered")
            seen = covered_exactly_once(server_events(services, uid))
            assert seen == set(range(1, max(seen) + 1)), f"{uid}: a gap in the stored events"
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        ingest.stop()
        for log in logs:
            log.close()
