"""Participation reports over the real database: a small hand-made county whose radios and terminals send their
events through ingest's own path (``tests.attendance_data.store``), then ``server.attendance.reports`` and
``server.attendance.report_export`` read the aggregates.

The county (``county`` fixture): townships t00 and t01, two sites each, three members per site, one radio per site
held by the site's first member, a terminal per site, and the published programme 2026-Q4 (Oct 1 to Dec 31) with
two mandatory lessons, A (25 minutes) and B (10 minutes). What happens in it:

- t00-s00: the radio's member (M00000000) completes A and B; a key-started 25-minute class at the terminal, where
  M00000001 checks in with their card;
- t00-s01: the daily broadcast slot plays A on two days, with a check-in that must not make anyone trained;
- t01-s00: a two-minute slot marked as a class, with a check-in by member number (M01000001);
- t01-s01: a five-minute key-started playback (not a class) with a check-in, and the radio's member (M01010000)
  hears only half of B.

So 3 of 12 members are trained in 2026-Q4: t00-s00 2/3, t00-s01 0/3, t01-s00 1/3, t01-s01 0/3.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections import defaultdict
from datetime import date, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from server.accounts.scope import Scope
from server.attendance import fold as attendance, edit as attendance_edit, report_export, reports
from server.attendance.models import AttendanceExclusion
from server.devices.models import Device, DeviceAssignment
from server.errors import DomainError
from server.i18n import TRANSLATIONS_DIR, translator
from server.org import cards
from server.org.models import Member
from tests.attendance_data import build_county, checkin, numbered, play, store

pytestmark = pytest.mark.databases  # each test runs on SQLite and on PostgreSQL

CST = ZoneInfo("Asia/Shanghai")


def local(month: int, day: int, hour: int = 10, minute: int = 0, year: int = 2026) -> datetime:
    """A time on the county's clock."""
    return datetime(year, month, day, hour, minute, tzinfo=CST)


class Devices:
    """Sends event bodies of each device through ingest with consecutive sequence numbers."""

    def __init__(self, services):
        self.services = services
        self.seq: dict[str, int] = defaultdict(int)

    def send(self, uid: str, bodies: list[dict], received_at: datetime | None = None) -> None:
        raw = numbered(bodies, self.seq[uid] + 1)
        self.seq[uid] += len(bodies)
        if received_at is None:  # delivered a few minutes after the last event
            received_at = max(datetime.fromisoformat(b["time"]) for b in bodies) + timedelta(minutes=5)
        store(self.services, uid, raw, received_at)


def playing(lesson: tuple[int, str, float], at: datetime, start: float, end: float, *, step: float = 300.0,
            programme: str = "2026-Q4", **kw) -> list[dict]:
    """Progress events of one play of LESSON from START to END seconds, one per STEP of playing, from AT."""
    lesson_id, sha, _duration = lesson
    play_id = kw.pop("play_id", str(uuid.uuid4()))
    bodies, pos = [], start
    while pos < end:
        nxt = min(end, pos + step)
        bodies.append(play(at + timedelta(seconds=nxt - start), programme, lesson_id, sha, pos, nxt,
                           play_id=play_id, **kw))
        pos = nxt
    return bodies


def report(services, period: str = "2026-Q4", **kw) -> reports.Report:
    with services.db.session() as session:
        return reports.participation(session, period, services.rules, now=services.clock(), **kw)


def record(services, member_no: str, period: str = "2026", **kw) -> reports.MemberRecord:
    with services.db.session() as session:
        return reports.member_record(session, member_no, period, services.rules, **kw)


def numbers(row: reports.Row) -> tuple:
    return (row.code, row.active, row.trained, row.rate, row.completed_all, row.classes, row.broadcast_days,
            row.clock_flagged)


def member(rep: reports.Report, member_no: str) -> reports.MemberRow:
    return next(m for m in rep.members if m.member_no == member_no)


