"""Devices under faults of their own, with real agents on simulated hardware against a real Mosquitto, the web app
and the event ingest:

- half the devices are out of range for a simulated month (their clocks stepped a day at a time, each agent taking
  its round after every step), recording check-ins, then come back at the same moment: a thundering herd the agents'
  reconnect jitter must smooth. The fleet runs in the fleet simulator's one selector loop (``device_agent.fleet``,
  the agents' own code), so the full size needs no thread per device. The reconnect spread and the busiest second
  are measured, and every check-in arrives once;
- clock chaos: device clocks jump to 1970, a year ahead and back while members check in; every check-in arrives
  once.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from device_agent.fleet import simulator
from device_agent.fleet.mux import Mux
from device_agent.fleet.simulator import fleet_options
from device_agent.link import LinkOptions
from firmware_stub.sim import SimClock
from server.org.cards import digest
from tests.e2e.agent_harness import add_and_enrol, fast_options, poll, publish_lessons, start_agent, start_ingest
from tests.e2e.faults.accounting import Account, rows_checksum, scaled
from tests.e2e.tcp_proxy import TcpProxy

HERD = scaled(10, 200)  # half of them go to sea
CAP_S = scaled(4.0, 8.0)  # the reconnect backoff's cap: after a month of failures every boat waits up to this long
BACKOFF_BASE_S = 0.25
DAY_STEPS = scaled(6, 30)  # the month at sea passes in this many clock jumps, each agent taking a round after each
HERD_CHECKINS = scaled(6, 30)  # per boat, spread over the month
CHAOS_DEVICES = scaled(2, 8)
CHECKINS = scaled(10, 100)


def _stored_checkins(services, uids) -> list[tuple]:
    from server.events.models import DeviceEvent

    with services.db.session() as session:
        rows = session.execute(select(DeviceEvent.device_uid, DeviceEvent.seq, DeviceEvent.body)
                               .where(DeviceEvent.device_uid.in_(uids))).all()
    return [(uid, seq, body["credential"], body.get("at") or body.get("time")) for uid, seq, body in rows
            if body.get("type") == "checkin"]


def _boat(services, base, store, proxies):
    mqtt_link, http_link = proxies
    creds = store.credentials()
    creds["mqtt"]["port"] = mqtt_link.port
    for key in ("metadata_url", "targets_url", "media_base_url", "repository_url"):
        if key in creds:
            creds[key] = creds[key].replace(f":{services.settings.port}/", f":{http_link.port}/")
    store.write_json("credentials.json", creds, private=True)


def _reconnect_times(boats, timeout: float) -> dict[str, float]:
    """Real seconds from now until each boat's link is up again."""
    back_at = time.monotonic()
    seen: dict[str, float] = {}
    deadline = back_at + timeout
    while len(seen) < len(boats) and time.monotonic() < deadline:
        for boat in boats:
            if boat.uid not in seen and boat.agent.link.connected.is_set():
                seen[boat.uid] = time.monotonic() - back_at
        time.sleep(0.02)
    return seen


