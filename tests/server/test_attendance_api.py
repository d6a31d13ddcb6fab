"""The attendance HTTP API and command line over the real app and database: participation reports in JSON, CSV and
XLSX, an operator's township scope, attendees added and removed with an audit trail, manual classes and roster
imports (English, Chinese and GBK files, and files refused whole), the fleet table, a device's ingest record with its
sequence gaps, the ingest metrics, and ``lessoncast report`` / ``lessoncast attendance``.

The county is the one of ``tests/server/test_reports.py`` (townships t00 and t01, two sites each, three members per
site; a class with a card check-in at t00-s00, a class slot at t01-s00), its events stored through ingest.
"""

from __future__ import annotations

import csv
import io
import json

import pytest
import requests
from click.testing import CliRunner
from openpyxl import load_workbook
from sqlalchemy import func, select

from lessoncast.cli import main
from server.attendance import fold as attendance
from server.attendance.models import ClassSession, SessionAttendee
from server.audit import AuditEntry
from server.events import ingest
from server.events.models import DeviceEvent
from server.programmes.models import Programme
from tests.attendance_data import numbered, store
from tests.conftest import cli_env
from tests.server.test_reports import local, make_county, playing

pytestmark = pytest.mark.databases  # each test runs on SQLite and on PostgreSQL

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
REPORT = "/api/v1/reports/participation"


@pytest.fixture
def county(services):
    return make_county(services)


@pytest.fixture
def operator(token, county):
    """Authorization headers of an operator of township t00 (which the county must have: tokens name real ones)."""
    return {"Authorization": f"Bearer {token('operator', township='t00')}"}


def csv_rows(data: bytes) -> list[list[str]]:
    assert data.startswith("\ufeff".encode()), "CSV is UTF-8 with a BOM"
    return list(csv.reader(io.StringIO(data.decode("utf-8").removeprefix("\ufeff"), newline="")))


def count(services, model) -> int:
    with services.db.session() as session:
        return session.scalar(select(func.count()).select_from(model))


def audit(services, action: str) -> list[AuditEntry]:
    with services.db.session() as session:
        rows = session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)).all()
        session.expunge_all()
        return rows


def site_numbers(body: dict) -> dict[str, tuple]:
    return {s["code"]: (s["active"], s["trained"], s["rate"], s["classes"]) for s in body["sites"]}


# ---------------------------------------------------------------------------------------------------------------
# Participation reports


def test_participation_report_as_json_csv_and_xlsx(client, auth, county):
    as_json = client.get(f"{REPORT}?period=2026-Q4", headers=auth("viewer"))
    assert as_json.status_code == 200, as_json.get_json()
    assert as_json.content_type == "application/json" and "Content-Disposition" not in as_json.headers
    body = as_json.get_json()
    assert body["meta"]["period"] == "2026-Q4" and body["meta"]["from"] == "2026-10-01"
    assert body["county"] == [{"level": "county", "township": "", "code": "county", "name": "", "active": 12,
                               "trained": 3, "rate": 0.25, "completed_all": 1, "classes": 2, "broadcast_days": 2,
                               "clock_flagged": 0}]
    assert site_numbers(body)["t00-s00"] == (3, 2, 0.6667, 1)

    as_csv = client.get(f"{REPORT}?period=2026-Q4&format=csv&table=sites", headers=auth("viewer"))
    assert as_csv.status_code == 200 and as_csv.content_type == "text/csv; charset=utf-8"
    assert as_csv.headers["Content-Disposition"] == 'attachment; filename="report-2026-Q4-sites.csv"'
    rows = csv_rows(as_csv.data)
    assert rows[0][:4] == ["层级", "乡镇代码", "代码", "名称"] and "参训率" in rows[0]
    assert [r[2] for r in rows[1:]] == ["t00-s00", "t00-s01", "t01-s00", "t01-s01"]
    english = client.get(f"{REPORT}?period=2026-Q4&format=csv&table=members&lang=en", headers=auth("viewer"))
    assert csv_rows(english.data)[0][0] == "Member number" and len(csv_rows(english.data)) == 13
    default_table = client.get(f"{REPORT}?period=2026-Q4&format=csv", headers=auth("viewer"))
    assert default_table.headers["Content-Disposition"].endswith('filename="report-2026-Q4-sites.csv"')

    as_xlsx = client.get(f"{REPORT}?period=2026-Q4&format=xlsx", headers=auth("viewer"))
    assert as_xlsx.status_code == 200 and as_xlsx.content_type == XLSX
    assert as_xlsx.headers["Content-Disposition"] == 'attachment; filename="report-2026-Q4.xlsx"'
    book = load_workbook(io.BytesIO(as_xlsx.data))
    assert book.sheetnames == ["说明", "全县", "乡镇", "村（点）", "党员", "本期未开课的村（点）", "本年度未参训党员（需上门）"]
    assert book["全县"]["G2"].value == 0.25


