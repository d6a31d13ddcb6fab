"""Who may write and read what, for every endpoint of the API, derived from the route table.

Two townships: qs (青山镇, the operator's) and hw (海湾镇, another's), each with sites, members, devices, a class
session, a certificate and make-ups (owed, and awaiting approval). ``WRITES`` maps every write rule under /api/v1
to the roles that may use it, a legitimate request, and, for the operator, hostile requests built from hw's
objects; ``READS`` does the same for every read. The first tests check that the tables cover exactly the rules in
``app.url_map``, so a new endpoint without a rule here fails the suite. Then every role that may not use an
endpoint is refused (403 forbidden) and every hostile request is refused (403/404) and changes nothing in the
database; an operator's reads never show hw's members, devices, sessions, certificates or make-ups.
The findings of issue 14 (items 2 and 3) have their own named tests at the end.
"""

from __future__ import annotations

import base64
import shutil
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from types import SimpleNamespace
from typing import Any, Optional

import pytest
from sqlalchemy import select

from server.accounts.scope import COUNTY
from server.app import create_app
from server.attendance import edit as attendance_edit, reports
from server.attendance.models import SessionAttendee
from server.db import Base
from server.devices import enrolment, registry as devices
from server.devices.models import Device, DeviceAssignment
from server.events.models import DeviceSequence
from server.lessons.models import Lesson
from server.org.models import GroupLink
from server.org.service import import_groups, import_members, import_sites
from server.org.models import Member
from server.programmes import service as programmes
from server.programmes.models import Programme
from server.training.certificates import digest, new_code
from server.training.models import Certificate, MakeupOwed, MakeupSession
from tests.conftest import SITES_CSV, free_port, make_services

ROLES = ("admin", "media", "operator", "viewer")
PUBLIC = frozenset({"public"})  # no staff token: the request's own secret is the credential
EVERYONE = frozenset(ROLES)
STAFF_READERS = frozenset({"admin", "operator", "viewer"})  # people, attendance and device data: never media
LESSON_STAFF = frozenset({"admin", "media"})
ADMIN = frozenset({"admin"})
OPERATORS = frozenset({"admin", "operator"})

MEMBERS_CSV = ("member_id,name,site_code\n"
               "QS-M1,青山党员甲,qs-01\nQS-M2,青山党员乙,qs-02\n"
               "HW-M1,海湾党员甲,hw-01\nHW-M2,海湾党员乙,hw-01\n")
CLASS_DAY = date(2026, 11, 20)
# What only hw's own people may see: its members, its devices, its class session.
HW_MARKERS = ("HW-M1", "HW-M2", "海湾党员", "r-hw-1", "t-hw-1", "manual:hw-01")


# ---------------------------------------------------------------------------------------------------------------
# The county


@pytest.fixture(scope="module")
def county(tmp_path_factory):
    """qs and hw with members, devices (a qs radio enrolled, so a channel exists), a class each with an attendee,
    a lesson, a draft programme, an unfinished upload, ingest counts, training records (``_training``) and a token
    for each role; built once, and copied for each test (a fresh instance costs seconds, a copy of this one
    milliseconds)."""
    from server.accounts.auth import create_token

    services = make_services(tmp_path_factory.mktemp("scope") / "data")
    import_sites(services, SITES_CSV, "test")
    import_groups(services, "key,name,kind\nsea-branch,海上支部,special\n".encode(), "test")
    import_members(services, MEMBERS_CSV.encode(), "test")
    now = services.clock()
    with services.db.session() as session:
        for uid, kind, site, member in (("r-qs-1", "radio", "qs-01", "QS-M1"), ("t-qs-1", "terminal", "qs-01", None),
                                        ("r-qs-2", "radio", "qs-02", None), ("r-hw-1", "radio", "hw-01", "HW-M1"),
                                        ("t-hw-1", "terminal", "hw-01", None)):
            new = devices.add(services, session, kind=kind, name=f"{uid} 设备", site_code=site, member_no=member,
                              uid=uid, actor="test")
            if uid == "r-qs-1":
                code = new.code
        keys = {}
        for town, site, member in (("qs", "qs-01", "QS-M1"), ("hw", "hw-01", "HW-M2")):
            keys[town] = attendance_edit.add_session(session, services.rules, site, CLASS_DAY, time(9), f"{town} 课",
                                                     "test", now).key
            attendance_edit.set_attendee(session, keys[town], member, True, "test", now)
        lesson = Lesson(title="第一课", state="processing", created_at=now, updated_at=now)
        session.add(lesson)
        for uid, events in (("r-qs-1", 3), ("r-hw-1", 7)):
            session.add(DeviceSequence(device_uid=uid, epoch=1, acked=events, events=events, updated_at=now))
        session.flush()
        lesson_id = lesson.id
        _training(session, services, keys, lesson_id, now)
    channel = enrolment.enrol(services, code)["channel"]
    programme = programmes.create(services, {"code": "2026-Q4", "title": "四季度", "valid_from": "2026-10-01",
                                             "valid_until": "2026-12-31"}, "test")
    with services.db.session() as session:
        tokens = {role: create_token(session, name=f"test-{role}", role=role,
                                     township="qs" if role == "operator" else None, now=now) for role in ROLES}
    headers = {role: {"Authorization": f"Bearer {value}"} for role, value in tokens.items()}
    created = create_app(services=services).test_client().post("/api/v1/uploads", headers={
        **headers["media"], "Tus-Resumable": "1.0.0", "Upload-Length": "10",
        "Upload-Metadata": "title " + base64.b64encode(b"x").decode()})
    assert created.status_code == 201, created.get_json()
    values = {"channel": channel, "lesson": lesson_id, "programme": programme, "qs_session": keys["qs"],
              "hw_session": keys["hw"], "qs_pending": keys["qs_pending"], "hw_pending": keys["hw_pending"],
              "upload": created.headers["Location"].rsplit("/", 1)[1]}
    services.db.dispose()
    return services.data, headers, values