def set_member(services, member_no: str, **columns) -> None:
    with services.db.session() as session:
        row = session.scalar(select(Member).where(Member.member_no == member_no))
        for name, value in columns.items():
            setattr(row, name, value)


def make_county(services) -> SimpleNamespace:
    """The county of the module docstring, its events stored through ingest (also used by test_attendance_api)."""
    c = build_county(services, townships=2, sites_per_township=2, members_per_site=3, radios_per_site=1,
                     lessons=2, durations=(1500.0, 600.0))
    set_member(services, "M00000001", card_token=cards.digest(services.card_key, "CARD-0001"))  # as stored
    a, b = c.lessons
    dev = Devices(services)
    # t00-s00: the radio's holder completes both lessons; a 25-minute class with a card check-in.
    dev.send("r-t00-s00-000", playing(a, local(10, 10, 20), 0, 1500))
    dev.send("r-t00-s00-000", playing(b, local(10, 11, 20), 0, 600))
    class_play = str(uuid.uuid4())
    dev.send("term-t00-s00", playing(a, local(10, 12, 19), 0, 1500, trigger="key", play_id=class_play)
             + [checkin(local(10, 12, 19, 5), "CARD-0001")])
    # t00-s01: the daily broadcast on two days, someone checks in during it.
    dev.send("term-t00-s01", playing(a, local(10, 13, 7), 0, 1500, trigger="schedule", slot_kind="broadcast")
             + [checkin(local(10, 13, 7, 10), "M00010001", method="qr")])
    dev.send("term-t00-s01", playing(a, local(10, 14, 7), 0, 1500, trigger="schedule", slot_kind="broadcast"))
    # t01-s00: a short slot marked as a class; check-in by member number.
    slot_play = str(uuid.uuid4())
    dev.send("term-t01-s00", playing(b, local(11, 5, 19), 0, 120, trigger="schedule", slot_kind="class",
                                     play_id=slot_play)
             + [checkin(local(11, 5, 19, 1), "M01000001", method="qr")])
    # t01-s01: five minutes someone started (not a class), and half of lesson B on the radio.
    dev.send("term-t01-s01", playing(b, local(11, 6, 19), 0, 300, trigger="key")
             + [checkin(local(11, 6, 19, 2), "M01010001", method="qr")])
    dev.send("r-t01-s01-000", playing(b, local(11, 1, 20), 0, 300))
    return SimpleNamespace(county=c, a=a, b=b, devices=dev, class_key=f"dev:term-t00-s00:{class_play}",
                           slot_key=f"dev:term-t01-s00:{slot_play}")


@pytest.fixture
def county(services):
    return make_county(services)


def no_attendance_errors(services) -> None:
    with services.db.session() as session:
        reasons = session.scalars(select(AttendanceExclusion.reason)).all()
    assert "attendance_error" not in reasons


# ---------------------------------------------------------------------------------------------------------------
# Participation numbers


def test_participation_numbers_of_a_small_county(services, county):
    rep = report(services)
    assert (rep.period.kind, rep.period.start, rep.period.end) == ("quarter", date(2026, 10, 1), date(2026, 12, 31))
    assert [numbers(s) for s in rep.sites] == [
        ("t00-s00", 3, 2, 0.6667, 1, 1, 0, 0),
        ("t00-s01", 3, 0, 0.0, 0, 0, 2, 0),
        ("t01-s00", 3, 1, 0.3333, 0, 1, 0, 0),
        ("t01-s01", 3, 0, 0.0, 0, 0, 0, 0),
    ]
    assert [numbers(t) for t in rep.townships] == [("t00", 6, 2, 0.3333, 1, 1, 2, 0),
                                                   ("t01", 6, 1, 0.1667, 0, 1, 0, 0)]
    assert numbers(rep.county) == ("county", 12, 3, 0.25, 1, 2, 2, 0)
    assert [s.code for s in rep.sites_without_class] == ["t00-s01", "t01-s01"]
    trained = {m.member_no for m in rep.members if m.trained}
    assert trained == {"M00000000", "M00000001", "M01000001"}
    assert rep.year_label == "2026"
    assert [m.member_no for m in rep.untrained_this_year] == sorted(
        no for _id, no, _site in county.county.members if no not in trained)
    no_attendance_errors(services)


