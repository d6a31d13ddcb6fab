"""The make-up loop end to end: a class at a village terminal with 3 of its 5 members checked in (real agents on
simulated hardware, real Mosquitto, the real ingest); the sweep pushes the class's mandatory lesson as a make-up to
the two absent members' radios through the normal signed publish; both radios receive it, one plays it; the reports
then show 4 of 5 took part (1 by make-up) and, on the server's clock stepped past the 30-day deadline, 1 overdue.

Classes are 20 minutes in a county; here ``LESSONCAST_ATTENDANCE_CLASS_MINUTES`` is 0.01 so a 2-second lesson
started at the terminal makes one.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from server.attendance.models import ClassSession
from server.attendance.rules import Period
from server.org import service as org_service
from server.accounts.scope import COUNTY
from server.training import hours, makeup
from tests.conftest import free_port, make_services
from tests.e2e.agent_harness import add_and_enrol, completed_at, poll, publish_lessons, start_agent, start_ingest

MEMBERS = ("member_id,name,site_code,card_token\n" + "".join(
    f"M{n},党员{n},qs-01,CARD-{n}\n" for n in range(1, 6))).encode()


@pytest.fixture
def services(tmp_path):
    svc = make_services(tmp_path / "data", port=free_port(), mqtt_port=free_port(), mqtt_server_port=free_port(),
                        attendance_class_minutes=0.01, makeup_days=30)
    yield svc
    svc.db.dispose()


def makeup_items(running) -> list:
    manifest = running.agent.manifest
    return [i for i in manifest.items if i.programme.startswith("makeup-")] if manifest else []


def test_absent_members_get_the_lesson_on_their_radio_and_the_reports_count_it(broker, org, ready_lesson,
                                                                                live_server, tmp_path):
    services = org
    org_service.import_members(services, MEMBERS, "test")
    lesson = ready_lesson("第一课", 2.0)
    terminal = add_and_enrol(services, live_server, tmp_path / "terminal", kind="terminal", site="qs-01")
    radios = {no: add_and_enrol(services, live_server, tmp_path / f"radio-{no}", member_no=no) for no in ("M4", "M5")}
    publish_lessons(services, [lesson])
    ingest = start_ingest(services)
    agents = [start_agent(terminal, speed=4.0)] + [start_agent(store, speed=4.0) for store in radios.values()]
    term, radio4, radio5 = agents
    try:
        poll(lambda: term.agent.manifest, 30, "the terminal's programme")
        for n in (1, 2, 3):
            term.hw.checkin.present("card", f"CARD-{n}")
        term.agent.wake.set()
        term.hw.keys.press("play_pause")

        def class_with_attendees():
            with services.db.session() as session:
                row = session.scalar(select(ClassSession).where(ClassSession.is_class.is_(True)))
                return row and len(makeup._present(session, row.key)) == 3 and row
        klass = poll(class_with_attendees, 60, "the class with 3 attendees at the server")
        # The class is over once its check-in window closed; the sweep then pushes the make-ups.
        now = klass.ended_at + timedelta(seconds=services.rules.checkin_after_s + 1)
        published = makeup.sweep(services, now)
        assert published == [f"makeup-{klass.id}"]
        assert makeup.sweep(services, now) == [], "a class is handled once"
        poll(lambda: makeup_items(radio4) and makeup_items(radio5), 60, "the make-up item on both radios")
        item = makeup_items(radio4)[0]
        assert (item.lesson, item.mandatory) == (lesson, True)
        assert term.agent.manifest and not makeup_items(term), "the terminal's channel did not change"

        radio4.hw.keys.press("play_pause")
        poll(lambda: completed_at(services, "M4", lesson), 60, "M4's completed make-up at the server")
    finally:
        for running in agents:
            running.halt()
        ingest.stop()

    day = services.rules.local_day(klass.started_at)
    period = Period(day.isoformat(), "range", day, day)
    with services.db.session() as session:
        in_time = makeup.participation(session, period, services.rules, now)
        assert (in_time.members, in_time.attended, in_time.made_up, in_time.overdue) == (5, 3, 1, 0)
        assert (in_time.rate, in_time.rate_with_makeups) == (0.6, 0.8)
        after_deadline = klass.started_at + timedelta(days=30, minutes=1)  # the server's clock, stepped
        late = makeup.participation(session, period, services.rules, after_deadline)
        assert (late.attended, late.made_up, late.overdue) == (3, 1, 1)
        sites = makeup.by_site(makeup.owed(session), after_deadline)
        assert [(s.site, s.owed, s.done, s.late, s.overdue) for s in sites] == [("qs-01", 2, 1, 0, 1)]
        states = {o.member_no: o.state(after_deadline) for o in makeup.owed(session)}
        assert states == {"M4": "done", "M5": "overdue"}
        record = hours.member_hours(session, "M4", day.year, services.rules, hours.hour_rules_from(services.settings),
                                    COUNTY)
        assert [(s.kind, s.makeup) for s in record.sources] == [("lesson", True)], "marked as a make-up"