FINISHED = "2025-Q4"  # a programme that ran, with a certificate in each township
CERTIFICATES = {"qs": ("2025-000001", "QS-M1"), "hw": ("2025-000002", "HW-M1")}


def _training(session, services, keys, lesson_id, now) -> None:
    """Training records in each township: a certificate of FINISHED, make-ups owed by the member who missed the
    class (no radio, so they are on the visit list), and a second class whose make-ups await approval."""
    member = {m.member_no: m for m in session.scalars(select(Member))}
    session.add(Programme(code=FINISHED, version=1, title="去年四季度", valid_from=date(2025, 10, 1),
                          valid_until=date(2025, 12, 31), state="superseded", created_at=now, published_at=now))
    for town, (number, member_no) in CERTIFICATES.items():
        code = new_code()
        session.add(Certificate(number=number, code=code, code_digest=digest(code), member_id=member[member_no].id,
                                name=member[member_no].name, programme=FINISHED, programme_title="去年四季度",
                                hours=4.0, completed_on=date(2025, 12, 1), issued_at=now, issued_by="test", prints=0))
    for town, site, absent in (("qs", "qs-01", "QS-M2"), ("hw", "hw-01", "HW-M1")):
        site_id = member[absent].site_id
        pending = attendance_edit.add_session(session, services.rules, site, date(2026, 11, 27), time(9),
                                              f"{town} 第二课", "test", now).key
        keys[f"{town}_pending"] = pending
        for key, day, state in ((keys[town], CLASS_DAY, "owed"), (pending, date(2026, 11, 27), "awaiting_approval")):
            class_start = datetime.combine(day, time(1), timezone.utc)  # 09:00 in the county
            session.add(MakeupSession(session_key=key, site_id=site_id, state=state, started_at=class_start,
                                      due_at=class_start + timedelta(days=14), handled_at=now))
            session.add(MakeupOwed(session_key=key, member_id=member[absent].id, lesson_id=lesson_id, radio=None))


@pytest.fixture
def world(county, tmp_path):
    """A fresh copy of the county for one test: its services, app client, each role's headers and object ids."""
    data, headers, values = county
    shutil.copytree(data, tmp_path / "data")
    services = make_services(tmp_path / "data", port=free_port(), mqtt_port=free_port(),
                             mqtt_server_port=free_port())
    yield SimpleNamespace(headers=headers, values=values, services=services,
                          client=create_app(services=services).test_client())
    services.db.dispose()


def snapshot(services) -> dict[str, list]:
    """Every row of every table, except when a token was last used (reading it is not a change) and the audit
    entries of refused enrolments (the rate limit counts them; they change no one's data)."""
    from server.audit import AuditEntry
    from server.devices.enrol_limit import REFUSED

    out = {}
    with services.db.session() as session:
        for table in Base.metadata.sorted_tables:
            columns = [c for c in table.columns if not (table.name == "api_tokens" and c.name == "last_used_at")]
            query = select(*columns)
            if table.name == AuditEntry.__tablename__:
                query = query.where(table.c.action != REFUSED)
            out[table.name] = sorted((tuple(repr(v) for v in row) for row in session.execute(query)))
    return out


@dataclass(frozen=True)
class Call:
    """One request; URL and bodies may name the world's objects as {channel}, {qs_session}, ..."""

    method: str
    url: str
    json: Any = None
    csv: Optional[str] = None
    headers: dict = field(default_factory=dict)

    def send(self, world, role: Optional[str]):
        url = self.url.format(**world.values)
        kwargs: dict[str, Any] = {"headers": {**(world.headers[role] if role else {}), **self.headers}}
        if self.json is not None:
            kwargs["json"] = _fill(self.json, world.values)
        if self.csv is not None:
            kwargs["data"] = self.csv.format(**world.values).encode()
            kwargs["content_type"] = "text/csv"
        return world.client.open(url, method=self.method, **kwargs)


def _fill(value, values):
    if isinstance(value, str):
        return value.format(**values)
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    return value


# ---------------------------------------------------------------------------------------------------------------
# Every write


@dataclass(frozen=True)
class Write:
    """Who may use a write endpoint; a legitimate request (PROBE, which an operator allowed to use the endpoint
    gets PROBE_STATUS for); and the operator's hostile requests, each naming another township's object."""

    roles: frozenset
    probe: Call
    probe_status: Optional[int] = None
    hostile: tuple = ()


TUS = {"Tus-Resumable": "1.0.0"}