def test_half_the_fleet_a_month_offline_then_back_at_once(broker, org, ready_lesson, live_server, tmp_path,
                                                          fault_account):
    services = org
    publish_lessons(services, [ready_lesson("第一课", 2.0)])
    proxies = TcpProxy(services.settings.mqtt_port), TcpProxy(services.settings.port)
    ingest = start_ingest(services)
    stores, boat_uids = [], set()
    for n in range(HERD):
        store = add_and_enrol(services, live_server, tmp_path / f"terminal{n:03d}", kind="terminal")
        if n % 2:
            _boat(services, live_server, store, proxies)
            boat_uids.add(store.credentials()["device"])
        stores.append(store)
    mux = Mux(speed=1.0, tick_s=1.0, sync_threads=4, spread_s=2.0)
    options = dataclasses.replace(fleet_options(), link=LinkOptions(backoff_base_s=BACKOFF_BASE_S,
                                                                    backoff_cap_s=CAP_S))
    fleet = simulator.build(mux, stores, behave=False, seed=HERD, options=options)
    loop = threading.Thread(target=mux.run, name="fleet-mux", daemon=True)
    loop.start()
    boats = [d for d in fleet if d.uid in boat_uids]
    try:
        poll(lambda: all(d.agent.manifest and d.agent.link.connected.is_set() for d in fleet), scaled(60, 300),
             "every device online with its programme")
        before = _stored_checkins(services, [d.uid for d in fleet])
        for proxy in proxies:
            proxy.cut()
        poll(lambda: not any(b.agent.link.connected.is_set() for b in boats), 30, "the boats out of range")
        sent = []
        for step in range(DAY_STEPS):  # a month at sea, a jump at a time; every agent takes a round after each
            for n, boat in enumerate(boats):
                for k in range(step * HERD_CHECKINS // DAY_STEPS, (step + 1) * HERD_CHECKINS // DAY_STEPS):
                    card = f"sea-{n:03d}-{k:03d}"
                    boat.agent.hw.checkin.present("card", card)
                    sent.append((boat.uid, digest(services.card_key, card)))
            steps = {b.uid: b.steps for b in boats}
            for boat in boats:
                boat.agent.hw.clock.advance(30 * 86400 / DAY_STEPS)
                mux.wake(boat)
            poll(lambda: all(b.steps > steps[b.uid] for b in boats), 60, "every boat's round after the jump")
        # Long enough offline (in real time) that every boat's reconnect backoff reached its cap.
        at_cap = math.ceil(math.log2(CAP_S / BACKOFF_BASE_S))
        poll(lambda: all(b.agent.link.attempt > at_cap for b in boats), 120, "every boat's backoff at its cap")
        for proxy in proxies:
            proxy.restore()
        seen = _reconnect_times(boats, CAP_S * 4 + 30)
        assert len(seen) == len(boats), f"only {len(seen)} of {len(boats)} boats reconnected"
        uids = [b.uid for b in boats]
        poll(lambda: len(_stored_checkins(services, uids)) >= len(sent), scaled(60, 180), "every check-in from sea")
        after = _stored_checkins(services, [d.uid for d in fleet])
    finally:
        mux.stop_event.set()
        loop.join(timeout=30)
        mux.close()
        for proxy in proxies:
            proxy.close()
        ingest.stop()
    times = sorted(seen.values())
    spread = times[-1] - times[0]
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    after_keys = {(r[0], r[1]): r for r in after}
    fault_account(Account.of(
        "half the fleet a month offline, back at once", sent,
        [(r[0], r[2]) for r in after if r[0] in boat_uids],
        intact_before=rows_checksum(before), intact_after=rows_checksum(after_keys.get((r[0], r[1])) for r in before),
        figures={"devices": len(fleet), "boats": len(boats), "reconnect_first_s": f"{times[0]:.2f}",
                 "reconnect_last_s": f"{times[-1]:.2f}", "reconnect_spread_s": f"{spread:.2f}",
                 "busiest_second": busiest, "backoff_cap_s": CAP_S}))
    # Full jitter: each boat's next try falls anywhere in [0, cap]; all of them within a tenth of it would be a herd.
    assert spread >= CAP_S / 10, f"the boats came back within {spread:.2f} s of each other: no jitter"
    if len(boats) >= 20:
        assert busiest < len(boats), f"all {len(boats)} boats reconnected within one second: no jitter"


def test_clock_chaos_on_devices(broker, org, ready_lesson, live_server, tmp_path, fault_account):
    services = org
    publish_lessons(services, [ready_lesson("第一课", 2.0)])
    ingest = start_ingest(services)
    agents = []
    try:
        for n in range(CHAOS_DEVICES):
            store = add_and_enrol(services, live_server, tmp_path / f"terminal{n}", kind="terminal")
            agents.append(start_agent(store, clock=SimClock(datetime.now(timezone.utc), speed=1.0),
                                      options=fast_options()))
        poll(lambda: all(a.agent.manifest and a.agent.link.connected.is_set() for a in agents), 60,
             "every device online")
        uids = [a.agent.device for a in agents]
        before = _stored_checkins(services, uids)
        true_now = datetime.now(timezone.utc)
        jumps = [datetime(1970, 1, 1, tzinfo=timezone.utc), true_now + timedelta(days=365),
                 true_now - timedelta(days=3), true_now + timedelta(hours=7), true_now]
        sent = []
        for step, moment in enumerate(jumps):
            for n, running in enumerate(agents):
                running.clock.set_wall(moment)  # an RTC reset, a wrong NTP answer, a correction
                for k in range(max(1, CHECKINS // len(jumps))):
                    card = f"chaos-{n}-{step}-{k:03d}"
                    running.hw.checkin.present("card", card)
                    sent.append((running.agent.device, digest(services.card_key, card)))
            time.sleep(1.0)  # a few ticks of the agent on this clock
        poll(lambda: len(_stored_checkins(services, uids)) >= len(sent) + len(before), 60, "every check-in")
        time.sleep(1.0)  # anything sent twice would arrive by now
        after = _stored_checkins(services, uids)
    finally:
        for running in agents:
            running.halt()
        ingest.stop()
    fault_account(Account.of(
        "clock chaos on devices", sent, [(r[0], r[2]) for r in after if r not in before],
        intact_before=rows_checksum(before), intact_after=rows_checksum(r for r in after if r in before),
        figures={"clock_jumps": len(jumps) * len(agents)}))