def test_member_rows_say_how_each_member_trained(services, county):
    rep = report(services)
    radio = member(rep, "M00000000")
    assert (radio.mandatory, radio.completed, radio.classes, radio.last_training) == (2, 2, 0, date(2026, 10, 11))
    card = member(rep, "M00000001")
    assert (card.completed, card.classes, card.last_training, card.trained) == (0, 1, date(2026, 10, 12), True)
    slot = member(rep, "M01000001")
    assert (slot.completed, slot.classes, slot.last_training) == (0, 1, date(2026, 11, 5))
    # A check-in during the daily broadcast or a five-minute playback is no class; half a lesson is no completion.
    for no in ("M00010001", "M01010001", "M01010000"):
        row = member(rep, no)
        assert (row.completed, row.classes, row.trained, row.last_training) == (0, 0, False, None), no


def test_terminal_plays_become_sessions_classes_or_broadcast(services, county):
    with services.db.session() as session:
        listed = attendance_edit.list_sessions(session, services.rules, date(2026, 10, 1), date(2026, 12, 31))
    by_site = {s["site"]: s for s in listed}
    assert set(by_site) == {"t00-s00", "t01-s00", "t01-s01"}, "the broadcast slot makes no session"
    assert (by_site["t00-s00"]["is_class"], by_site["t00-s00"]["listened_s"]) == (True, 1500.0)
    assert by_site["t00-s00"]["key"] == county.class_key and by_site["t00-s00"]["attendees"] == 1
    assert (by_site["t01-s00"]["is_class"], by_site["t01-s00"]["slot_kind"]) == (True, "class")
    assert (by_site["t01-s01"]["is_class"], by_site["t01-s01"]["attendees"]) == (False, 1)


def test_a_township_report_holds_only_its_sites(services, county):
    rep = report(services, township="t01")
    assert [s.code for s in rep.sites] == ["t01-s00", "t01-s01"] and [t.code for t in rep.townships] == ["t01"]
    assert numbers(rep.county)[1:4] == (6, 1, 0.1667)
    assert all(m.township == "t01" for m in rep.members + rep.untrained_this_year)
    with pytest.raises(DomainError) as caught:
        report(services, township="nowhere")
    assert caught.value.status == 404


def test_members_joining_and_leaving_mid_year(services, county):
    set_member(services, "M00000002", joined_on=date(2026, 8, 15))
    set_member(services, "M00010002", left_on=date(2026, 2, 10))
    set_member(services, "M01000002", joined_on=date(2026, 7, 10), left_on=date(2026, 8, 20))
    active = {p: {m.member_no for m in report(services, p).members} for p in ("2026-Q1", "2026-Q3", "2026-Q4", "2026")}
    assert len(active["2026"]) == 12
    assert active["2026-Q1"] == active["2026"] - {"M00000002", "M01000002"}
    assert active["2026-Q3"] == active["2026"] - {"M00010002"}
    assert active["2026-Q4"] == active["2026"] - {"M00010002", "M01000002"}
    q4 = report(services, "2026-Q4")
    assert [(s.code, s.active, s.trained) for s in q4.sites] == [
        ("t00-s00", 3, 2), ("t00-s01", 2, 0), ("t01-s00", 2, 1), ("t01-s01", 3, 0)]
    assert (q4.county.active, q4.county.rate) == (10, 0.3)
    # The home-visit list covers everyone who was a member at some time in 2026, left or not.
    assert "M00010002" in {m.member_no for m in q4.untrained_this_year}
    year_report = report(services, "2026")
    assert {m.member_no for m in year_report.untrained_this_year} == {
        m.member_no for m in year_report.members if not m.trained}


