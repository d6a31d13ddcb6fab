"""Study hours (学时): the rules as tables of cases (pure), then the county of ``tests/server/test_reports.py`` with
events sent through ingest, off-system trainings, role changes from a members CSV and a replaced rendition, checked in
the report, the member record, CSV and XLSX (which must all show the same figures) over the real API and CLI.

Hours from the county's events (45 minutes a study hour by default):
- M00000000 completes A (25 min, 0.5556 h) and B (10 min, 0.2222 h) on the radio, then A again from a replacement
  rendition (counted once): 0.8 h;
- M00000001 checks in at a class whose session the terminal recorded from 19:05 to 19:25: 0.3333 h, so 0.3 h;
- M01000001 checks in at a 2-minute class slot: 0.0 h (0.033);
- M01010000 hears B in two sittings, half on 1 Nov and half on 20 Nov: completed on 20 Nov, 0.2 h;
- M00010000 is at a 3-day party-school course (24 h) and is branch secretary from 1 March (quota 56);
- M00010001 becomes branch secretary on 1 October: a member for most of the year, quota 32.
"""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook
from sqlalchemy import func, select

from lessoncast.cli import main
from server.lessons.models import Rendition
from server.org import service as org_service
from server.training import rules as r
from server.training.rules import HourRules, Source
from tests.server.test_reports import local, make_county, playing

D = date


# ---------------------------------------------------------------------------------------------------------------
# The rules, as tables of cases


@pytest.mark.parametrize("duration, credited, minutes, expected", [
    (2700.0, None, 45.0, 1.0),      # 45 minutes: one study hour
    (1500.0, None, 45.0, 0.5556),   # 25 minutes
    (1500.0, 2.0, 45.0, 2.0),       # the lesson sets its own hours
    (3600.0, None, 60.0, 1.0),      # a county that counts 60 minutes an hour
    (0.0, None, 45.0, 0.0),
])
def test_a_completed_lesson_earns_its_credited_hours_or_its_duration(duration, credited, minutes, expected):
    assert round(r.lesson_hours(duration, credited, HourRules(minutes_per_hour=minutes)), 4) == expected


@pytest.mark.parametrize("completions, class_lessons, expected", [
    # a lesson completed over several sittings is one completion (coverage is a union): one source
    ([(1, "A", D(2026, 11, 20), 1500.0, None, False)], set(), [("lesson:1", D(2026, 11, 20), 0.5556)]),
    # the same lesson completed from a replacement rendition later: counted once, on the first day
    ([(1, "A", D(2026, 11, 15), 1200.0, None, False), (1, "A", D(2026, 10, 10), 1500.0, None, False)], set(),
     [("lesson:1", D(2026, 10, 10), 0.5556)]),
    # a lesson the member heard at a class they attended: the class earns its length, the lesson nothing more
    ([(1, "A", D(2026, 10, 10), 1500.0, None, False)], {1}, []),
    # two lessons, one with credited hours
    ([(1, "A", D(2026, 10, 10), 1500.0, None, False), (2, "B", D(2026, 10, 11), 600.0, 1.5, False)], set(),
     [("lesson:1", D(2026, 10, 10), 0.5556), ("lesson:2", D(2026, 10, 11), 1.5)]),
])
def test_each_lesson_counts_once_a_year(completions, class_lessons, expected):
    got = r.lesson_sources(completions, class_lessons, HourRules())
    assert [(s.key, s.day, round(s.hours, 4)) for s in got] == expected


@pytest.mark.parametrize("start, end, expected", [(0, 1500, 0.4167), (0, 7200, 2.0), (100, 100, 0.0), (50, 10, 0.0)])
def test_a_class_attended_earns_its_length(start, end, expected):
    assert round(r.class_hours(start, end), 4) == expected


@pytest.mark.parametrize("history, expected", [
    ([], "member"),                                                                    # no role given
    ([(D(2020, 1, 1), "branch_secretary")], "branch_secretary"),                       # all year
    ([(D(2026, 3, 1), "branch_secretary")], "branch_secretary"),                       # 306 of 365 days
    ([(D(2026, 10, 1), "branch_secretary")], "member"),                                # 92 days: a member longer
    ([(D(2020, 1, 1), "committee"), (D(2026, 6, 1), "member")], "member"),             # 151 vs 214 days
    ([(D(2020, 1, 1), "member"), (D(2026, 7, 2), "branch_secretary")], "branch_secretary"),  # 182 vs 183
    ([(D(2027, 2, 1), "branch_secretary")], "member"),                                 # only from next year
])
def test_a_member_who_changed_role_mid_year_has_the_quota_of_the_role_held_longest(history, expected):
    assert r.role_in_year(history, 2026) == expected