def test_a_programme_report_is_its_window_plus_the_grace_days(client, auth, county):
    programme = client.get(f"{REPORT}?programme=2026-Q4", headers=auth("viewer")).get_json()["meta"]
    assert (programme["kind"], programme["from"], programme["until"]) == ("programme", "2026-10-01", "2027-01-30")
    quarter = client.get(f"{REPORT}?period=2026-Q4", headers=auth("viewer")).get_json()["meta"]
    assert (quarter["kind"], quarter["until"]) == ("quarter", "2026-12-31")
    unknown = client.get(f"{REPORT}?programme=2030-Q1", headers=auth("viewer"))
    assert unknown.status_code == 422 and unknown.get_json()["error"]["code"] == "unknown_programme"
    both = client.get(f"{REPORT}?programme=2026-Q4&period=2026", headers=auth("viewer"))
    assert both.status_code == 400


BAD_REPORT_REQUESTS = [
    ("period=last-quarter", 422, "unknown_period"),
    ("period=2026-Q5", 422, "unknown_period"),
    ("period=2026-12-31..2026-01-01", 422, "unknown_period"),
    ("period=2026-Q4&format=pdf", 400, "bad_format"),
    ("period=2026-Q4&format=csv&table=lessons", 400, "bad_format"),
    ("period=2026-Q4&lang=fr", 400, "unknown_language"),
    ("", 400, "period_required"),
]


def test_bad_report_requests_are_refused_with_what_to_do(client, auth, county):
    for query, status, code in BAD_REPORT_REQUESTS:
        answer = client.get(f"{REPORT}?{query}", headers=auth("viewer"))
        assert (answer.status_code, answer.get_json()["error"]["code"]) == (status, code), query
        if code == "unknown_period":  # the message names every accepted form
            message = answer.get_json()["error"]["message"]
            assert all(form in message for form in ("(2026)", "(2026-Q4)", "(2026-01-01..2026-06-30)",
                                                    "programme")), message


def test_a_programme_with_a_chinese_code_downloads_over_real_http(services, county, token, live_server):
    with services.db.session() as session:  # the county also names a programme in Chinese
        q4 = session.scalar(select(Programme).where(Programme.code == "2026-Q4"))
        session.add(Programme(code="2026冬训", version=1, title="冬训", valid_from=q4.valid_from,
                              valid_until=q4.valid_until, slots=[], state="published", created_at=q4.created_at))
    answer = requests.get(f"{live_server}{REPORT}", params={"programme": "2026冬训", "format": "csv"}, timeout=20,
                          headers={"Authorization": f"Bearer {token('viewer')}"})
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert answer.headers["Content-Disposition"] == (
        "attachment; filename=\"report-2026__-sites.csv\"; filename*=UTF-8''report-2026%E5%86%AC%E8%AE%AD-sites.csv")
    assert csv_rows(answer.content)[1][2] == "t00-s00"


def test_reports_need_a_token(client, county):
    assert client.get(f"{REPORT}?period=2026-Q4").status_code == 401


# ---------------------------------------------------------------------------------------------------------------
# An operator's township