def hand_over(services, uid: str, to: str, on: date) -> None:
    """Record that radio UID went to member TO on day ON (its holder until then keeps the days before)."""
    with services.db.session() as session:
        radio = session.scalar(select(Device).where(Device.uid == uid))
        held = session.scalar(select(DeviceAssignment).where(DeviceAssignment.device_id == radio.id,
                                                             DeviceAssignment.until_date.is_(None)))
        held.until_date = on - timedelta(days=1)
        newcomer = session.scalar(select(Member.id).where(Member.member_no == to))
        session.add(DeviceAssignment(device_id=radio.id, member_id=newcomer, from_date=on))


def test_a_radio_handed_over_mid_quarter_credits_its_holder_of_the_day(services, county):
    hand_over(services, "r-t01-s01-000", "M01010002", date(2026, 11, 15))
    # The old holder finishes lesson B (its first half was heard on Nov 1); the new holder hears lesson A.
    county.devices.send("r-t01-s01-000", playing(county.b, local(11, 10, 20), 300, 600))
    county.devices.send("r-t01-s01-000", playing(county.a, local(11, 20, 20), 0, 1500))
    rep = report(services)
    old, new = member(rep, "M01010000"), member(rep, "M01010002")
    assert (old.completed, old.last_training) == (1, date(2026, 11, 10))
    assert (new.completed, new.last_training) == (1, date(2026, 11, 20))
    assert [done["lesson"] for done in record(services, "M01010000").lessons] == [county.b[0]]
    assert [done["lesson"] for done in record(services, "M01010002").lessons] == [county.a[0]]
    assert numbers(rep.sites[3])[:3] == ("t01-s01", 3, 2)
    # A rebuild from the raw events gives the same numbers.
    attendance.rebuild(services)
    assert [numbers(s) for s in report(services).sites] == [numbers(s) for s in rep.sites]


def test_a_handover_recorded_late_is_applied_by_a_rebuild(services, county):
    county.devices.send("r-t01-s01-000", playing(county.b, local(11, 10, 20), 300, 600))
    county.devices.send("r-t01-s01-000", playing(county.a, local(11, 20, 20), 0, 1500))
    assert member(report(services), "M01010000").completed == 2, "ingest credits the holder it knew of"
    hand_over(services, "r-t01-s01-000", "M01010002", date(2026, 11, 15))
    attendance.rebuild(services)
    rep = report(services)
    assert (member(rep, "M01010000").completed, member(rep, "M01010002").completed) == (1, 1)


def test_a_clock_reset_to_1970_still_counts_and_is_flagged(services, county):
    arrival = local(11, 2, 10)
    bodies = playing(county.b, local(11, 2, 9), 0, 600, offset=3.0)
    for n, body in enumerate(bodies):  # the radio's clock restarted at 1970 after its battery ran flat
        body["device_time"] = (datetime(1970, 1, 1, 0, 5) + timedelta(seconds=300 * n)).isoformat() + "+00:00"
    county.devices.send("r-t00-s01-000", bodies, received_at=arrival)
    rep = report(services)
    flagged = member(rep, "M00010000")
    assert (flagged.completed, flagged.last_training, flagged.clock_flagged) == (1, date(2026, 11, 2), 1)
    site = next(s for s in rep.sites if s.code == "t00-s01")
    assert (site.trained, site.clock_flagged) == (1, 1)
    assert rep.townships[0].clock_flagged == 1 and rep.county.clock_flagged == 1
    assert record(services, "M00010000").lessons == [
        {"programme": "2026-Q4", "lesson": county.b[0], "title": "第2课", "completed_on": "2026-11-02",
         "mandatory": True, "clock_flagged": True}]