WRITES: dict[tuple[str, str], Write] = {
    # Enrolment has no staff token: the one-time code is the credential, and a code not issued is refused.
    ("devices_api.enrol", "POST"): Write(PUBLIC, Call("POST", "/api/v1/enrol", {"code": "AAAA-CCCC-DDDD"}), hostile=(
        Call("POST", "/api/v1/enrol", {"code": "AAAA-CCCC-DDDD"}),)),
    ("devices_api.add_device", "POST"): Write(
        OPERATORS, Call("POST", "/api/v1/devices", {"kind": "radio", "name": "新收音机", "site": "qs-02",
                                                    "member": "QS-M2", "groups": ["sea-branch", "township:qs"]}),
        201, hostile=(
            Call("POST", "/api/v1/devices", {"kind": "radio", "name": "x", "site": "hw-01"}),
            Call("POST", "/api/v1/devices", {"kind": "radio", "name": "x", "site": "qs-01", "member": "HW-M2"}),
            Call("POST", "/api/v1/devices", {"kind": "terminal", "name": "x", "site": "qs-01",
                                             "groups": ["township:hw"]}),
            Call("POST", "/api/v1/devices", {"kind": "terminal", "name": "x", "site": "qs-01",
                                             "groups": ["village:hw-01"]}))),
    ("devices_api.import_devices", "POST"): Write(
        OPERATORS, Call("POST", "/api/v1/devices/import", csv="kind,name,site,member\nradio,新,qs-02,QS-M2\n"), 201,
        hostile=(
            Call("POST", "/api/v1/devices/import", csv="kind,name,site\nradio,x,hw-01\n"),
            Call("POST", "/api/v1/devices/import", csv="kind,name,site\nradio,ok,qs-01\nradio,x,hw-01\n"),
            Call("POST", "/api/v1/devices/import", csv="kind,name,site,member\nradio,x,qs-01,HW-M2\n"),
            Call("POST", "/api/v1/devices/import", csv="kind,name,site,groups\nterminal,x,qs-01,township:hw\n"))),
    ("devices_api.edit_device", "PATCH"): Write(
        OPERATORS, Call("PATCH", "/api/v1/devices/r-qs-2", {"site": "qs-01", "member": "QS-M2",
                                                            "groups": ["sea-branch"]}), 200, hostile=(
            Call("PATCH", "/api/v1/devices/r-hw-1", {"name": "mine now"}),
            Call("PATCH", "/api/v1/devices/r-hw-1", {"site": "qs-01"}),
            Call("PATCH", "/api/v1/devices/r-qs-2", {"site": "hw-01"}),
            Call("PATCH", "/api/v1/devices/r-qs-2", {"member": "HW-M2"}),
            Call("PATCH", "/api/v1/devices/t-qs-1", {"groups": ["village:hw-01"]}))),
    ("devices_api.new_code", "POST"): Write(OPERATORS, Call("POST", "/api/v1/devices/r-qs-2/code"), 200, hostile=(
        Call("POST", "/api/v1/devices/r-hw-1/code"),)),
    # A pending device takes no commands (409): the request got past the township check.
    ("devices_api.command", "POST"): Write(
        OPERATORS, Call("POST", "/api/v1/devices/r-qs-2/commands", {"type": "resync"}), 409, hostile=(
            Call("POST", "/api/v1/devices/r-hw-1/commands", {"type": "resync"}),
            Call("POST", "/api/v1/devices/t-hw-1/commands", {"type": "set-volume", "volume": 0}))),
    ("devices_api.revoke", "POST"): Write(OPERATORS, Call("POST", "/api/v1/devices/r-qs-2/revoke"), 200, hostile=(
        Call("POST", "/api/v1/devices/r-hw-1/revoke", {"reason": "x"}),)),
    ("attendance_api.add_session", "POST"): Write(
        OPERATORS, Call("POST", "/api/v1/sessions", {"site": "qs-02", "date": "2026-11-21"}), 201, hostile=(
            Call("POST", "/api/v1/sessions", {"site": "hw-01", "date": "2026-11-21"}),)),
    ("attendance_api.add_attendee", "PUT"): Write(
        OPERATORS, Call("PUT", "/api/v1/sessions/{qs_session}/attendees/QS-M2"), 200, hostile=(
            Call("PUT", "/api/v1/sessions/{qs_session}/attendees/HW-M1"),
            Call("PUT", "/api/v1/sessions/{hw_session}/attendees/QS-M2"),
            Call("PUT", "/api/v1/sessions/{hw_session}/attendees/HW-M1"))),
    ("attendance_api.remove_attendee", "DELETE"): Write(
        OPERATORS, Call("DELETE", "/api/v1/sessions/{qs_session}/attendees/QS-M1"), 200, hostile=(
            Call("DELETE", "/api/v1/sessions/{qs_session}/attendees/HW-M2"),
            Call("DELETE", "/api/v1/sessions/{hw_session}/attendees/HW-M2"))),
    ("attendance_api.import_roster", "POST"): Write(
        OPERATORS, Call("POST", "/api/v1/sessions/roster", csv="session,member\n{qs_session},QS-M2\n"), 201, hostile=(
            Call("POST", "/api/v1/sessions/roster", csv="session,member\n{qs_session},HW-M1\n"),
            Call("POST", "/api/v1/sessions/roster", csv="session,member\n{qs_session},QS-M2\n{qs_session},HW-M1\n"),
            Call("POST", "/api/v1/sessions/roster", csv="session,member\n{hw_session},QS-M2\n"),
            Call("POST", "/api/v1/sessions/roster", csv="member,site,date\nQS-M2,hw-01,2026-11-22\n"),
            Call("POST", "/api/v1/sessions/roster", csv="member,site,date\nHW-M1,qs-01,2026-11-22\n"))),
    # An operator keeps their own township's lists: every row, and everything a row names, must be theirs.
    ("org_api.import_csv", "POST"): Write(
        OPERATORS, Call("POST", "/api/v1/org/import?kind=members", csv="member_id,name,site_code\nQS-M3,新党员,qs-02\n"),
        200, hostile=(
            Call("POST", "/api/v1/org/import?kind=members", csv="member_id,name,site_code\nHW-M1,改名,qs-01\n"),
            Call("POST", "/api/v1/org/import?kind=members", csv="member_id,name,site_code\nQS-M3,x,hw-01\n"),
            Call("POST", "/api/v1/org/import?kind=sites",
                 csv="township_code,township_name,site_code,site_name\nqs,青山镇,qs-09,新村\nhw,海湾镇,hw-09,x\n"),
            Call("POST", "/api/v1/org/import?kind=sites",
                 csv="township_code,township_name,site_code,site_name\nqs,青山镇,hw-01,抢来的村\n"),
            Call("POST", "/api/v1/org/import?kind=groups", csv="key,name,kind\nspecial:x,x,special\n"),
            Call("POST", "/api/v1/org/import?kind=groups",
                 csv="key,name,kind,township_code\nspecial:y,y,special,hw\n"))),
    ("org_api.create_group", "POST"): Write(
        OPERATORS, Call("POST", "/api/v1/groups", {"key": "special:qs-x", "name": "x", "kind": "special",
                                                   "township": "qs"}), 201, hostile=(
            Call("POST", "/api/v1/groups", {"key": "special:x", "name": "x", "kind": "special", "township": "hw"}),
            Call("POST", "/api/v1/groups", {"key": "special:x", "name": "x", "kind": "special"}))),
    ("org_api.update_site", "PATCH"): Write(
        OPERATORS, Call("PATCH", "/api/v1/sites/qs-02", {"name": "新西村"}), 200, hostile=(
            Call("PATCH", "/api/v1/sites/hw-01", {"township": "qs"}),
            Call("PATCH", "/api/v1/sites/hw-01", {"name": "x"}),
            Call("PATCH", "/api/v1/sites/qs-02", {"township": "hw"}))),
    ("org_api.update_member", "PATCH"): Write(
        OPERATORS, Call("PATCH", "/api/v1/members/QS-M2", {"name": "改名"}), 200, hostile=(
            Call("PATCH", "/api/v1/members/HW-M1", {"site": "qs-01"}),
            Call("PATCH", "/api/v1/members/QS-M2", {"site": "hw-01"}))),
    ("lessons_api.create", "POST"): Write(LESSON_STAFF, Call("POST", "/api/v1/lessons", {"title": "x"})),
    ("lessons_api.retry", "POST"): Write(LESSON_STAFF, Call("POST", "/api/v1/lessons/{lesson}/retry")),
    ("uploads_api.create", "POST"): Write(LESSON_STAFF, Call("POST", "/api/v1/uploads", headers={
        **TUS, "Upload-Length": "10", "Upload-Metadata": "title eA=="})),
    ("uploads_api.patch", "PATCH"): Write(LESSON_STAFF, Call("PATCH", "/api/v1/uploads/{upload}", headers={
        **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})),
    ("uploads_api.delete", "DELETE"): Write(LESSON_STAFF, Call("DELETE", "/api/v1/uploads/{upload}", headers=TUS)),
    ("programmes_api.create", "POST"): Write(LESSON_STAFF, Call("POST", "/api/v1/programmes", {
        "code": "x", "title": "x", "valid_from": "2026-10-01", "valid_until": "2026-12-31"})),
    ("programmes_api.edit", "PATCH"): Write(LESSON_STAFF, Call("PATCH", "/api/v1/programmes/{programme}",
                                                               {"title": "改"})),
    ("programmes_api.new_version", "POST"): Write(LESSON_STAFF, Call("POST",
                                                                     "/api/v1/programmes/{programme}/new-version")),
    ("programmes_api.do_publish", "POST"): Write(LESSON_STAFF, Call("POST",
                                                                    "/api/v1/programmes/{programme}/publish")),
    # An export is a report built by the worker: read like the report, refused for another township.
    ("exports_api.create", "POST"): Write(STAFF_READERS, Call("POST", "/api/v1/exports", {"period": "2026-Q4"}),
                                          202, hostile=(
        Call("POST", "/api/v1/exports", {"period": "2026-Q4", "township": "hw"}),)),
    # Training records: an operator enters and issues for their township's members and sites only.
    ("training_api.add_trainings", "POST"): Write(
        OPERATORS, Call("POST", "/api/v1/trainings", {"member": "QS-M1", "title": "镇党校培训", "date": "2026-10-09",
                                                      "hours": 2}), 201, hostile=(
            Call("POST", "/api/v1/trainings", {"member": "HW-M1", "title": "x", "date": "2026-10-09", "hours": 2}),
            Call("POST", "/api/v1/trainings", csv="member,title,date,hours\nHW-M2,x,2026-10-09,2\n"),
            Call("POST", "/api/v1/trainings",
                 csv="member,title,date,hours\nQS-M1,x,2026-10-09,2\nHW-M1,x,2026-10-09,2\n"))),
    ("training_api.issue_certificates", "POST"): Write(
        OPERATORS, Call("POST", "/api/v1/certificates", {"programme": FINISHED, "site": "qs-01"}), 201, hostile=(
            Call("POST", "/api/v1/certificates", {"programme": FINISHED, "site": "hw-01"}),
            Call("POST", "/api/v1/certificates", {"programme": FINISHED, "site": "hw-01", "hours": 0.5}))),
    ("training_api.add_feedback", "POST"): Write(
        OPERATORS, Call("POST", "/api/v1/sites/qs-01/feedback", {"text": "喇叭声音小"}), 201, hostile=(
            Call("POST", "/api/v1/sites/hw-01/feedback", {"text": "x"}),)),
    ("training_api.makeup_approve", "POST"): Write(
        OPERATORS, Call("POST", "/api/v1/makeups/{qs_pending}/approve"), 200, hostile=(
            Call("POST", "/api/v1/makeups/{hw_pending}/approve"),
            # Already owed: a 409 here would mean the township check came after the state check.
            Call("POST", "/api/v1/makeups/{hw_session}/approve"))),
    # The sweep covers the county: an operator passes the role check and is refused as county_only.
    ("training_api.makeup_sweep", "POST"): Write(OPERATORS, Call("POST", "/api/v1/makeups/sweep"), 403, hostile=(
        Call("POST", "/api/v1/makeups/sweep"),)),
    ("training_api.record_certificate_print", "POST"): Write(
        OPERATORS, Call("POST", "/api/v1/certificates/2025-000001/print"), 200, hostile=(
            Call("POST", "/api/v1/certificates/2025-000002/print"),)),
    ("training_api.record_batch_print", "POST"): Write(
        OPERATORS, Call("POST", f"/api/v1/certificates/print?programme={FINISHED}&site=qs-01"), 200, hostile=(
            Call("POST", f"/api/v1/certificates/print?programme={FINISHED}&site=hw-01"),)),
    ("training_api.set_credited_hours", "PUT"): Write(LESSON_STAFF, Call(
        "PUT", "/api/v1/lessons/{lesson}/credited-hours", {"hours": 1.5})),
    # Agent releases and rollouts are the county's alone: admins (agent.manage); no operator has hostile cases.
    ("agent_releases_api.create_rollout", "POST"): Write(
        ADMIN, Call("POST", "/api/v1/agent-rollouts", {"release": "9.9.9", "stages": [{"county": True}]})),
    ("agent_releases_api.act", "POST"): Write(ADMIN, Call("POST", "/api/v1/agent-rollouts/1/pause")),
}

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def _api_rules(app, methods: set[str], head_only: bool = False) -> set[tuple[str, str]]:
    """(endpoint, method) of every rule under /api/v1 answering one of METHODS (and HEAD-only rules if asked)."""
    found = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        found |= {(rule.endpoint, m) for m in rule.methods & methods}
        if head_only and "HEAD" in rule.methods and "GET" not in rule.methods:
            found.add((rule.endpoint, "HEAD"))
    return found