def test_an_operator_sees_and_edits_only_their_township(services, client, auth, operator, county):
    own = client.get(f"{REPORT}?period=2026-Q4", headers=operator)
    assert own.status_code == 200
    body = own.get_json()
    assert list(site_numbers(body)) == ["t00-s00", "t00-s01"] and body["meta"]["township"] == "t00"
    assert {m["township"] for m in body["members"] + body["untrained"]} == {"t00"}
    assert body["county"][0]["active"] == 6
    # Asking for another township is refused, not silently answered with their own.
    other = client.get(f"{REPORT}?period=2026-Q4&township=t01", headers=operator)
    assert other.status_code == 403 and other.get_json()["error"]["code"] == "other_township"
    same = client.get(f"{REPORT}?period=2026-Q4&township=t00", headers=operator).get_json()
    assert (same["sites"], same["members"]) == (body["sites"], body["members"])
    xlsx = client.get(f"{REPORT}?period=2026-Q4&format=xlsx", headers=operator)
    assert xlsx.headers["Content-Disposition"] == 'attachment; filename="report-2026-Q4-t00.xlsx"'
    sessions = client.get("/api/v1/sessions?period=2026-Q4", headers=operator).get_json()["sessions"]
    assert [s["site"] for s in sessions] == ["t00-s00"]

    added = client.put(f"/api/v1/sessions/{county.slot_key}/attendees/M01000002", headers=operator)
    assert added.status_code == 403 and added.get_json()["error"]["code"] == "other_township"
    assert client.get(f"/api/v1/sessions/{county.slot_key}/attendees", headers=operator).status_code == 403
    record = client.get("/api/v1/members/M01000001/record?period=2026", headers=operator)
    assert record.status_code == 403 and record.get_json()["error"]["code"] == "other_township"
    mine = client.get("/api/v1/members/M00000001/record?period=2026", headers=operator)
    assert mine.status_code == 200 and len(mine.get_json()["classes"]) == 1
    other_site = client.post("/api/v1/sessions", headers=operator, json={"site": "t01-s01", "date": "2026-11-20"})
    assert other_site.status_code == 403
    assert audit(services, "attendee.add") == [] and audit(services, "session.add") == []
    # A viewer reads but never edits.
    assert client.put(f"/api/v1/sessions/{county.class_key}/attendees/M00000002",
                      headers=auth("viewer")).status_code == 403


# ---------------------------------------------------------------------------------------------------------------
# Attendees, manual classes and rosters


def test_attendees_added_and_removed_with_an_audit_trail(services, client, operator, county):
    url = f"/api/v1/sessions/{county.class_key}/attendees"
    listed = client.get(url, headers=operator).get_json()["attendees"]
    assert listed == [{"member": "M00000001", "name": "党员001", "sources": ["checkin"], "removed": False,
                       "present": True}]
    added = client.put(f"{url}/M00000002", headers=operator)
    assert added.status_code == 200
    assert {a["member"]: a["sources"] for a in added.get_json()["attendees"]} == {
        "M00000001": ["checkin"], "M00000002": ["operator"]}
    removed = client.delete(f"{url}/M00000001", headers=operator, json={"reason": "left after five minutes"})
    assert removed.status_code == 200
    gone = next(a for a in removed.get_json()["attendees"] if a["member"] == "M00000001")
    assert (gone["sources"], gone["removed"], gone["present"], gone["removed_by"]) == (
        ["checkin"], True, False, "test-operator")
    [add] = audit(services, "attendee.add")
    [remove] = audit(services, "attendee.remove")
    assert (add.actor, add.subject, add.details) == ("test-operator", county.class_key, {"member": "M00000002"})
    assert (remove.subject, remove.details, remove.note) == (
        county.class_key, {"member": "M00000001"}, "left after five minutes")
    # The removal outranks the check-in in the report and the member's record.
    members = {m["member_no"]: m for m in client.get(f"{REPORT}?period=2026-Q4", headers=operator)
               .get_json()["members"]}
    assert (members["M00000001"]["classes"], members["M00000001"]["trained"]) == (0, False)
    assert members["M00000002"]["classes"] == 1
    record = client.get("/api/v1/members/M00000001/record?period=2026-Q4", headers=operator).get_json()
    assert record["classes"] == []
    assert client.put(f"{url}/M99", headers=operator).status_code == 422
    assert client.put("/api/v1/sessions/dev:nowhere:1/attendees/M00000001", headers=operator).status_code == 404


