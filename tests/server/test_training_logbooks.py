"""Site logbooks (四簿一册) from real events: the county of ``tests/server/test_reports.py`` (its class at t00-s00 on
12 October with M00000001's card check-in, the broadcasts at t00-s01), plus a command, a sync failure and a status
from t00-s00's terminal and an operator's feedback entry. Each book's rows are checked against the events that made
them, the XLSX is read back sheet by sheet, and the site-rules check lists the sites falling short."""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from lessoncast.cli import main

from server.events.models import DeviceStatus
from tests.attendance_data import _stamp
from tests.server.test_reports import local, make_county


@pytest.fixture
def county(services):
    c = make_county(services)
    c.devices.send("term-t00-s00", [
        {"type": "command", "command": "c-1", "name": "set-volume", "result": "ok", "message": "",
         **_stamp(local(10, 20, 9))},
        {"type": "error", "code": "sync_failed", "message": "network: timed out", **_stamp(local(10, 21, 3))}])
    with services.db.session() as session:
        session.add(DeviceStatus(device_uid="term-t00-s00", online=True, received_at=local(10, 30, 8),
                                 body={"online": True, "agent_version": "0.3.0", "storage_free_mb": 5000,
                                       "storage_total_mb": 8192, "manifest_version": 7, "sync": "idle",
                                       "sync_reason": ""}))
    return c


def test_a_months_logbooks_come_from_the_events(client, auth, services, county):
    services.clock = lambda: local(10, 25, 15)
    wrote = client.post("/api/v1/sites/t00-s00/feedback", json={"text": "投影仪灯泡偏暗，已报修"},
                        headers=auth("admin"))
    assert wrote.status_code == 201, wrote.get_json()
    body = client.get("/api/v1/sites/t00-s00/logbook?month=2026-10&lang=en", headers=auth("viewer")).get_json()
    assert body["meta"]["site"] == "t00-s00" and body["meta"]["period"] == "2026-10"
    viewing = [(r["date"], r["start"], r["end"], r["kind"], r["lessons"], r["minutes"], r["attendees"])
               for r in body["viewing"]]
    assert viewing == [("2026-10-12", "19:05", "19:25", "Class", "第1课", 25.0, "党员001")]
    operating = [(r["at"], r["event"], r["detail"], r["device"], r["version"]) for r in body["operating"]]
    assert operating == [
        ("2026-10-12T19:05:00", "In use", "19:05-19:25", "term-t00-s00", ""),
        ("2026-10-20T09:00:00", "Command", "set-volume: ok", "term-t00-s00", ""),
        ("2026-10-21T03:00:00", "Failure", "sync_failed: network: timed out", "term-t00-s00", ""),
        ("2026-10-30T08:00:00", "Online", "sync idle", "term-t00-s00", 7)]
    equipment = [(r["kind"], r["device"], r["enrolled"], r["agent"], r["storage"]) for r in body["equipment"]]
    assert equipment == [("radio", "r-t00-s00-000", "2026-09-01", "", ""),
                         ("terminal", "term-t00-s00", "2026-09-01", "0.3.0", "5000 / 8192")]
    roster = [(r["member_no"], r["role"], r["quota"], r["hours"]) for r in body["roster"]]
    assert roster == [("M00000000", "member", 32.0, 0.8), ("M00000001", "member", 32.0, 0.3),
                      ("M00000002", "member", 32.0, 0.0)]
    assert [(r["author"], r["source"], r["text"]) for r in body["feedback"]] == [
        ("test-admin", "operator", "投影仪灯泡偏暗，已报修")]

    broadcasts = client.get("/api/v1/sites/t00-s01/logbook?month=2026-10&lang=en", headers=auth("viewer")).get_json()
    assert [(r["date"], r["kind"], r["minutes"]) for r in broadcasts["viewing"]] == [
        ("2026-10-13", "Broadcast", 25.0), ("2026-10-14", "Broadcast", 25.0)]
    november = client.get("/api/v1/sites/t00-s00/logbook?month=2026-11", headers=auth("viewer")).get_json()
    assert november["viewing"] == [] and november["operating"] == [] and november["feedback"] == []