@pytest.mark.parametrize("line, expected", [
    # an off-system training earns the hours its roster states, on its date
    ("M1,乡镇党校集中培训（3天）,2026-05-12,24", ("M1", "乡镇党校集中培训（3天）", D(2026, 5, 12), 24.0)),
    ("M1,县委宣讲,2026-11-03,1.5", ("M1", "县委宣讲", D(2026, 11, 3), 1.5)),
    ("M1,县委宣讲,2026-11-03, 2 ", ("M1", "县委宣讲", D(2026, 11, 3), 2.0)),
    ("M1,县委宣讲,2026-11-03,0", "must be above 0"),          # no hours: not a training
    ("M1,县委宣讲,2026-11-03,-3", "must be above 0"),
    ("M1,县委宣讲,2026-11-03,240", "at most 200"),             # a typo, not a course
    ("M1,县委宣讲,2026-11-03,三", "is not a number"),
    ("M1,县委宣讲,2026-11-03,nan", "must be above 0"),
    ("M1,,2026-11-03,2", "must not be empty"),
    ("M1,县委宣讲,,2", "the date is empty"),
    ("M1,县委宣讲,2026-13-03,2", "date"),
])
def test_an_off_system_training_earns_the_hours_its_roster_states(line, expected):
    from server.errors import Invalid
    from server.training import trainings

    text = "党员编号,培训名称,日期,学时\n" + line + "\n"
    if isinstance(expected, tuple):
        [row] = trainings.parse_roster(text)
        assert (row.member_no, row.title, row.day, row.hours) == expected
        assert r.total([Source("training", "t", row.title, row.day, row.hours)]) == expected[3]
    else:
        with pytest.raises(Invalid) as refused:
            trainings.parse_roster(text)
        assert expected in str(refused.value.text) and "trainings.csv:2" in str(refused.value.text)


def test_quotas_and_totals():
    rules = HourRules(quotas={"member": 32.0, "branch_secretary": 56.0, "committee": 56.0})
    assert (r.quota("member", rules), r.quota("branch_secretary", rules), r.quota("committee", rules)) == (32, 56, 56)
    # rounded once, at the end: three thirds make one, not 0.9
    thirds = [Source("class", str(n), "", D(2026, 1, 1), 1 / 3) for n in range(3)]
    assert r.total(thirds) == 1.0


# ---------------------------------------------------------------------------------------------------------------
# Over the real database, API and CLI


MEMBERS_CSV = ("member_id,name,site_code,职务,任职日期\n"
               "M00010000,党员010,t00-s01,支部书记,2026-03-01\n"
               "M00010001,党员011,t00-s01,branch_secretary,2026-10-01\n").encode()
TRAININGS_CSV = ("党员编号,培训名称,日期,学时\n"
                 "M00010000,乡镇党校集中培训（3天）,2026-05-12,24\n").encode()


@pytest.fixture
def county(services, auth):
    c = make_county(services)
    org_service.import_members(services, MEMBERS_CSV, "test")
    a, b = c.a, c.b
    # M01010000 already heard B from 0 to 300 s on 1 Nov; the second sitting completes it.
    c.devices.send("r-t01-s01-000", playing(b, local(11, 20, 20), 300, 600))
    # Lesson A's rendition is replaced; M00000000 completes the new one too: A still counts once, from 10 Oct.
    with services.db.session() as session:
        replaced = session.scalar(select(Rendition).where(Rendition.sha256 == a[1]))
        replaced.sha256, replaced.duration_s, replaced.updated_at = "f" * 64, 1400.0, local(11, 1)
    c.devices.send("r-t00-s00-000", playing((a[0], "f" * 64, 1400.0), local(11, 15, 20), 0, 1400))
    return c


def hours_of(body: dict) -> dict[str, tuple]:
    return {m["member_no"]: (m["role"], m["quota"], m["hours"], m["below_quota"]) for m in body["members"]}