def test_every_write_endpoint_has_a_scope_case(app):
    """A write rule added to the API without an entry in WRITES fails here: give it its roles and hostile cases."""
    assert set(WRITES) == _api_rules(app, WRITE_METHODS)


@pytest.mark.parametrize("rule", sorted(WRITES), ids=lambda r: f"{r[1]} {r[0]}")
def test_a_write_is_refused_to_other_roles_and_other_townships(world, rule):
    write = WRITES[rule]
    if write.roles != PUBLIC:
        for role in sorted(set(ROLES) - write.roles):
            before = snapshot(world.services)
            answer = write.probe.send(world, role)
            assert answer.status_code == 403, (role, answer.status_code, answer.get_data(as_text=True))
            assert answer.get_json()["error"]["code"] == "forbidden", role
            assert snapshot(world.services) == before, f"{role}: a refused write changed the database"
    assert write.hostile or "operator" not in write.roles, "an operator's write needs hostile cases"
    for call in write.hostile:
        before = snapshot(world.services)
        answer = call.send(world, "operator")
        assert answer.status_code in (403, 404), (call, answer.status_code, answer.get_data(as_text=True))
        assert set(answer.get_json()["error"]) >= {"code", "message"}
        assert snapshot(world.services) == before, f"{call}: a refused write changed the database"
        assert '"enrol_code":' not in answer.get_data(as_text=True), "a refusal hands out no enrolment code"
    if "operator" in write.roles:
        # The same request naming the operator's own objects goes through: the refusals above are the scope's.
        answer = write.probe.send(world, "operator")
        assert answer.status_code == write.probe_status, answer.get_data(as_text=True)


