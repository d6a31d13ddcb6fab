"""`lessoncast run` itself killed with SIGKILL while devices report: its children (web, worker, ingest, broker, nginx)
must die with it, a restart must find nothing running that it did not start, and no event is lost or stored twice.

A simulated fleet (``tests/e2e/fleet_sim.py``) sends half its plan, the supervisor is killed with SIGKILL (only its
own pid: what a crash or the OOM killer does), and every process of that stack must be gone within 30 s. The stack
is started again and the fleet sends the rest; the account then covers every event.
"""

from __future__ import annotations

import os
import random
import signal
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from server.devices import enrolment, registry as devices
from tests.conftest import make_services
from tests.e2e.faults.accounting import Account, rows_checksum, scaled
from tests.e2e.fleet_sim import Fleet, SimDevice, device_events, plan_batches, split_batches
from tests.e2e.stack import get_json, stack_env, start, stop, wait_for

DEVICES = scaled(5, 50)
EVENTS = scaled(20, 100)
BATCH = 10
# Each child gets SIGTERM from the kernel when the supervisor dies, and stops as it would on Ctrl-C: gunicorn's
# arbiter lets its workers finish (graceful_timeout, 30 s), the worker its job. On a busy machine running four test
# workers that takes longer than on an idle one, so the deadline is gunicorn's own.
ORPHAN_DEADLINE_S = 30


def stack_processes(data_dir: Path) -> list[int]:
    """Pids of processes whose environment names DATA_DIR as their LESSONCAST_DATA_DIR (every child of one stack)."""
    entry = f"LESSONCAST_DATA_DIR={data_dir}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if entry in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return "(gone)"


def _healthy(base: str):
    status, health = get_json(f"{base}/healthz")
    return status == 200 and health


def test_run_killed_with_sigkill_leaves_nothing_running(tmp_path, fault_account):
    data = tmp_path / "data"
    env = stack_env(data, ingest_processes=1)
    base = f"http://127.0.0.1:{env['LESSONCAST_PORT']}"
    services = make_services(data, port=int(env["LESSONCAST_PORT"]), mqtt_port=int(env["LESSONCAST_MQTT_PORT"]),
                             mqtt_server_port=int(env["LESSONCAST_MQTT_SERVER_PORT"]))
    with services.db.session() as session:
        codes = [devices.add(services, session, kind="radio", name=f"radio {n}", actor="test").code
                 for n in range(DEVICES)]
    answers = [enrolment.enrol(services, code) for code in codes]
    rng = random.Random(13)
    begin = datetime.now(timezone.utc) - timedelta(hours=1)
    sims = []
    for answer in answers:
        uid, epoch = answer["device"], answer["config"]["sequence_epoch"]
        evs = device_events(uid, epoch, EVENTS, begin, rng)
        sims.append(SimDevice(uid, answer["mqtt"]["password"], services.settings.mqtt_port, epoch, evs,
                              split_batches(uid, epoch, evs, BATCH), plan_batches(uid, epoch, evs, BATCH, rng)))
    fleet = Fleet(sims, resend_after_s=4.0, resend_window=3, rounds=2, seed=13)

    log = tmp_path / "run.log"
    run = start(["run"], env, log)
    orphans: list[int] = []
    try:
        wait_for(lambda: _healthy(base), 90, "a healthy stack", log)
        fleet.connect()
        fleet.start(rate=20.0)
        fleet.wait_until_progress(0.5, 60)
        before = _events(services, sims)

        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=10)
        killed_at = time.monotonic()
        deadline = killed_at + ORPHAN_DEADLINE_S
        while stack_processes(data) and time.monotonic() < deadline:
            time.sleep(0.2)
        gone_s = time.monotonic() - killed_at
        orphans = stack_processes(data)
        described = {pid: _cmdline(pid) for pid in orphans}
        for pid in orphans:  # this test started them: end them so the restart below can be checked too
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        run = start(["run"], env, log)
        wait_for(lambda: _healthy(base), 90, "the stack started again", log)
        assert fleet.plan_done.wait(120)
        fleet.wait_all_acked(90)
        after = {r[2]: r for r in _events(services, sims)}
    finally:
        fleet.stop()
        stop(run, signal.SIGINT)
        services.db.dispose()
    fault_account(Account.of(
        "lessoncast run killed with SIGKILL", [(d.uid, e["id"]) for d in sims for e in d.events],
        [(r[0], r[2]) for r in after.values()], intact_before=rows_checksum(before),
        intact_after=rows_checksum(after[r[2]] for r in before if r[2] in after),
        figures={"stored_before_fault": len(before), "orphans_after_kill": len(orphans),
                 "children_gone_after_s": f"{gone_s:.1f}"}))
    assert not orphans, (f"{len(orphans)} processes of the killed stack were still running "
                         f"{ORPHAN_DEADLINE_S} s later: {described}")


def _events(services, sims) -> list[tuple]:
    from sqlalchemy import select

    from server.events.models import DeviceEvent

    with services.db.session() as session:
        return [tuple(r) for r in session.execute(
            select(DeviceEvent.device_uid, DeviceEvent.seq, DeviceEvent.event_id, DeviceEvent.body)
            .where(DeviceEvent.device_uid.in_([d.uid for d in sims]))).all()]