def test_study_hours_report_record_and_exports_agree(client, auth, county, services, tmp_path, monkeypatch):
    added = client.post("/api/v1/trainings", data=TRAININGS_CSV, headers={**auth("admin"), "Content-Type": "text/csv"})
    assert added.status_code == 201, added.get_json()
    assert added.get_json() == {"added": 1, "updated": 0}
    body = client.get("/api/v1/reports/study-hours?year=2026", headers=auth("viewer")).get_json()
    got = hours_of(body)
    assert got["M00000000"] == ("member", 32.0, 0.8, True)
    assert got["M00000001"] == ("member", 32.0, 0.3, True)
    assert got["M01000001"] == ("member", 32.0, 0.0, True)
    assert got["M01010000"] == ("member", 32.0, 0.2, True)
    assert got["M00010000"] == ("branch_secretary", 56.0, 24.0, True)
    assert got["M00010001"] == ("member", 32.0, 0.0, True)
    sites = {s["code"]: (s["members"], s["below_quota"], s["hours"]) for s in body["sites"]}
    assert sites == {"t00-s00": (3, 3, 1.1), "t00-s01": (3, 3, 24.0), "t01-s00": (3, 3, 0.0),
                     "t01-s01": (3, 3, 0.2)}
    assert {t["code"]: t["hours"] for t in body["townships"]} == {"t00": 25.1, "t01": 0.2}
    assert body["county"][0]["hours"] == 25.3 and body["county"][0]["below_quota"] == 12

    # The member record lists every source with its date, and sums to the report's figure.
    record = client.get("/api/v1/members/M00000000/study-hours?year=2026", headers=auth("viewer")).get_json()
    assert [(s["kind"], s["day"], s["title"], s["hours"]) for s in record["sources"]] == [
        ("lesson", "2026-10-10", "第1课", 0.56), ("lesson", "2026-10-11", "第2课", 0.22)]
    assert record["member"][0]["hours"] == 0.8
    split = client.get("/api/v1/members/M01010000/study-hours?year=2026", headers=auth("viewer")).get_json()
    assert [(s["kind"], s["day"]) for s in split["sources"]] == [("lesson", "2026-11-20")]
    secretary = client.get("/api/v1/members/M00010000/study-hours?year=2026", headers=auth("viewer")).get_json()
    assert [(s["kind"], s["day"], s["hours"]) for s in secretary["sources"]] == [("training", "2026-05-12", 24.0)]
    klass = client.get("/api/v1/members/M00000001/study-hours?year=2026", headers=auth("viewer")).get_json()
    assert [(s["kind"], s["day"], s["hours"]) for s in klass["sources"]] == [("class", "2026-10-12", 0.33)]

    # CSV and XLSX carry the same figures.
    as_csv = client.get("/api/v1/reports/study-hours?year=2026&format=csv&lang=en", headers=auth("viewer"))
    rows = list(csv.reader(io.StringIO(as_csv.data.decode("utf-8-sig"))))
    header = rows[0]
    by_no = {row[0]: row for row in rows[1:]}
    assert float(by_no["M00010000"][header.index("Study hours")]) == 24.0
    assert float(by_no["M00000000"][header.index("Study hours")]) == 0.8
    xlsx = client.get("/api/v1/reports/study-hours?year=2026&format=xlsx", headers=auth("viewer"))
    book = load_workbook(io.BytesIO(xlsx.data), read_only=True)
    sheet_rows = {}
    for sheet in book.worksheets:
        sheet_rows[sheet.title] = [row for row in sheet.iter_rows(values_only=True)]
    members_sheet = next(rows for title, rows in sheet_rows.items() if any(r and r[0] == "M00010000" for r in rows))
    row = next(r for r in members_sheet if r and r[0] == "M00010000")
    assert 24.0 in row and "branch_secretary" in row

    # The command line writes the same figures; a lesson's credited hours replace its duration.
    check_cli_study_hours(services, tmp_path, monkeypatch)
    check_credited_hours_override_the_duration(client, auth, county)


def test_off_system_trainings_and_roles_are_checked_whole_and_scoped(client, auth, token, services, county):
    bad = ("member,title,date,hours\nM00010000,党校,2026-05-12,24\nNOPE,党校,2026-05-12,x\n"
           "M00010001,党校,2026-02-30,3\n").encode()
    refused = client.post("/api/v1/trainings", data=bad, headers={**auth("admin"), "Content-Type": "text/csv"})
    assert refused.status_code == 422
    message = refused.get_json()["error"]["message"]
    assert ":3:" in message and ":4:" in message and "Nothing was stored" in message
    operator = {"Authorization": f"Bearer {token('operator', township='t01')}"}
    other = client.post("/api/v1/trainings", json={"member": "M00010000", "title": "讲座", "date": "2026-06-01",
                                                   "hours": 2}, headers=operator)
    assert other.status_code == 403
    unknown = client.post("/api/v1/trainings", json={"member": "M99", "title": "讲座", "date": "2026-06-01",
                                                     "hours": 2}, headers=auth("admin"))
    assert unknown.status_code == 422 and "M99" in unknown.get_json()["error"]["message"]
    too_long = client.post("/api/v1/trainings", json={"member": "M01000000", "title": "讲座", "date": "2026-06-01",
                                                      "hours": 1e9}, headers=operator)
    assert too_long.status_code == 422
    own = client.post("/api/v1/trainings", json={"member": "M01000000", "title": "讲座", "date": "2026-06-01",
                                                 "hours": 2}, headers=operator)
    assert own.status_code == 201
    body = client.get("/api/v1/reports/study-hours?year=2026", headers=operator).get_json()
    assert {m["member_no"] for m in body["members"]} == {f"M010{s}000{m}" for s in "01" for m in "012"}
    assert hours_of(body)["M01000000"][2] == 2.0
    assert client.get("/api/v1/reports/study-hours?year=2026&township=t00", headers=operator).status_code == 403
    assert client.get("/api/v1/members/M00010000/study-hours?year=2026", headers=operator).status_code == 403
    assert client.get("/api/v1/reports/study-hours?year=20x6", headers=auth("viewer")).status_code == 422
    check_a_members_file_with_an_unknown_role_is_refused_whole(services)