# ---------------------------------------------------------------------------------------------------------------
# Every read


@dataclass(frozen=True)
class Read:
    """Who may read an endpoint (everyone else gets 403), a request that returns 200 to them, what the operator's
    answer must show of qs, and the operator's hostile reads: (url, 403) is refused; (url, 200) answers without any
    of hw's members, devices or sessions."""

    roles: frozenset
    url: str
    method: str = "GET"
    shows: Optional[str] = None
    hostile: tuple = ()


READS: dict[tuple[str, str], Read] = {
    ("programmes_api.channels", "GET"): Read(EVERYONE, "/api/v1/channels"),
    ("programmes_api.manifest", "GET"): Read(EVERYONE, "/api/v1/channels/{channel}/manifest.json"),
    ("programmes_api.m3u8", "GET"): Read(EVERYONE, "/api/v1/channels/{channel}/playlist.m3u8"),
    ("programmes_api.list_programmes", "GET"): Read(EVERYONE, "/api/v1/programmes"),
    ("programmes_api.show", "GET"): Read(EVERYONE, "/api/v1/programmes/{programme}"),
    ("programmes_api.preview", "GET"): Read(EVERYONE, "/api/v1/programmes/{programme}/preview"),
    ("lessons_api.index", "GET"): Read(EVERYONE, "/api/v1/lessons"),
    ("lessons_api.show", "GET"): Read(EVERYONE, "/api/v1/lessons/{lesson}"),
    # The county's structure (which programmes target) is no one's personal data.
    ("org_api.townships", "GET"): Read(EVERYONE, "/api/v1/townships"),
    ("org_api.sites", "GET"): Read(EVERYONE, "/api/v1/sites"),
    ("org_api.groups", "GET"): Read(EVERYONE, "/api/v1/groups"),
    ("org_api.members", "GET"): Read(STAFF_READERS, "/api/v1/members", shows="QS-M1", hostile=(
        ("/api/v1/members?township=hw", 403), ("/api/v1/members?site=hw-01", 200), ("/api/v1/members?q=海湾", 200),
        ("/api/v1/members?q=HW", 200), ("/api/v1/members?township=qs", 200))),
    ("attendance_api.member_record", "GET"): Read(STAFF_READERS, "/api/v1/members/QS-M1/record?period=2026",
                                                  shows="青山党员甲", hostile=(
        ("/api/v1/members/HW-M1/record?period=2026", 403),)),
    ("attendance_api.participation", "GET"): Read(STAFF_READERS, "/api/v1/reports/participation?period=2026-Q4",
                                                  shows="QS-M1", hostile=(
        ("/api/v1/reports/participation?period=2026-Q4&township=hw", 403),
        ("/api/v1/reports/participation?period=2026&format=csv&table=members", 200),
        ("/api/v1/reports/participation?period=2026-Q4&format=xlsx&township=hw", 403))),
    ("attendance_api.list_sessions", "GET"): Read(STAFF_READERS, "/api/v1/sessions?period=2026-Q4",
                                                  shows="{qs_session}", hostile=(
        ("/api/v1/sessions?period=2026-Q4&township=hw", 403), ("/api/v1/sessions?period=2026&site=hw-01", 200))),
    ("attendance_api.session_attendees", "GET"): Read(STAFF_READERS, "/api/v1/sessions/{qs_session}/attendees",
                                                      shows="QS-M1", hostile=(
        ("/api/v1/sessions/{hw_session}/attendees", 403),)),
    ("devices_api.list_devices", "GET"): Read(STAFF_READERS, "/api/v1/devices", shows="r-qs-1", hostile=(
        ("/api/v1/devices?township=hw", 403), ("/api/v1/devices?site=hw-01", 200),
        ("/api/v1/devices?kind=terminal", 200))),
    ("devices_api.show_device", "GET"): Read(STAFF_READERS, "/api/v1/devices/r-qs-1", shows="QS-M1", hostile=(
        ("/api/v1/devices/r-hw-1", 403),)),
    ("devices_api.device_status", "GET"): Read(STAFF_READERS, "/api/v1/devices/r-qs-1/status", hostile=(
        ("/api/v1/devices/r-hw-1/status", 403),)),
    ("fleet_api.record", "GET"): Read(STAFF_READERS, "/api/v1/devices/r-qs-1/record", hostile=(
        ("/api/v1/devices/r-hw-1/record", 403),)),
    ("fleet_api.fleet", "GET"): Read(STAFF_READERS, "/api/v1/fleet", shows="r-qs-1", hostile=(
        ("/api/v1/fleet?township=hw", 403), ("/api/v1/fleet?site=hw-01", 200), ("/api/v1/fleet?kind=radio", 200))),
    ("fleet_api.metrics", "GET"): Read(STAFF_READERS, "/api/v1/ingest/metrics"),
    ("uploads_api.status", "GET"): Read(LESSON_STAFF, "/api/v1/uploads/{upload}"),
    ("uploads_api.head", "HEAD"): Read(LESSON_STAFF, "/api/v1/uploads/{upload}", method="HEAD"),
    ("training_api.study_hours", "GET"): Read(STAFF_READERS, "/api/v1/reports/study-hours?year=2026", shows="QS-M1",
                                             hostile=(
        ("/api/v1/reports/study-hours?year=2026&township=hw", 403),
        ("/api/v1/reports/study-hours?year=2026&format=xlsx&township=hw", 403),
        ("/api/v1/reports/study-hours?year=2026&format=csv", 200))),
    ("training_api.member_study_hours", "GET"): Read(STAFF_READERS, "/api/v1/members/QS-M1/study-hours?year=2026",
                                                    shows="QS-M1", hostile=(
        ("/api/v1/members/HW-M1/study-hours?year=2026", 403),
        ("/api/v1/members/HW-M2/study-hours?year=2026&format=csv", 403))),
    ("training_api.list_certificates", "GET"): Read(STAFF_READERS, "/api/v1/certificates", shows="2025-000001",
                                                   hostile=(
        ("/api/v1/certificates?site=hw-01", 200), ("/api/v1/certificates?programme=" + FINISHED, 200))),
    ("training_api.print_certificate", "GET"): Read(STAFF_READERS, "/api/v1/certificates/2025-000001/print",
                                                   shows="青山党员甲", hostile=(
        ("/api/v1/certificates/2025-000002/print", 403),)),
    ("training_api.print_batch", "GET"): Read(STAFF_READERS,
                                             f"/api/v1/certificates/print?programme={FINISHED}&site=qs-01",
                                             shows="青山党员甲", hostile=(
        (f"/api/v1/certificates/print?programme={FINISHED}&site=hw-01", 403),)),
    ("training_api.site_logbook", "GET"): Read(STAFF_READERS, "/api/v1/sites/qs-01/logbook?month=2026-11",
                                              shows="青山党员甲", hostile=(
        ("/api/v1/sites/hw-01/logbook?month=2026-11", 403),
        ("/api/v1/sites/hw-01/logbook?month=2026-11&format=html", 403),
        ("/api/v1/sites/hw-01/logbook?month=2026-11&format=csv&table=roster", 403))),
    ("training_api.site_rules_report", "GET"): Read(STAFF_READERS, "/api/v1/reports/site-rules?month=2026-11",
                                                   shows="qs-01", hostile=(
        ("/api/v1/reports/site-rules?month=2026-11&township=hw", 403),)),
    ("training_api.makeup_report", "GET"): Read(STAFF_READERS, "/api/v1/reports/makeups?period=2026-Q4",
                                               shows="QS-M2", hostile=(
        ("/api/v1/reports/makeups?period=2026-Q4&township=hw", 403), ("/api/v1/reports/makeups", 200))),
    ("training_api.makeup_visits", "GET"): Read(STAFF_READERS, "/api/v1/makeups/visits", shows="QS-M2"),
    # The API's description holds no data: anyone may read it.
    ("openapi_api.document", "GET"): Read(EVERYONE, "/api/v1/openapi.json"),
    ("agent_releases_api.list_releases", "GET"): Read(ADMIN, "/api/v1/agent-releases"),
    ("agent_releases_api.list_rollouts", "GET"): Read(ADMIN, "/api/v1/agent-rollouts"),
}

