"""What staff see of a device: its retained status reaches the server; a programme that does not fit is refused
with a reason while the old one keeps playing; a re-enrolled device starts a new event epoch without losing any."""

from sqlalchemy import select

from server.devices import registry as devices
from server.events.models import DeviceStatus
from tests.e2e.agent_harness import (add_and_enrol, covered_exactly_once, poll, publish_lessons, server_events,
                                     start_agent, start_ingest)




def _status(services, device):
    with services.db.session() as session:
        row = session.get(DeviceStatus, device)
        return dict(row.body) if row else None


def test_status_reaches_the_server(broker, org, ready_lesson, live_server, tmp_path):
    services = org
    publish_lessons(services, [ready_lesson("第一课", 2.0)])
    store = add_and_enrol(services, live_server, tmp_path / "radio")
    ingest = start_ingest(services)
    running = start_agent(store)
    try:
        status = poll(lambda: (s := _status(services, running.agent.device)) and s.get("manifest_version") and s,
                      30, "a status with the synced programme")
        assert status["online"] and status["agent_version"] and status["stale"] is False
        assert status["storage_total_mb"] > 0 and status["battery"] is not None and status["queue"] >= 0
    finally:
        running.halt()
        ingest.stop()


def test_a_programme_that_does_not_fit_keeps_the_old_one(broker, org, ready_lesson, live_server, tmp_path):
    from device_agent.sync import RESERVE_BYTES
    from server.lessons.models import Rendition

    services = org
    small, big = ready_lesson("短课", 2.0), ready_lesson("长课", 40.0)
    with services.db.session() as session:
        sizes = {r.lesson_id: r.size_bytes for r in session.scalars(select(Rendition).where(Rendition.profile == "radio"))}
    publish_lessons(services, [small])
    store = add_and_enrol(services, live_server, tmp_path / "radio")
    running = start_agent(store, total_bytes=RESERVE_BYTES + sizes[small] + sizes[big] // 2)
    try:
        first = poll(lambda: running.agent.manifest and running.agent.manifest.version, 30, "the small programme")
        publish_lessons(services, [small, big])
        poll(lambda: "not enough storage" in running.agent.sync_reason, 30, "the refusal")
        assert running.agent.manifest.version == first, "the old programme keeps playing"
        assert running.agent.status()["sync"] == "error"
    finally:
        running.halt()


def test_re_enrolment_starts_a_new_epoch_and_loses_nothing(broker, org, ready_lesson, live_server, tmp_path):
    from device_agent.enrol import enrol

    services = org
    publish_lessons(services, [ready_lesson("第一课", 2.0)])
    store = add_and_enrol(services, live_server, tmp_path / "terminal", kind="terminal")
    device = store.credentials()["device"]
    ingest = start_ingest(services)
    running = start_agent(store)
    try:
        poll(lambda: running.agent.link.connected.is_set(), 20, "the connection")
        for n in range(20):
            running.hw.checkin.present("card", f"A{n}")
        poll(lambda: running.agent.outbox.depth() == 0 and len(server_events(services, device)) >= 20, 30,
             "epoch 1 delivered")
    finally:
        running.halt()
    # The SD card is replaced; staff give the terminal a new code and it enrols again.
    enrol(store, live_server, devices.reissue_code(services, device, "test"))
    assert store.read_json("config.json")["sequence_epoch"] == 2
    running = start_agent(store)
    try:
        poll(lambda: running.agent.link.connected.is_set(), 20, "the connection")
        for n in range(15):
            running.hw.checkin.present("card", f"B{n}")
        poll(lambda: running.agent.outbox.depth() == 0 and
             sum(1 for r in server_events(services, device) if r[0] == 2) >= 15, 30, "epoch 2 delivered")
    finally:
        running.halt()
        ingest.stop()
    rows = server_events(services, device)
    for epoch in (1, 2):
        mine = [r for r in rows if r[0] == epoch]
        covered = covered_exactly_once(mine)
        assert covered == set(range(1, max(covered) + 1))
    assert sum(1 for r in rows if r[0] == 2 and r[3] == "checkin") == 15


def test_staff_send_commands_and_read_status_over_the_api(broker, org, ready_lesson, live_server, tmp_path, client,
                                                           auth):
    services = org
    publish_lessons(services, [ready_lesson("第一课", 2.0)])
    store = add_and_enrol(services, live_server, tmp_path / "terminal", kind="terminal")
    device = store.credentials()["device"]
    ingest = start_ingest(services)
    running = start_agent(store)
    try:
        poll(lambda: running.agent.manifest and running.agent.link.connected.is_set(), 30, "the synced terminal")
        sent = client.post(f"/api/v1/devices/{device}/commands", headers=auth("admin"),
                           json={"type": "set-volume", "volume": 35})
        assert sent.status_code == 202, sent.get_json()
        poll(lambda: running.hw.audio.volume == 35, 20, "the new volume on the device")
        play = client.post(f"/api/v1/devices/{device}/commands", headers=auth("admin"),
                           json={"type": "play-now", "programme": "Q4", "position": 1})
        assert play.status_code == 202
        poll(lambda: running.agent.player.playing or any(a == "play" for a, *_ in running.hw.audio.history), 20,
             "the play-now")
        bad = client.post(f"/api/v1/devices/{device}/commands", headers=auth("admin"), json={"type": "format-disk"})
        assert bad.status_code == 422 and bad.get_json()["error"]["code"] == "bad_command"

        def results():
            with services.db.session() as session:
                from server.events.models import DeviceEvent

                bodies = session.scalars(select(DeviceEvent.body).where(DeviceEvent.device_uid == device)).all()
            return {b["command"]: b["result"] for b in bodies if b.get("type") == "command"}
        outcome = poll(lambda: len(results()) >= 2 and results(), 30, "both command results at the server")
        assert outcome == {sent.get_json()["id"]: "done", play.get_json()["id"]: "done"}
        status = poll(lambda: (s := client.get(f"/api/v1/devices/{device}/status", headers=auth("viewer")).get_json())
                      and s["status"] and s, 20, "the status over the API")
        assert status["online"] and status["status"]["manifest_version"]
    finally:
        running.halt()
        ingest.stop()
