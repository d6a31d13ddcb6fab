"""The department's quarter after real agents play: two radios (the agent's own code on simulated hardware, a real
Mosquitto and the real ingest) receive the published quarter; one member plays the lesson to the end, the other
does not. The dashboard then draws its bars with that member trained, and the home-visit list names the other
members and not the one who listened."""

from __future__ import annotations

from server.org import service as org_service
from tests.console.conftest import check_axe
from tests.console.test_department_quarter import _table, open_dashboard
from tests.e2e.agent_harness import add_and_enrol, completed_at, poll, publish_lessons, start_agent, start_ingest

MEMBERS = ("member_id,name,site_code\n" + "".join(f"M{n},党员{n},qs-01\n" for n in range(1, 4))).encode()


def test_after_the_agents_play_the_dashboard_shows_it(broker, org, ready_lesson, live_server, staff, page,
                                                      tmp_path):
    services = org
    org_service.import_members(services, MEMBERS, "test")
    lesson = ready_lesson("第一课", 2.0)
    radios = {no: add_and_enrol(services, live_server, tmp_path / f"radio-{no}", member_no=no) for no in ("M1", "M2")}
    publish_lessons(services, [lesson])  # 2026-Q4, which holds today
    ingest = start_ingest(services)
    agents = {no: start_agent(store, speed=4.0) for no, store in radios.items()}
    try:
        poll(lambda: all(a.agent.manifest for a in agents.values()), 60, "both radios' programme")
        agents["M1"].hw.keys.press("play_pause")
        poll(lambda: completed_at(services, "M1", lesson), 90, "M1's completed lesson at the server")
    finally:
        for running in agents.values():
            running.halt()
        ingest.stop()

    staff("org-dept", "viewer")
    open_dashboard(page, live_server, "org-dept", "2026-Q4")
    towns = _table(page, "#townships")
    assert (towns["qs"]["active"], towns["qs"]["trained"]) == ("3", "1"), towns
    visits = {r.get_attribute("data-member") for r in page.locator("#home-visits tbody tr").all()}
    assert {"M2", "M3"} <= visits and "M1" not in visits, visits
    check_axe(page)