def test_a_manual_class_counts_once_someone_attends(services, client, auth, county):
    created = client.post("/api/v1/sessions", headers=auth("admin"),
                          json={"site": "t01-s01", "date": "2026-11-20", "time": "19:30", "title": "冬训第一课"})
    assert created.status_code == 201
    key = created.get_json()["key"]
    assert key == "manual:t01-s01:2026-11-20T19:30"
    assert client.put(f"/api/v1/sessions/{key}/attendees/M01010002", headers=auth("admin")).status_code == 200
    body = client.get(f"{REPORT}?period=2026-Q4", headers=auth("admin")).get_json()
    assert site_numbers(body)["t01-s01"] == (3, 1, 0.3333, 1)
    assert [s["code"] for s in body["sites_without_class"]] == ["t00-s01"]
    assert [a.subject for a in audit(services, "session.add")] == [key]
    bad = client.post("/api/v1/sessions", headers=auth("admin"), json={"site": "t01-s01", "date": "20.11.2026"})
    assert bad.status_code == 422 and bad.get_json()["error"]["code"] == "bad_date"
    unknown = client.post("/api/v1/sessions", headers=auth("admin"), json={"site": "nowhere", "date": "2026-11-20"})
    assert unknown.status_code == 422 and unknown.get_json()["error"]["code"] == "unknown_site"


def _roster(client, headers, data: bytes, name: str = "名单.csv"):
    return client.post("/api/v1/sessions/roster", headers=headers, content_type="multipart/form-data",
                       data={"file": (io.BytesIO(data), name)})


def test_roster_with_english_headers(services, client, auth, county):
    text = ("member,site,date,time,title\n"
            "M00010001,t00-s01,2026-11-21,19:00,支部学习\n"
            "M00010002,t00-s01,2026-11-21,19:00,支部学习\n"
            "M01010001,t01-s01,2026-11-22,,\n")
    answer = _roster(client, auth("admin"), text.encode())
    assert answer.status_code == 201, answer.get_json()
    assert answer.get_json() == {"sessions": 2, "attendees": 3, "created_sessions": 2}
    again = client.post("/api/v1/sessions/roster", headers=auth("admin"), data=text.encode(), content_type="text/csv")
    assert again.get_json() == {"sessions": 2, "attendees": 0, "created_sessions": 0}, "a roster imports once"
    listed = client.get("/api/v1/sessions/manual:t00-s01:2026-11-21T19:00/attendees", headers=auth("admin"))
    assert [(a["member"], a["sources"]) for a in listed.get_json()["attendees"]] == [
        ("M00010001", ["roster"]), ("M00010002", ["roster"])]
    body = client.get(f"{REPORT}?period=2026-Q4", headers=auth("admin")).get_json()
    assert site_numbers(body)["t00-s01"] == (3, 2, 0.6667, 1)
    assert site_numbers(body)["t01-s01"] == (3, 1, 0.3333, 1)
    first, second = audit(services, "roster.import")
    assert first.subject == "名单.csv" and first.details == {"sessions": 2, "attendees": 3, "created": 2}
    assert second.details == {"sessions": 2, "attendees": 0, "created": 0}


@pytest.mark.parametrize("encoding", ["utf-8-sig", "gbk"])
def test_roster_with_chinese_headers(services, client, operator, county, encoding):
    text = "党员编号,村（点）代码,日期\r\nM00000002,t00-s01,2026-12-01\r\nM00010000,t00-s01,2026-12-01\r\n"
    answer = _roster(client, operator, text.encode(encoding))
    assert answer.status_code == 201, answer.get_json()
    assert answer.get_json() == {"sessions": 1, "attendees": 2, "created_sessions": 1}
    listed = client.get("/api/v1/sessions/manual:t00-s01:2026-12-01T09:00/attendees", headers=operator)
    assert [a["member"] for a in listed.get_json()["attendees"]] == ["M00000002", "M00010000"]