def test_programme_report_runs_to_the_end_of_the_grace_period(services, county):
    # Lesson A heard in January 2027: inside the programme's 30 grace days, outside the quarter.
    county.devices.send("r-t01-s00-000", playing(county.a, local(1, 15, 20, year=2027), 0, 1500))
    # And in September 2026, before the programme's window: counts for nothing.
    county.devices.send("r-t01-s01-000", playing(county.b, local(9, 20, 20), 300, 600))
    programme = report(services, "2026-Q4", programme=True)
    assert (programme.period.kind, programme.period.start, programme.period.end) == (
        "programme", date(2026, 10, 1), date(2027, 1, 30))
    quarter = report(services, "2026-Q4")
    assert quarter.period.kind == "quarter"
    assert (member(programme, "M01000000").completed, member(quarter, "M01000000").completed) == (1, 0)
    assert programme.county.trained == quarter.county.trained + 1
    assert member(programme, "M01010000").completed == 0 == member(quarter, "M01010000").completed
    assert member(report(services, "2027-Q1"), "M01000000").completed == 1
    with services.db.session() as session:
        excluded = dict(session.execute(select(AttendanceExclusion.reason, AttendanceExclusion.events)
                                        .where(AttendanceExclusion.device_uid == "r-t01-s01-000")).all())
    assert excluded == {"outside_window": 1}
    with pytest.raises(DomainError) as caught:
        report(services, "2025-Q9-winter", programme=True)
    assert caught.value.status == 422


def test_an_unknown_period_names_the_accepted_forms(services, county):
    with pytest.raises(DomainError) as caught:
        report(services, "last quarter")
    assert caught.value.status == 422 and caught.value.code == "unknown_period"
    assert all(form in caught.value.message for form in ("2026", "2026-Q4", "2026-01-01..2026-06-30", "programme"))


# ---------------------------------------------------------------------------------------------------------------
# One member's record, and an operator's correction


def test_member_record_lists_lessons_and_classes_with_dates(services, county):
    radio = record(services, "M00000000")
    assert (radio.member_no, radio.site, radio.township, radio.classes) == ("M00000000", "t00-s00", "t00", [])
    assert [(x["title"], x["completed_on"], x["mandatory"], x["clock_flagged"]) for x in radio.lessons] == [
        ("第1课", "2026-10-10", True, False), ("第2课", "2026-10-11", True, False)]
    card = record(services, "M00000001")
    assert card.lessons == [] and card.classes == [
        {"session": county.class_key, "date": "2026-10-12", "site": "t00-s00", "lesson": county.a[0],
         "title": "第1课", "recorded_by": "checkin", "clock_flagged": False}]
    assert record(services, "M00000001", "2026-Q3").classes == []
    with pytest.raises(DomainError) as caught:
        record(services, "M99")
    assert caught.value.status == 404


def test_an_operator_removal_outranks_the_check_in(services, county):
    now = services.clock()
    with services.db.session() as session:
        attendance_edit.set_attendee(session, county.class_key, "M00000001", False, "op-t00", now, Scope("t00"),
                                     "left after five minutes")
        attendance_edit.set_attendee(session, county.class_key, "M00000002", True, "op-t00", now, Scope("t00"))
    assert record(services, "M00000001").classes == []
    assert [c["recorded_by"] for c in record(services, "M00000002").classes] == ["operator"]
    rep = report(services)
    assert member(rep, "M00000001").classes == 0 and not member(rep, "M00000001").trained
    assert member(rep, "M00000002").classes == 1
    assert numbers(rep.sites[0])[:3] == ("t00-s00", 3, 2)
    assert "M00000001" in {m.member_no for m in rep.untrained_this_year}
    with services.db.session() as session:
        listed = {a["member"]: a for a in attendance_edit.attendees(session, county.class_key)}
    assert listed["M00000001"] == {"member": "M00000001", "name": "党员001", "sources": ["checkin"],
                                   "removed": True, "removed_by": "op-t00", "present": False}
    assert listed["M00000002"]["sources"] == ["operator"] and listed["M00000002"]["present"]
    # A rebuild re-derives the check-in, and the operator's removal still wins.
    attendance.rebuild(services)
    assert member(report(services), "M00000001").classes == 0
    # Another township's operator may not touch this class.
    with services.db.session() as session, pytest.raises(DomainError) as caught:
        attendance_edit.set_attendee(session, county.class_key, "M00000001", True, "op-t01", now, Scope("t01"))
    assert caught.value.status == 403


