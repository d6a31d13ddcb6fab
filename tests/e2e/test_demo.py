"""`lessoncast demo` as a newcomer runs it: `lessoncast run` in one terminal, the demo in another. It builds the
county (the small size, for time), transcodes its spoken lessons with the running worker, publishes them, and runs
the simulated fleet: plays arrive at the server and attendance rows appear."""

import signal
import subprocess

import pytest
from sqlalchemy import func, select

from server.attendance.models import LessonCoverage, SessionAttendee
from server.devices.models import Device
from server.events.models import DeviceEvent
from tests.conftest import make_services
from tests.e2e.stack import VENV_BIN, get_json, stack_env, start, stop, wait_for

pytestmark = pytest.mark.long_running(50)  # seconds of a worker; see tests/conftest.py


def test_demo_county_lives(tmp_path):
    data = tmp_path / "data"
    env = stack_env(data)
    base = f"http://127.0.0.1:{env['LESSONCAST_PORT']}"
    log = tmp_path / "run.log"
    stack = start(["run"], env, log)
    try:
        wait_for(lambda: get_json(f"{base}/healthz")[0] == 200, 90, "a healthy stack", log)
        demo = subprocess.run([str(VENV_BIN / "lessoncast"), "demo", "--size", "small", "--speed", "300",
                               "--duration", "15", "--report-every", "5"],
                              env={**env, "LESSONCAST_LANGUAGE": "en"}, capture_output=True, text=True, timeout=400)
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        assert "programme DEMO-" in demo.stdout and "county:" in demo.stdout, demo.stdout[-2000:]
        services = make_services(data)
        with services.db.session() as session:
            enrolled = session.scalar(select(func.count()).select_from(Device).where(Device.enrolled_at.is_not(None)))
            plays = session.scalars(select(DeviceEvent.body)).all()
            credited = session.scalar(select(func.count(func.distinct(LessonCoverage.member_id))))
            attendees = session.scalar(select(func.count()).select_from(SessionAttendee))
        assert enrolled == 10, "every radio and terminal of the small county enrolled"
        assert sum(1 for body in plays if body.get("type") == "play" and body.get("phase") == "started") > 0, \
            "plays arrived"
        assert credited > 0 or attendees > 0, "attendance rows appeared"
    finally:
        assert stop(stack, signal.SIGINT, timeout=60) == 0, log.read_text()[-3000:]