def test_a_roster_with_one_bad_row_stores_nothing(services, client, auth, operator, county):
    before = (count(services, ClassSession), count(services, SessionAttendee), count(services, AuditEntry))
    bad_member = ("member,site,date\n"
                  "M00010001,t00-s01,2026-11-21\n"
                  "M0001000X,t00-s01,2026-11-21\n"
                  "M00010002,t00-s01,2026-11-21\n")
    refused = _roster(client, auth("admin"), bad_member.encode(), "week47.csv")
    assert refused.status_code == 422
    message = refused.get_json()["error"]["message"]
    assert "week47.csv:3" in message and "M0001000X" in message and "nothing was stored" in message
    assert "week47.csv:2" not in message and "week47.csv:4" not in message
    # A site of another township on line 3: the session line 2 made is not kept either.
    other_town = "member,site,date\nM00000002,t00-s01,2026-11-21\nM00000000,t01-s00,2026-11-21\n"
    forbidden = _roster(client, operator, other_town.encode(), "week47.csv")
    assert forbidden.status_code == 403
    assert forbidden.get_json()["error"]["message"].startswith("week47.csv:3: Site t01-s00 belongs to another")
    assert "Nothing was stored" in forbidden.get_json()["error"]["message"]
    unknown_site = "member,site,date\nM00000002,t00-s01,2026-11-21\nM00000001,t09-s09,2026-11-21\n"
    answer = _roster(client, auth("admin"), unknown_site.encode(), "week47.csv")
    assert answer.status_code == 422 and answer.get_json()["error"]["message"].startswith(
        "week47.csv:3: There is no site 't09-s09'.")
    bad_date = "member,site,date\nM00000002,t00-s01,21.11.2026\n"
    answer = _roster(client, auth("admin"), bad_date.encode(), "r.csv")
    assert answer.status_code == 422 and "r.csv:2: date/time" in answer.get_json()["error"]["message"]
    assert (count(services, ClassSession), count(services, SessionAttendee), count(services, AuditEntry)) == before


NOT_ROSTERS = [
    (b"", "empty"),
    (b"member,site,date\n", "no rows below the header"),
    ("姓名,电话\n张三,123\n".encode(), "unknown: 姓名, 电话"),
    (b"member,date\nM00000001,2026-11-21\n", "columns must be member plus either session or site and date"),
    (b"PK\x03\x04 an xlsx file", "this is an Excel workbook"),
]


def test_rosters_that_are_not_rosters(services, client, auth, county):
    before = count(services, SessionAttendee), count(services, ClassSession)
    for data, says in NOT_ROSTERS:
        answer = _roster(client, auth("admin"), data)
        assert answer.status_code == 422 and answer.get_json()["error"]["code"] == "csv_invalid", data
        error = answer.get_json()["error"]
        assert says in error["message"] + " ".join(row["message"] for row in error.get("rows", [])), error
    assert (count(services, SessionAttendee), count(services, ClassSession)) == before


# ---------------------------------------------------------------------------------------------------------------
# Fleet, device records, ingest metrics


def _status(services, uid: str, body: dict) -> None:
    """Store BODY as UID's status, heard at the start of this minute (a status heard long ago means offline)."""
    heard = services.clock().replace(second=0, microsecond=0)
    assert ingest.store_status(services, uid, json.dumps(body).encode(), heard)


def test_fleet_filters_and_operator_scope(services, client, auth, operator, county):
    _status(services, "term-t00-s00", {"online": True, "battery": 80, "sync": "idle", "stale": True, "queue": 3})
    _status(services, "term-t01-s00", {"online": True, "stale": False})
    _status(services, "r-t00-s00-000", {"online": False})
    fleet = lambda query="", headers=None: client.get(f"/api/v1/fleet{query}", headers=headers or auth("viewer"))
    every = fleet().get_json()
    assert every["total"] == 8 and len(every["devices"]) == 8
    first = every["devices"][0]
    assert (first["id"], first["township"], first["site"]) == ("r-t00-s00-000", "t00", "t00-s00")
    terminal = next(d for d in every["devices"] if d["id"] == "term-t00-s00")
    assert (terminal["online"], terminal["battery"], terminal["stale"], terminal["outbox_depth"]) == (True, 80, True, 3)
    assert terminal["last_seen"] is not None and terminal["refused_batches"] == 0
    assert {d["id"] for d in fleet("?kind=terminal").get_json()["devices"]} == {
        "term-t00-s00", "term-t00-s01", "term-t01-s00", "term-t01-s01"}
    assert {d["id"] for d in fleet("?online=1").get_json()["devices"]} == {"term-t00-s00", "term-t01-s00"}
    assert fleet("?online=0").get_json()["total"] == 6
    assert [d["id"] for d in fleet("?stale=1").get_json()["devices"]] == ["term-t00-s00"]
    assert fleet("?township=t01&kind=radio").get_json()["total"] == 2
    assert [d["id"] for d in fleet("?limit=2&offset=1").get_json()["devices"]] == [
        every["devices"][1]["id"], every["devices"][2]["id"]]
    assert fleet("?limit=many").status_code == 400
    scoped = fleet("", operator).get_json()
    assert scoped["total"] == 4 and {d["township"] for d in scoped["devices"]} == {"t00"}
    other = fleet("?township=t01", operator)
    assert other.status_code == 403 and other.get_json()["error"]["code"] == "other_township"