# ---------------------------------------------------------------------------------------------------------------
# Formats: CSV, XLSX and JSON hold the same cells


def _kinds(table: report_export.Table) -> list[type | None]:
    """Each column's cell type, from the first row that has a value in it."""
    kinds = []
    for i in range(len(table.columns)):
        kind = next((type(r[i]) for r in table.rows if r[i] is not None), None)
        kinds.append(float if table.columns[i][0] == "rate" else kind)
    return kinds


def _normal(value, kind):
    """A cell as one comparable value, whatever format it came from."""
    if value is None or value == "":
        return None
    if kind is bool:
        if isinstance(value, str) and value in READ_AS.values() or value in READ_AS_EN.values():
            return value  # a file's 是/否 (Yes/No)
        return value in (True, 1, "1", "true", "True")
    if kind is int:
        return int(value)
    if kind is float:
        return round(float(value), 6)
    if kind is date:
        if isinstance(value, datetime):
            return value.date().isoformat()
        return value.isoformat() if isinstance(value, date) else str(value)
    return str(value)


# What a person reads in a file (CSV, XLSX) where the tables hold codes: levels, the county's row, yes and no.
READ_AS = {"county": "县", "township": "乡镇", "site": "村（点）", True: "是", False: "否", "county_name": "本县"}
READ_AS_EN = {"county": "county", "township": "township", "site": "site", True: "Yes", False: "No",
              "county_name": "This county"}


def _as_read(table: report_export.Table, language: str | None) -> list[list]:
    words = READ_AS_EN if language == "en" else READ_AS
    keys = [k for k, _h in table.columns]
    out = []
    for row in table.rows:
        cells = [words[v] if isinstance(v, bool) else v for v in row]
        if "level" in keys:
            level, name = keys.index("level"), keys.index("name")
            if cells[level] == "county" and not cells[name]:
                cells[name] = words["county_name"]
            cells[level] = words[cells[level]]
        out.append(cells)
    return out


def _rows(rows, table: report_export.Table) -> list[list]:
    kinds = _kinds(table)
    return [[_normal(v, k) for v, k in zip(row, kinds)] for row in rows]


def _agree(report_tables: list[report_export.Table], meta: dict, language: str | None = None) -> None:
    expected = {t.key: _rows(t.rows, t) for t in report_tables}
    read = {t.key: _rows(_as_read(t, language), t) for t in report_tables}
    as_json = json.loads(report_export.render(report_tables, meta, "json")[0])
    book = load_workbook(io.BytesIO(report_export.render(report_tables, meta, "xlsx", language=language)[0]))
    gettext = translator(language)
    assert book.sheetnames[0] == gettext("About")
    assert book.sheetnames[1:] == [gettext(t.title)[:31] for t in report_tables]
    for table, sheet_name in zip(report_tables, book.sheetnames[1:]):
        keys = [k for k, _h in table.columns]
        headers = [gettext(h) for _k, h in table.columns]
        data, media_type = report_export.render(report_tables, meta, "csv", table=table.key, language=language)
        assert media_type == "text/csv; charset=utf-8" and data.startswith("\ufeff".encode())
        lines = list(csv.reader(io.StringIO(data.decode("utf-8").removeprefix("\ufeff"), newline="")))
        assert lines[0] == headers
        sheet = list(book[sheet_name].iter_rows(values_only=True))
        assert list(sheet[0]) == headers
        from_json = [[r[k] for k in keys] for r in as_json[table.key]]
        assert [list(r.keys()) for r in as_json[table.key]] == [keys] * len(table.rows)
        assert _rows(lines[1:], table) == read[table.key], f"CSV {table.key}"
        assert _rows(sheet[1:], table) == read[table.key], f"XLSX {table.key}"
        assert _rows(from_json, table) == expected[table.key], f"JSON {table.key}"
    assert as_json["meta"] == {k: report_export._json_cell(v) for k, v in meta.items()}


