"""The publish preview says who gets a programme and when: devices awaiting enrolment get it when they enrol,
enrolled ones fetch it in their download window (the next start named in the county's time), and "download now"
(urgent) makes them fetch it at once, through the notify the devices already read."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from playlists import topics
from playlists.payloads import decode_notify
from server.devices import registry as devices
from server.messaging.models import RetainedMessage
from server.programmes import publish, service as programmes

pytestmark = pytest.mark.databases  # each test that uses the instance runs on SQLite and on PostgreSQL

# 10:00 in the county (Asia/Shanghai): outside the default 00:00-06:00 download window.
NOW = datetime(2026, 12, 3, 2, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("window, at, expected", [
    (("00:00", "06:00"), datetime(2026, 12, 3, 2, 0, tzinfo=timezone.utc), "2026-12-04T00:00+08:00"),
    (("00:00", "06:00"), datetime(2026, 12, 2, 17, 0, tzinfo=timezone.utc), "2026-12-03T01:00+08:00"),  # inside
    (("22:00", "05:00"), datetime(2026, 12, 3, 2, 0, tzinfo=timezone.utc), "2026-12-03T22:00+08:00"),
    (("22:00", "05:00"), datetime(2026, 12, 3, 19, 30, tzinfo=timezone.utc), "2026-12-04T03:30+08:00"),  # inside
    (None, datetime(2026, 12, 3, 2, 0, tzinfo=timezone.utc), "2026-12-03T10:00+08:00"),
])
def test_fetch_time(window, at, expected):
    assert publish.fetch_time(window, "Asia/Shanghai", at).isoformat(timespec="minutes") == expected


def _ready_lesson(services) -> int:
    """A ready lesson with a radio and a terminal rendition, as the transcode jobs leave it (publishing reads the
    rows, not the files)."""
    from server.lessons.models import Lesson, Rendition

    with services.db.session() as session:
        lesson = Lesson(title="第一课", language="cmn", state="ready", created_at=NOW, updated_at=NOW)
        session.add(lesson)
        session.flush()
        for n, (profile, ext) in enumerate((("radio", "opus"), ("terminal-audio", "m4a")), 1):
            session.add(Rendition(lesson_id=lesson.id, profile=profile, state="ready", extension=ext,
                                  sha256=f"{n:064x}", size_bytes=1000 * n, duration_s=60.0, updated_at=NOW))
        return lesson.id


@pytest.fixture
def county(org, enrolled):
    services = org
    services.clock = lambda: NOW
    lesson = _ready_lesson(services)
    radio = enrolled("radio", site="qs-01")
    terminal = enrolled("terminal", site="qs-02")
    with services.db.session() as session:
        devices.add(services, session, kind="radio", name="未注册的收音机", site_code="qs-01", actor="test")
    devices.update(services, terminal["device"], {"settings": {"download_window": None}}, "test")
    pid = programmes.create(services, {"code": "2026-Q4", "title": "四季度", "valid_from": "2026-10-01",
                                       "valid_until": "2026-12-31", "items": [{"lesson": lesson}]}, "test")
    return services, pid, radio, terminal


def test_the_preview_names_who_gets_it_and_when_and_download_now_reaches_the_devices(county, client, auth,
                                                                                     monkeypatch):
    services, pid, radio, terminal = county
    preview = client.get(f"/api/v1/programmes/{pid}/preview", headers=auth("media")).get_json()
    assert preview["devices_affected"] == 2 and preview["devices_awaiting_enrolment"] == 1
    assert preview["urgent"] is False
    assert sorted(preview["downloads"], key=lambda d: d["devices"] if d["window"] else 0) == [
        {"window": None, "timezone": "Asia/Shanghai", "devices": 1, "fetch_at": "2026-12-03T10:00+08:00"},
        {"window": ["00:00", "06:00"], "timezone": "Asia/Shanghai", "devices": 1,
         "fetch_at": "2026-12-04T00:00+08:00"}]
    urgent = client.get(f"/api/v1/programmes/{pid}/preview?urgent=1", headers=auth("media")).get_json()
    assert urgent["urgent"] is True and {d["fetch_at"] for d in urgent["downloads"]} == {"2026-12-03T10:00+08:00"}

    from lessoncast.cli import main
    from server.cli import programmes as programme_commands

    # The commands run on this instance with its fixed clock. Only the name `publish` looks up is replaced: patching
    # server.cli.common's too made a first import of server.cli.programmes bind the replacement for good, and a
    # later test's `programme create` then reached this test's database.
    monkeypatch.setenv("LESSONCAST_DATA_DIR", str(services.data))
    monkeypatch.setattr(programme_commands, "load_services", lambda: services)
    shown = CliRunner().invoke(main, ["publish", str(pid)], input="n\n")
    assert "devices awaiting enrolment: 1 (they get it when they enrol)" in shown.output, shown.output
    assert "download window 00:00-06:00 (Asia/Shanghai), next at 2026-12-04 00:00" in shown.output
    assert "--urgent" in shown.output

    done = CliRunner().invoke(main, ["publish", str(pid), "--yes", "--urgent"])
    assert done.exit_code == 0, done.output
    assert "download now: 1 devices fetch it at once" in done.output
    with services.db.session() as session:
        payload = session.get(RetainedMessage, topics.notify(radio["channel"])).payload
    assert decode_notify(payload).urgent is True and json.loads(payload)["urgent"] is True