def test_device_record_shows_gaps_quarantine_and_what_did_not_count(services, client, auth, operator, county):
    uid = "r-t00-s01-000"
    counted = numbered(playing(county.b, local(10, 20, 20), 0, 600, step=60), 1)  # seq 1-10
    stray = numbered(playing(county.b, local(10, 21, 20), 0, 600, step=60, programme="2025-Q4"), 21)  # 21-30
    store(services, uid, counted, local(10, 20, 21))
    store(services, uid, stray, local(10, 21, 21))
    with services.db.session() as session:  # a batch that could not be read, seq 31-32
        ingest.store_in(session, uid, 1, 31, 32, None, b"\x00garbage", "unreadable JSON", local(10, 22),
                        services.rules)
    answer = client.get(f"/api/v1/devices/{uid}/record", headers=auth("viewer"))
    assert answer.status_code == 200
    body = answer.get_json()
    [epoch] = body["epochs"]
    assert (epoch["epoch"], epoch["acked"], epoch["events"], epoch["quarantined_batches"]) == (1, 10, 20, 1)
    assert epoch["gaps"] == [{"first": 11, "last": 20}] and epoch["highest_stored"] == 32
    [quarantined] = body["quarantined"]
    assert (quarantined["seq_first"], quarantined["seq_last"], quarantined["reason"], quarantined["bytes"]) == (
        31, 32, "unreadable JSON", 8)
    assert body["not_counted"] == {"unknown_programme": 10}
    assert body["status"] is None
    # Events 11-20 arrive late: the gap closes and the ack moves past the quarantined batch.
    store(services, uid, numbered(playing(county.a, local(10, 20, 21), 0, 600, step=60), 11), local(10, 23))
    epoch = client.get(f"/api/v1/devices/{uid}/record", headers=auth("viewer")).get_json()["epochs"][0]
    assert (epoch["acked"], epoch["gaps"]) == (32, [])
    assert client.get(f"/api/v1/devices/{uid}/record", headers=operator).status_code == 200
    assert client.get("/api/v1/devices/r-t01-s00-000/record", headers=operator).status_code == 403
    assert client.get("/api/v1/devices/nope/record", headers=auth("viewer")).status_code == 404
    refused = next(d for d in client.get("/api/v1/fleet", headers=auth("viewer")).get_json()["devices"]
                   if d["id"] == uid)
    assert refused["refused_batches"] == 1


def test_ingest_metrics_add_up_over_devices(services, client, auth, county):
    uid = "r-t00-s01-000"
    raw = numbered(playing(county.b, local(10, 20, 20), 0, 600, step=60, programme="2025-Q4"), 1)
    store(services, uid, raw, local(10, 20, 21))
    store(services, uid, raw, local(10, 20, 22))  # sent twice: duplicates, counted once
    flagged = numbered(playing(county.a, local(10, 25, 20), 0, 120, step=60), 11)
    for body in flagged:
        body["device_time"] = "1970-01-01T00:00:10+00:00"
    store(services, uid, flagged, local(10, 25, 21))
    with services.db.session() as session:
        ingest.store_in(session, uid, 1, 13, 13, None, b"{", "unreadable JSON", local(10, 26), services.rules)
    metrics = client.get("/api/v1/ingest/metrics", headers=auth("viewer")).get_json()
    assert metrics["events"] == count(services, DeviceEvent)
    assert (metrics["duplicates"], metrics["quarantined_batches"], metrics["rejected_batches"]) == (10, 1, 0)
    assert metrics["clock_flagged"] == 2
    assert metrics["not_counted"] == {"unknown_programme": 10}


# ---------------------------------------------------------------------------------------------------------------
# Command line


@pytest.fixture
def run(services):
    env = cli_env(services)
    return lambda *args: CliRunner().invoke(main, list(args), env=env)


