"""The fleet simulator against a real stack (Mosquitto, the app on a real port, the ingest): 30 devices enrolled
through the staff API, driven by one event loop on a fast clock. Every device verifies the first and then a second
manifest, every play a device recorded is stored exactly once, and a radio handed over credits its new holder."""

from __future__ import annotations

import threading
from datetime import date, timedelta

from sqlalchemy import select

from device_agent.fleet import enrolment, simulator
from device_agent.fleet.behaviour import Habits
from device_agent.fleet.mux import Mux
from server.attendance.models import LessonCoverage
from server.devices import registry as devices
from server.org import service as org_service
from server.org.models import Member
from tests.e2e.agent_harness import covered_exactly_once, poll, publish_lessons, server_events, start_ingest

MEMBERS = ("member_id,name,site_code\n" + "".join(f"M{n:03d},成员{n},{('qs-01', 'qs-02', 'hw-01')[n % 3]}\n"
                                                 for n in range(30))).encode()
SITES = ["qs-01", "qs-02", "hw-01"]


def test_thirty_devices_verify_play_and_deliver_exactly_once(broker, org, ready_lesson, live_server, token, tmp_path):
    services, base = org, live_server
    org_service.import_members(services, MEMBERS, "test")
    lessons = [ready_lesson("第一课", 2.0), ready_lesson("第二课", 2.5)]
    api = enrolment.StaffApi(base, token("admin"))
    added = enrolment.add_devices(api, radios=27, terminals=3, sites=SITES)
    for d in added:  # no download window: a new programme is fetched as soon as it is announced
        devices.update(services, d["id"], {"settings": {"download_window": None}}, "test")
    radio = next(d["id"] for d in added if d["kind"] == "radio")
    since = (date.today() - timedelta(days=3)).isoformat()
    devices.update(services, radio, {"member": "M001", "member_from": since}, "test")
    api.hand_over(radio, "M002")  # from today on, its plays are M002's

    ingest = start_ingest(services)
    publish_lessons(services, lessons[:1])
    stores = enrolment.enrol_all(tmp_path / "fleet", base, [(d["id"], d["enrol_code"]) for d in added])
    mux = Mux(speed=60.0, tick_s=60.0, sync_threads=4, spread_s=2.0)
    habits = Habits(plays_per_day=400.0, hour_weights=(1.0,) * 24, boat_share=0.0, clock_resets_per_day=0.0,
                    handovers_per_day=0.0)
    fleet = simulator.build(mux, stores.values(), seed=7, habits=habits)
    thread = threading.Thread(target=mux.run, name="fleet", daemon=True)
    thread.start()
    try:
        poll(lambda: all(d.agent.manifest is not None for d in fleet), 90, "all 30 devices on the first manifest")
        first = {d.uid: d.agent.manifest.version for d in fleet}
        publish_lessons(services, lessons)
        poll(lambda: all(d.agent.manifest.version > first[d.uid] for d in fleet), 90,
             "all 30 devices on the second manifest")
        poll(lambda: sum(d.behaviour.counts.presses for d in fleet) >= 15, 60, "members pressing play")
        by_uid = {d.uid: d for d in fleet}
        poll(lambda: by_uid[radio].behaviour.counts.presses > 0, 60, "the handed-over radio played")
        for d in fleet:
            d.behaviour = None  # the people go home; what was recorded must now all arrive
        poll(lambda: sum(d.agent.outbox.depth() for d in fleet) == 0, 90, "every recorded event acknowledged")
        acked = {d.uid: d.agent.outbox.acked(d.agent.outbox.epoch) for d in fleet}
    finally:
        mux.stop_event.set()
        thread.join(timeout=30)
        mux.close()
        ingest.stop()

    plays = 0
    for d in fleet:
        rows = server_events(services, d.uid)
        assert covered_exactly_once(rows) == set(range(1, acked[d.uid] + 1)), f"{d.uid}: stored differ from sent"
        plays += sum(1 for _e, _s, _l, what in rows if what == "started")
    assert plays >= 15, f"only {plays} plays arrived"
    with services.db.session() as session:
        holders = dict(session.execute(select(Member.member_no, Member.id)).all())
        credited = set(session.scalars(select(LessonCoverage.member_id)).all())
    assert holders["M002"] in credited, "the radio's new holder was credited"
    assert holders["M001"] not in credited, "the radio's former holder is not credited for today's plays"
