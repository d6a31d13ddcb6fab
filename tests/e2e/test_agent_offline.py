"""A boat six weeks out of range: it keeps playing its slots, records over 10,000 events, reports stale, and when it
is back in range delivers every event exactly once.

The six weeks run on a stepped clock: it moves from one wake-up of the agent to the next, each time after the agent
has finished its round, so every slot and every check-in happens at its time however busy the machine is. The
network phases before and after run in real time.
"""

import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from datetime import time as clock_time
from zoneinfo import ZoneInfo

from server.programmes import service as programmes, publish
from tests.e2e.agent_harness import (add_and_enrol, covered_exactly_once, fast_options, poll, server_events,
                                     start_agent, start_ingest)
from tests.e2e.tcp_proxy import TcpProxy
from firmware_stub.sim import SimClock

DAYS = 42
CHECKINS_A_DAY = 250  # the sea branch's meetings
TICK_S = 60.0
COUNTY = ZoneInfo("Asia/Shanghai")
SLOTS = {"broadcast": clock_time(7, 0), "class": clock_time(19, 30)}


def _local(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(COUNTY)


def test_six_weeks_offline_then_everything_arrives_once(broker, org, ready_lesson, live_server, tmp_path):
    services = org
    lesson = ready_lesson("第一课", 20.0)
    pid = programmes.create(services, {"code": "2026-winter", "title": "冬训", "valid_from": "2026-10-01",
                                       "valid_until": "2027-03-31", "items": [{"lesson": lesson}],
                                       "slots": [{"time": t.strftime("%H:%M"), "kind": kind}
                                                 for kind, t in SLOTS.items()]}, "test")
    publish.publish(services, pid, "test")
    store = add_and_enrol(services, live_server, tmp_path / "boat", kind="terminal", site="hw-01")
    # The boat reaches the broker and the server only through links the test can cut.
    mqtt_link, http_link = TcpProxy(services.settings.mqtt_port), TcpProxy(services.settings.port)
    creds = store.credentials()
    creds["mqtt"]["port"] = mqtt_link.port
    for key in ("metadata_url", "targets_url", "media_base_url", "repository_url"):
        creds[key] = creds[key].replace(f":{services.settings.port}/", f":{http_link.port}/")
    store.write_json("credentials.json", creds, private=True)
    ingest = start_ingest(services)
    clock = SimClock(datetime.now(timezone.utc), speed=1.0)
    running = start_agent(store, clock=clock, options=fast_options(tick_s=TICK_S, batch_size=200))
    try:
        poll(lambda: running.agent.manifest and running.agent.link.connected.is_set(), 30, "the first sync")
        mqtt_link.cut()
        http_link.cut()
        poll(lambda: not running.agent.link.connected.is_set(), 10, "the link to drop")

        clock.set_stepped()
        # The voyage starts at the next county midnight, hours from any slot, so each of its days holds exactly its
        # own two slots.
        first_day = clock.now().astimezone(COUNTY).date() + timedelta(days=1)
        clock.run_for((datetime.combine(first_day, clock_time(0), COUNTY) - clock.now()).total_seconds())
        real0 = time.monotonic()
        rounds = 0
        for day in range(DAYS):
            for n in range(CHECKINS_A_DAY):
                running.hw.checkin.present("card", f"D{day:02d}-{n:03d}")
            rounds += clock.run_for(86400)
        voyage_real_s = time.monotonic() - real0
        clock.set_speed(1.0)

        status = running.agent.status()
        assert status["stale"], "six weeks without a refresh: the metadata expired"
        assert running.agent.manifest is not None, "it kept its verified programme"
        depth = running.agent.outbox.depth()
        assert depth > 10_000, depth
        pending = running.agent.outbox.pending(100_000)
        voyage = {first_day + timedelta(days=d) for d in range(DAYS)}
        slot_plays = [e for e in pending if e["type"] == "play" and e.get("trigger") == "schedule"
                      and e.get("phase") == "started" and _local(e["started_at"]).date() in voyage]
        played = Counter((_local(e["started_at"]).date(), e["slot_kind"]) for e in slot_plays)
        assert played == Counter({(d, kind): 1 for d in voyage for kind in SLOTS}), \
            f"every slot of the {DAYS} days played once: {len(slot_plays)} plays"
        print(f"six weeks in {rounds} agent rounds, {voyage_real_s:.1f} real seconds: {len(slot_plays)} slot plays")
        for play in slot_plays:
            at = _local(play["started_at"])
            late = at - datetime.combine(at.date(), SLOTS[play["slot_kind"]], COUNTY)
            assert timedelta(0) <= late <= timedelta(seconds=TICK_S), f"{play['slot_kind']} slot started {late} late"
        checkins = [e for e in pending if e["type"] == "checkin"]
        assert len(checkins) == DAYS * CHECKINS_A_DAY
        for checkin in checkins:  # each recorded on the day it was presented, within one agent round
            day = int(checkin["credential"][1:3])
            at = _local(checkin["time"])
            assert at.date() == first_day + timedelta(days=day) and at.time() <= clock_time(0, 1), checkin

        mqtt_link.restore()
        http_link.restore()
        poll(lambda: running.agent.outbox.depth() == 0, 120, "every event to be delivered after the voyage")
        rows = server_events(services, running.agent.device)
        covered = covered_exactly_once(rows)
        assert covered == set(range(1, max(covered) + 1)) and len(covered) > 10_000
        poll(lambda: not running.agent.status()["stale"], 60, "a fresh refresh once back in range")
    finally:
        running.halt()
        ingest.stop()
        mqtt_link.close()
        http_link.close()
