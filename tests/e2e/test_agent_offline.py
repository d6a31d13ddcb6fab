"""A boat six weeks out of range (a fast simulated clock): it keeps playing its slots, records over 10,000 events,
reports stale, and when it is back in range delivers every event exactly once."""

import time
from datetime import datetime, timedelta, timezone

from server import programmes, publish
from tests.e2e.agent_harness import (add_and_enrol, covered_exactly_once, fast_options, poll, server_events,
                                     start_agent, start_ingest)
from tests.e2e.tcp_proxy import TcpProxy
from firmware_stub.sim import SimClock

SIX_WEEKS = 42 * 86400


def test_six_weeks_offline_then_everything_arrives_once(broker, org, ready_lesson, live_server, tmp_path):
    services = org
    lesson = ready_lesson("第一课", 20.0)
    pid = programmes.create(services, {"code": "2026-winter", "title": "冬训", "valid_from": "2026-10-01",
                                       "valid_until": "2027-03-31", "items": [{"lesson": lesson}],
                                       "slots": [{"time": "07:00", "kind": "broadcast"},
                                                 {"time": "19:30", "kind": "class"}]}, "test")
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
    running = start_agent(store, clock=clock, options=fast_options(tick_s=30.0, batch_size=200))
    try:
        poll(lambda: running.agent.manifest and running.agent.link.connected.is_set(), 30, "the first sync")
        mqtt_link.cut()
        http_link.cut()
        poll(lambda: not running.agent.link.connected.is_set(), 10, "the link to drop")
        start = clock.now()
        clock.set_speed(200_000.0)  # six weeks in about 20 s
        day = 0
        while clock.now() - start < timedelta(seconds=SIX_WEEKS):
            if (clock.now() - start).days >= day:  # 250 check-ins a day at the sea branch's meetings
                for n in range(250):
                    running.hw.checkin.present("card", f"D{day:02d}-{n:03d}")
                day += 1
                running.agent.wake.set()
            time.sleep(0.01)
        clock.set_speed(1.0)
        status = running.agent.status()
        assert status["stale"], "six weeks without a refresh: the metadata expired"
        assert running.agent.manifest is not None, "it kept its verified programme"
        depth = running.agent.outbox.depth()
        assert depth > 10_000, depth
        pending = running.agent.outbox.pending(100_000)
        slot_plays = [e for e in pending if e["type"] == "play" and e.get("trigger") == "schedule"
                      and e.get("phase") == "started"]
        assert len(slot_plays) >= 70, f"it kept playing its daily slots: {len(slot_plays)} plays"

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