def test_csv_xlsx_and_json_hold_the_same_cells(services, county):
    # A flagged completion and an untrained member give bools, None dates and rates of 0 in every table.
    bodies = playing(county.b, local(11, 2, 9), 0, 600)
    for body in bodies:
        body["device_time"] = "1970-01-01T00:05:00+00:00"
    county.devices.send("r-t00-s01-000", bodies, received_at=local(11, 2, 10))
    rep = report(services)
    report_tables = report_export.tables(rep)
    assert [t.key for t in report_tables] == ["county", "townships", "sites", "members", "sites_without_class",
                                              "untrained"]
    assert sum(len(t.rows) for t in report_tables) == 1 + 2 + 4 + 12 + 2 + 8
    _agree(report_tables, report_export.report_meta(rep))
    _agree(report_tables, report_export.report_meta(rep), "en")
    rec = record(services, "M00010000")
    _agree(report_export.record_tables(rec), report_export.record_meta(rec, "2026"))
    card = record(services, "M00000001")
    _agree(report_export.record_tables(card), report_export.record_meta(card, "2026"))


def test_a_rate_without_members_is_empty_in_every_format(services, county):
    for _id, no, _site in county.county.members:
        if no.startswith("M0001"):
            set_member(services, no, left_on=date(2026, 9, 1))
    rep = report(services)
    empty = next(s for s in rep.sites if s.code == "t00-s01")
    assert (empty.active, empty.rate) == (0, None)
    _agree(report_export.tables(rep), report_export.report_meta(rep))


def _po_catalogue() -> dict[str, str]:
    from babel.messages.pofile import read_po

    with open(TRANSLATIONS_DIR / "zh_CN" / "LC_MESSAGES" / "messages.po", "rb") as po:
        return {m.id: m.string for m in read_po(po) if m.id}


def test_xlsx_headers_are_chinese_by_default_and_english_on_request(services, county):
    rep = report(services)
    report_tables = report_export.tables(rep)
    meta = report_export.report_meta(rep)
    chinese = load_workbook(io.BytesIO(report_export.render(report_tables, meta, "xlsx")[0]))
    english = load_workbook(io.BytesIO(report_export.render(report_tables, meta, "xlsx", language="en")[0]))
    assert "参训率" in next(chinese["村（点）"].iter_rows(max_row=1, values_only=True))
    assert "Participation rate" in next(english["Sites"].iter_rows(max_row=1, values_only=True))
    assert chinese["村（点）"].cell(2, 7).number_format == "0.0%"
    po = _po_catalogue()
    zh = translator()
    for table in report_tables + report_export.record_tables(record(services, "M00000001")):
        for _key, header in table.columns:
            # Every header is translated, and the compiled catalogue says what the .po file says.
            assert po.get(header) and zh(header) == po[header] != header, header
        assert po.get(table.title) and zh(table.title) == po[table.title]
    about = dict(chinese[translator()("About")].iter_rows(values_only=True))
    assert about[po["Period"]] == "2026-Q4" and about[po["Kind of period"]] == "季度"
    csv_head = report_export.render(report_tables, meta, "csv", table="sites", language="en")[0]
    assert csv_head.decode("utf-8").removeprefix("\ufeff").startswith("Level,Township code,Code,Name,")


def test_render_refuses_an_unknown_format_or_table(services, county):
    rep = report(services)
    with pytest.raises(ValueError, match="use one of json, csv, xlsx"):
        report_export.render(report_export.tables(rep), {}, "pdf")
    with pytest.raises(ValueError, match="a CSV holds one of"):
        report_export.render(report_export.tables(rep), {}, "csv", table="lessons")