def test_the_logbook_workbook_reads_back_one_sheet_per_book_and_sites_falling_short(client, auth, token, county,
                                                                                    services, tmp_path, monkeypatch):
    xlsx = client.get("/api/v1/sites/t00-s00/logbook?month=2026-10&format=xlsx", headers=auth("viewer"))
    assert xlsx.status_code == 200
    check_the_workbook(io.BytesIO(xlsx.data))
    # the CLI writes the same workbook
    monkeypatch.setenv("LESSONCAST_DATA_DIR", str(services.settings.data_path))
    out = tmp_path / "logbook.xlsx"
    done = CliRunner().invoke(main, ["training", "logbook", "--site", "t00-s00", "--month", "2026-10", "-o", str(out)])
    assert done.exit_code == 0, done.output
    check_the_workbook(out)
    refused = CliRunner().invoke(main, ["training", "logbook", "--site", "nope", "--month", "2026-10"])
    assert refused.exit_code != 0 and "nope" in refused.output

    page = client.get("/api/v1/sites/t00-s00/logbook?month=2026-10&format=html", headers=auth("viewer"))
    html = page.data.decode()
    assert page.mimetype == "text/html" and html.count('class="logbook"') == 5
    assert "收看记录" in html and "检查人（签字）" in html and "党员001" in html and "style=" not in html
    check_sites_falling_short_of_the_site_rules(client, auth, token)


def check_the_workbook(source):
    book = load_workbook(source, read_only=True)
    assert book.sheetnames == ["说明", "收看记录", "运行维护记录", "设备登记簿", "学员花名册", "意见反馈记录"]
    viewing = list(book["收看记录"].iter_rows(values_only=True))
    assert viewing[0] == ("日期", "开始", "结束", "类型", "课程", "分钟", "签到人员")
    assert viewing[1][0].date() == date(2026, 10, 12) and viewing[1][1:] == ("19:05", "19:25", "集中学习", "第1课",
                                                                            25, "党员001")
    roster = list(book["学员花名册"].iter_rows(values_only=True))
    assert [r[0] for r in roster[1:]] == ["M00000000", "M00000001", "M00000002"] and roster[1][4] == 0.8
    equipment = list(book["设备登记簿"].iter_rows(values_only=True))
    assert [r[2] for r in equipment[1:]] == ["r-t00-s00-000", "term-t00-s00"]


def check_sites_falling_short_of_the_site_rules(client, auth, token):
    body = client.get("/api/v1/reports/site-rules?month=2026-10", headers=auth("viewer")).get_json()
    got = {s["site"]: (s["sessions"], s["viewing_hours"], s["classes_in_quarter"], s["short"]) for s in body["sites"]}
    assert got == {"t00-s00": (1, 0.4, 1, ["sessions", "viewing_hours"]),
                   "t00-s01": (0, 0.8, 0, ["sessions", "viewing_hours", "class_per_quarter"]),
                   "t01-s00": (0, 0.0, 1, ["sessions", "viewing_hours"]),
                   "t01-s01": (0, 0.0, 0, ["sessions", "viewing_hours", "class_per_quarter"])}
    operator = {"Authorization": f"Bearer {token('operator', township='t01')}"}
    assert client.get("/api/v1/sites/t00-s00/logbook?month=2026-10", headers=operator).status_code == 403
    assert client.post("/api/v1/sites/t00-s00/feedback", json={"text": "x"}, headers=operator).status_code == 403
    assert client.post("/api/v1/sites/t01-s00/feedback", json={"text": ""}, headers=operator).status_code == 422
    assert client.get("/api/v1/sites/t00-s00/logbook?month=2026-13", headers=auth("viewer")).status_code == 422
    assert client.get("/api/v1/sites/nope/logbook?month=2026-10", headers=auth("viewer")).status_code == 404
    own = client.get("/api/v1/reports/site-rules?month=2026-10", headers=operator).get_json()
    assert [s["site"] for s in own["sites"]] == ["t01-s00", "t01-s01"]