# Reads of what one token asked for: only that token (or an admin) may read them; see the test below.
OWN_ONLY = {("exports_api.show", "GET"), ("exports_api.download", "GET")}
# Reads of one object that the world does not hold (a rollout needs a signed release): the test below checks that only
# an admin gets past the role check, to a 404 that names nothing.
ADMIN_ONE = {("agent_releases_api.show_rollout", "GET"): "/api/v1/agent-rollouts/1"}


def test_every_read_endpoint_has_a_rule_per_role(app):
    """A read rule added to the API without an entry in READS fails here: say who may read it and, if it holds a
    township's data, what an operator of another township gets."""
    assert set(READS) | OWN_ONLY | set(ADMIN_ONE) == _api_rules(app, {"GET"}, head_only=True)


@pytest.mark.parametrize("rule", sorted(ADMIN_ONE), ids=lambda r: f"{r[1]} {r[0]}")
def test_an_admin_only_read_of_one_object(world, rule):
    for role in ROLES:
        answer = Call("GET", ADMIN_ONE[rule]).send(world, role)
        assert answer.status_code == (404 if role == "admin" else 403), (role, answer.status_code)
        assert answer.get_json()["error"]["code"] == ("no_rollout" if role == "admin" else "forbidden"), role


def _leaks(text: str) -> list[str]:
    return [marker for marker in HW_MARKERS if marker in text]