def test_cli_report_formats(run, county, tmp_path):
    out = tmp_path / "q4.xlsx"
    made = run("report", "--programme", "2026-Q4", "--format", "xlsx", "-o", str(out))
    assert made.exit_code == 0, made.output
    assert f"Wrote {out}" in made.output
    book = load_workbook(out)
    about = dict(book["说明"].iter_rows(values_only=True))
    assert (about["统计期间"], about["期间类型"], about["结束日期"]) == ("2026-Q4", "节目单", "2027-01-30")
    members_csv = tmp_path / "members.csv"
    made = run("report", "--period", "2026-Q4", "--format", "csv", "--table", "members", "--lang", "en",
               "-o", str(members_csv))
    assert made.exit_code == 0, made.output
    rows = csv_rows(members_csv.read_bytes())
    assert rows[0][:2] == ["Member number", "Member name"] and len(rows) == 13
    as_json = run("report", "--period", "2026-Q4", "--format", "json", "-o", "-")
    assert as_json.exit_code == 0, as_json.output
    body = json.loads(as_json.stdout_bytes)
    assert body["county"][0]["rate"] == 0.25 and len(body["members"]) == 12
    record = run("report", "--member", "M00000001", "--period", "2026", "--format", "json", "-o", "-")
    assert record.exit_code == 0, record.output
    classes = json.loads(record.stdout_bytes)["classes"]
    assert [(c["date"], c["site"], c["recorded_by"]) for c in classes] == [("2026-10-12", "t00-s00", "checkin")]


@pytest.mark.parametrize("args, says", [
    (["report", "--programme", "2026-Q4", "--period", "2026"], "exactly one of"),
    (["report", "--format", "csv"], "exactly one of"),
    (["report", "--period", "2026", "--format", "pdf"], "pdf"),
    (["report", "--period", "2026", "--lang", "fr"], "zh_CN"),
])
def test_cli_report_usage_errors(tmp_path, args, says):
    refused = CliRunner().invoke(main, args, env={"LESSONCAST_DATA_DIR": str(tmp_path / "data")})
    assert refused.exit_code == 2 and says in refused.output


def test_cli_report_unknown_period_or_member(run, county):
    unknown = run("report", "--period", "someday", "-o", "-")
    assert unknown.exit_code == 1 and "2026-Q4" in unknown.output
    member = run("report", "--member", "M99", "--period", "2026", "-o", "-")
    assert member.exit_code == 1 and "There is no member 'M99'" in member.output


def test_cli_roster_and_sessions(run, services, county, tmp_path):
    roster = tmp_path / "名单.csv"
    roster.write_bytes("党员编号,村（点）代码,日期,时间\nM00010001,t00-s01,2026-11-21,19:00\n".encode("gbk"))
    made = run("attendance", "roster", str(roster))
    assert made.exit_code == 0, made.output
    assert "1 attendee(s) in 1 session(s) (1 new)" in made.output
    listed = run("attendance", "sessions", "--period", "2026-Q4", "--township", "t00")
    assert listed.exit_code == 0, listed.output
    assert "manual:t00-s01:2026-11-21T19:00" in listed.stdout and "2 session(s)." in listed.output
    bad = tmp_path / "bad.csv"
    bad.write_text("member,site,date\nM00010001,t00-s01,2026-11-22\nnobody,t00-s01,2026-11-22\n")
    refused = run("attendance", "roster", str(bad))
    assert refused.exit_code == 1 and "bad.csv:3" in refused.output
    assert count(services, ClassSession) == 4
    workbook = tmp_path / "名单.xlsx"
    workbook.write_bytes(b"PK\x03\x04 a workbook")
    refused = run("attendance", "roster", str(workbook))
    assert refused.exit_code == 1 and "名单.xlsx:1: this is an Excel workbook" in refused.output


def test_cli_rebuild_keeps_the_numbers(run, services, client, auth, county):
    client.delete(f"/api/v1/sessions/{county.class_key}/attendees/M00000001", headers=auth("admin"))
    before = client.get(f"{REPORT}?period=2026-Q4", headers=auth("admin")).get_json()
    with services.db.session() as session:
        snapshot = attendance.snapshot(session)
    rebuilt = run("attendance", "rebuild")
    assert rebuilt.exit_code == 0, rebuilt.output
    events = count(services, DeviceEvent)
    assert f"Rebuilt attendance from {events} events of 6 devices." in rebuilt.output
    after = client.get(f"{REPORT}?period=2026-Q4", headers=auth("admin")).get_json()
    before["meta"].pop("generated_at"), after["meta"].pop("generated_at")
    assert after == before
    with services.db.session() as session:
        assert attendance.snapshot(session) == snapshot
