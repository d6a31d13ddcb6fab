"""A terminal agent syncs a programme whose broadcast plays Monday to Friday: over real HTTP, TUF and MQTT it
verifies and installs the schema 2 manifest and keeps the slot's days, and a radio of the same publish still gets
schema 1 (radios have no slots)."""

from server.programmes import publish, service as programmes
from tests.e2e.agent_harness import add_and_enrol, poll, start_agent

WEEKDAYS_ONLY = ("mon", "tue", "wed", "thu", "fri")


def test_a_terminal_installs_the_weekday_slot_and_a_radio_still_gets_schema_1(broker, org, ready_lesson,
                                                                                live_server, tmp_path):
    services = org
    lesson = ready_lesson("第一课", 2.0)
    terminal = add_and_enrol(services, live_server, tmp_path / "terminal", kind="terminal", site="hw-01")
    radio = add_and_enrol(services, live_server, tmp_path / "radio", kind="radio", site="hw-01")
    pid = programmes.create(services, {"code": "2026-Q4", "title": "第四季度", "valid_from": "2026-10-01",
                                       "valid_until": "2026-12-31", "items": [{"lesson": lesson}],
                                       "slots": [{"time": "07:00", "days": list(WEEKDAYS_ONLY)},
                                                 {"time": "19:30", "kind": "class"}]}, "test")
    publish.publish(services, pid, "test")
    agents = [start_agent(store) for store in (terminal, radio)]
    try:
        for running in agents:
            poll(lambda: running.agent.manifest is not None and running.agent.manifest.items, 60, "the programme")
        t, r = (running.agent.manifest for running in agents)
        assert t.schema == 2 and [(s.time, s.days) for s in t.slots] == [
            ("07:00", WEEKDAYS_ONLY), ("19:30", ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))]
        assert r.schema == 1 and r.slots == ()
        assert agents[0].agent.sync_state != "error", agents[0].agent.sync_reason
    finally:
        for running in agents:
            running.halt()
            running.agent.outbox.close()