def check_credited_hours_override_the_duration(client, auth, county):
    lesson = county.a[0]
    assert client.put(f"/api/v1/lessons/{lesson}/credited-hours", json={"hours": 2},
                      headers=auth("media")).status_code == 200
    assert client.put(f"/api/v1/lessons/{lesson}/credited-hours", json={"hours": -1},
                      headers=auth("media")).status_code == 422
    record = client.get("/api/v1/members/M00000000/study-hours?year=2026", headers=auth("viewer")).get_json()
    assert [s["hours"] for s in record["sources"]] == [2.0, 0.22] and record["member"][0]["hours"] == 2.2


def check_cli_study_hours(services, tmp_path, monkeypatch):
    monkeypatch.setenv("LESSONCAST_DATA_DIR", str(services.settings.data_path))
    roster = tmp_path / "t.csv"
    roster.write_bytes(TRAININGS_CSV)
    runner = CliRunner()
    done = runner.invoke(main, ["training", "import", str(roster)])
    assert done.exit_code == 0, done.output
    out = tmp_path / "h.csv"
    done = runner.invoke(main, ["training", "hours", "--year", "2026", "--format", "csv", "--lang", "en",
                                "-o", str(out)])
    assert done.exit_code == 0, done.output
    rows = list(csv.reader(io.StringIO(out.read_text("utf-8-sig"))))
    assert next(row for row in rows if row[0] == "M00010000")[rows[0].index("Study hours")] == "24.0"


# ---------------------------------------------------------------------------------------------------------------
# Make-ups: done, late, open, overdue


@pytest.mark.parametrize("done_day, now_day, state, late", [
    (10, 20, "done", False),     # completed within the 30 days
    (40, 50, "done_late", True),  # completed after the deadline: done, recorded as late
    (None, 20, "open", False),    # not yet, deadline ahead
    (None, 32, "overdue", False),  # not done, deadline passed
    (30, 30, "done", False),      # exactly at the deadline still counts as in time
])
def test_a_makeup_completed_after_its_deadline_is_recorded_as_late(done_day, now_day, state, late):
    from datetime import datetime, timedelta, timezone

    from server.training.makeup import Owed

    start = datetime(2026, 11, 1, 11, tzinfo=timezone.utc)
    due = start + timedelta(days=30)
    done = None if done_day is None else start + timedelta(days=done_day)
    owed = Owed("dev:t:1", 1, "M1", "党员1", "s", "t", 7, "r-1", due, done)
    assert (owed.state(start + timedelta(days=now_day)), owed.late) == (state, late)


def check_a_members_file_with_an_unknown_role_is_refused_whole(services):
    from server.org.csv_rows import OrgImportError

    bad = ("member_id,name,site_code,role,role_from\n"
           "M00010000,党员010,t00-s01,member,2026-12-01\n"
           "M00010001,党员011,t00-s01,mayor,2026-12-01\n"
           "M00010002,党员012,t00-s01,,2026-12-01\n").encode()
    with pytest.raises(OrgImportError) as refused:
        org_service.import_members(services, bad, "test")
    assert [(e.line, e.field) for e in refused.value.errors] == [(3, "role"), (4, "role_from")]
    with services.db.session() as session:
        from server.training.models import MemberRole
        roles = session.execute(select(MemberRole.role, MemberRole.from_date)).all()
    assert roles == [("branch_secretary", date(2026, 3, 1)), ("branch_secretary", date(2026, 10, 1))], \
        "nothing of the refused file was stored"
    # importing the same role again adds nothing; a new role on a later day is a new row of the history
    org_service.import_members(services, MEMBERS_CSV, "test")
    org_service.import_members(services, "member_id,name,site_code,role,role_from\n"
                                         "M00010000,党员010,t00-s01,党员,2026-12-01\n".encode(), "test")
    with services.db.session() as session:
        from server.training.models import MemberRole
        assert session.scalar(select(func.count()).select_from(MemberRole)) == 3