@pytest.mark.parametrize("rule", sorted(READS), ids=lambda r: f"{r[1]} {r[0]}")
def test_a_read_answers_only_the_roles_and_the_township_it_is_for(world, rule):
    read = READS[rule]
    call = Call(read.method, read.url, headers=TUS if rule[0].startswith("uploads_api") else {})
    for role in ROLES:
        answer = call.send(world, role)
        if role in read.roles:
            assert answer.status_code == 200, (role, answer.status_code, answer.get_data(as_text=True)[:300])
        else:
            assert answer.status_code == 403, (role, answer.status_code)
            if read.method != "HEAD":  # a HEAD answer has no body
                assert answer.get_json()["error"]["code"] == "forbidden"
    if "operator" not in read.roles:
        return
    own = call.send(world, "operator").get_data(as_text=True)
    assert not _leaks(own), f"the operator's answer shows hw's {_leaks(own)}"
    if read.shows:
        assert read.shows.format(**world.values) in own
    for url, status in read.hostile:
        answer = Call("GET", url).send(world, "operator")
        text = answer.get_data(as_text=True)
        assert answer.status_code == status, (url, answer.status_code, text[:300])
        if status == 403:  # the refusal may repeat what was asked for, and nothing else
            assert answer.get_json()["error"]["code"] == "other_township", url
        else:
            assert not _leaks(text), f"{url} shows hw's {_leaks(text)}"


# ---------------------------------------------------------------------------------------------------------------
# Issue 14, item 2: the four writes that went through


def _devices_named(services, name: str) -> list[str]:
    with services.db.session() as session:
        return session.scalars(select(Device.uid).where(Device.name == name)).all()


def test_operator_cannot_import_a_device_for_another_townships_site(world):
    before = snapshot(world.services)
    answer = Call("POST", "/api/v1/devices/import", csv="kind,name,site\nradio,海湾新机,hw-01\n").send(world,
                                                                                                      "operator")
    assert answer.status_code == 403 and answer.get_json()["error"]["code"] == "other_township"
    assert "hw-01" in answer.get_json()["error"]["message"] and '"enrol_code":' not in answer.get_data(as_text=True)
    assert _devices_named(world.services, "海湾新机") == [] and snapshot(world.services) == before
    single = Call("POST", "/api/v1/devices", {"kind": "radio", "name": "海湾新机", "site": "hw-01"}).send(world,
                                                                                                     "operator")
    assert single.status_code == 403 and _devices_named(world.services, "海湾新机") == []
    # No site is no way around it: the default site is the county's own.
    unsited = Call("POST", "/api/v1/devices", {"kind": "radio", "name": "无站点"}).send(world, "operator")
    assert unsited.status_code == 422 and unsited.get_json()["error"]["field"] == "site"


def test_operator_cannot_move_an_own_device_into_another_township(world):
    answer = Call("PATCH", "/api/v1/devices/r-qs-1", {"site": "hw-01"}).send(world, "operator")
    assert answer.status_code == 403 and answer.get_json()["error"]["code"] == "other_township"
    shown = world.client.get("/api/v1/devices/r-qs-1", headers=world.headers["admin"]).get_json()
    assert shown["site"] == "qs-01"
    # Within the township it moves.
    moved = Call("PATCH", "/api/v1/devices/r-qs-2", {"site": "qs-01"}).send(world, "operator")
    assert moved.status_code == 200 and moved.get_json()["site"] == "qs-01"


def test_operator_cannot_hand_an_own_radio_to_another_townships_member(world):
    for call in (Call("PATCH", "/api/v1/devices/r-qs-2", {"member": "HW-M2"}),
                 Call("POST", "/api/v1/devices", {"kind": "radio", "name": "给海湾", "site": "qs-01",
                                                  "member": "HW-M2"}),
                 Call("POST", "/api/v1/devices/import", csv="kind,name,site,member\nradio,给海湾,qs-01,HW-M2\n")):
        answer = call.send(world, "operator")
        assert answer.status_code == 403 and answer.get_json()["error"]["code"] == "other_township", call
    with world.services.db.session() as session:
        held = session.scalars(select(DeviceAssignment.device_id).join(DeviceAssignment.member)
                               .where(DeviceAssignment.member.has(member_no="HW-M2"))).all()
    assert held == [] and _devices_named(world.services, "给海湾") == []


def test_operator_cannot_add_another_townships_member_to_an_own_class(world):
    services = world.services
    put = Call("PUT", "/api/v1/sessions/{qs_session}/attendees/HW-M1").send(world, "operator")
    assert put.status_code == 403 and put.get_json()["error"]["code"] == "other_township"
    roster = Call("POST", "/api/v1/sessions/roster",
                  csv="session,member\n{qs_session},QS-M2\n{qs_session},HW-M1\n").send(world, "operator")
    assert roster.status_code == 403 and "roster.csv:3" in roster.get_json()["error"]["message"]
    with services.db.session() as session:
        attendees = session.scalars(select(SessionAttendee.member_id)).all()
    assert len(attendees) == 2, "only the two attendees the county recorded"
    # The admin's report does not count HW-M1 as trained.
    report = world.client.get("/api/v1/reports/participation?period=2026-Q4&township=hw",
                              headers=world.headers["admin"]).get_json()
    assert {m["member_no"]: m["trained"] for m in report["members"]}["HW-M1"] is False


def test_operator_cannot_put_an_own_device_into_another_townships_group(world):
    answer = Call("PATCH", "/api/v1/devices/t-qs-1", {"groups": ["township:hw"]}).send(world, "operator")
    assert answer.status_code == 403
    with world.services.db.session() as session:
        assert session.scalars(select(GroupLink).where(GroupLink.device_id.is_not(None))).all() == []
    joined = Call("PATCH", "/api/v1/devices/t-qs-1", {"groups": ["sea-branch"]}).send(world, "operator")
    assert joined.status_code == 200, "county-wide groups are open to every township's devices"


# ---------------------------------------------------------------------------------------------------------------
# Issue 14, item 3: personal data and the wrong readers


def test_operator_cannot_list_another_townships_members(world):
    answer = world.client.get("/api/v1/members?township=hw", headers=world.headers["operator"])
    assert answer.status_code == 403 and answer.get_json()["error"]["code"] == "other_township"
    assert not _leaks(answer.get_data(as_text=True))
    own = world.client.get("/api/v1/members", headers=world.headers["operator"]).get_json()
    assert [m["member_id"] for m in own["members"]] == ["QS-M1", "QS-M2"] and own["total"] == 2
    county = world.client.get("/api/v1/members", headers=world.headers["viewer"]).get_json()
    assert county["total"] == 4


def test_media_reads_no_members_attendance_or_reports(world):
    media = world.headers["media"]
    for url in ("/api/v1/members", "/api/v1/members/QS-M1/record?period=2026",
                "/api/v1/reports/participation?period=2026-Q4", "/api/v1/reports/participation?period=2026&format=csv",
                "/api/v1/sessions?period=2026", f"/api/v1/sessions/{world.values['qs_session']}/attendees",
                "/api/v1/devices", "/api/v1/fleet"):
        answer = world.client.get(url, headers=media)
        assert answer.status_code == 403 and answer.get_json()["error"]["code"] == "forbidden", url
    # Their own work still reads.
    assert world.client.get("/api/v1/lessons", headers=media).status_code == 200
    assert world.client.get("/api/v1/groups", headers=media).status_code == 200
    # The organisation department reads reports and records.
    viewer = world.headers["viewer"]
    assert world.client.get("/api/v1/reports/participation?period=2026-Q4", headers=viewer).status_code == 200
    assert world.client.get("/api/v1/members/HW-M1/record?period=2026", headers=viewer).status_code == 200


def test_operator_ingest_metrics_count_their_township_only(world):
    operator = world.client.get("/api/v1/ingest/metrics", headers=world.headers["operator"]).get_json()
    county = world.client.get("/api/v1/ingest/metrics", headers=world.headers["viewer"]).get_json()
    assert (operator["events"], county["events"]) == (3, 10)


def test_services_apply_the_scope_for_any_caller(world):
    """The rule lives in the services, so a caller other than the API (the console to come) gets it too."""
    from server.accounts.scope import Scope
    from server.errors import DomainError

    services, qs = world.services, Scope("qs")
    with services.db.session() as session, pytest.raises(DomainError) as caught:
        devices.add(services, session, kind="radio", name="x", site_code="hw-01", actor="t", scope=qs)
    assert caught.value.code == "other_township"
    for act in (lambda: devices.update(services, "r-qs-2", {"member": "HW-M1"}, "t", scope=qs),
                lambda: devices.revoke(services, "r-hw-1", "t", "", qs),
                lambda: devices.reissue_code(services, "r-hw-1", "t", qs)):
        with pytest.raises(DomainError) as caught:
            act()
        assert caught.value.code == "other_township"
    with services.db.session() as session:
        with pytest.raises(DomainError):
            attendance_edit.set_attendee(session, world.values["qs_session"], "HW-M1", True, "t",
                                         services.clock(), qs)
        with pytest.raises(DomainError):
            reports.member_record(session, "HW-M1", "2026", services.rules, scope=qs)
        assert reports.member_record(session, "HW-M1", "2026", services.rules, scope=COUNTY).member_no == "HW-M1"


def test_an_export_is_read_only_by_who_asked_for_it_or_an_admin(world):
    """The operator's export of their township answers them and an admin; a viewer gets 404, media 403."""
    asked = Call("POST", "/api/v1/exports", {"period": "2026-Q4"}).send(world, "operator")
    assert asked.status_code == 202, asked.get_data(as_text=True)[:300]
    export_id = asked.get_json()["id"]
    for role, status in (("operator", 200), ("admin", 200), ("viewer", 404), ("media", 403)):
        answer = Call("GET", f"/api/v1/exports/{export_id}").send(world, role)
        assert answer.status_code == status, (role, answer.status_code)
        download = Call("GET", f"/api/v1/exports/{export_id}/file").send(world, role)
        assert download.status_code == (409 if status == 200 else status), (role, download.status_code)


# ---------------------------------------------------------------------------------------------------------------
# Training records


def test_operator_training_refusals_are_the_scopes_own(world):
    """A roster naming another township's members is refused whole with the scope's code and message, naming them;
    a certificate, a logbook and a make-up of another township answer the same way."""
    from server.training.models import OffSystemTraining

    roster = Call("POST", "/api/v1/trainings", csv="member,title,date,hours\nQS-M1,党校,2026-10-09,2\n"
                                                  "HW-M1,党校,2026-10-09,2\nHW-M2,党校,2026-10-09,2\n")
    for call in (roster, Call("GET", "/api/v1/certificates/2025-000002/print"),
                 Call("GET", "/api/v1/sites/hw-01/logbook?month=2026-11"),
                 Call("POST", "/api/v1/makeups/{hw_pending}/approve")):
        answer = call.send(world, "operator")
        assert answer.status_code == 403 and answer.get_json()["error"]["code"] == "other_township", call
    message = roster.send(world, "operator").get_json()["error"]["message"]
    assert "HW-M1" in message and "HW-M2" in message and "QS-M1" not in message
    with world.services.db.session() as session:
        assert session.scalars(select(OffSystemTraining)).all() == []
