"""docs/API.md against real answers: every field a table there documents is in the JSON the API gives, and every
field the JSON gives is documented, for reports, member records, members, devices, device records and sessions."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, time, timezone
from pathlib import Path

import pytest

from server.attendance import edit as attendance_edit
from server.events.ingest import store_status
from tests.attendance_data import build_county, numbered, play, store

DOC = Path(__file__).resolve().parents[2] / "docs" / "API.md"
NOW = datetime(2027, 1, 5, 3, 0, tzinfo=timezone.utc)


def _sections() -> dict[str, list[set[str]]]:
    """Heading -> the field names of each `| field | ...` table under it."""
    out: dict[str, list[set[str]]] = {}
    heading, table = None, None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            heading, table = line.lstrip("#").strip(), None
            out.setdefault(heading, [])
        elif line.startswith("| field |"):
            table = set()
            out[heading].append(table)
        elif table is not None and line.startswith("| `"):
            table.update(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
        elif not line.startswith("|"):
            table = None
    return out


@pytest.fixture
def answers(services, client, auth):
    services.clock = lambda: NOW
    county = build_county(services, townships=1, sites_per_township=2, members_per_site=3, radios_per_site=2)
    radio, member_id = county.radios[0]
    lesson, sha, duration = county.lessons[0]
    at = datetime(2026, 11, 2, 1, 0, tzinfo=timezone.utc)
    store(services, radio, numbered([play(at, "2026-Q4", lesson, sha, 0, duration)]), at)
    assert store_status(services, radio, json.dumps({"online": True, "queue": 0, "battery": 80}).encode(), NOW)
    member_no = next(no for mid, no, _site in county.members if mid == member_id)
    site = county.sites[0][1]
    with services.db.session() as session:
        key = attendance_edit.add_session(session, services.rules, site, date(2026, 11, 20), time(9), "课",
                                          "test", NOW).key
        attendance_edit.set_attendee(session, key, member_no, True, "test", NOW)
    admin = auth("admin")

    def get(url):
        answer = client.get(url, headers=admin)
        assert answer.status_code == 200, (url, answer.data[:300])
        return answer.get_json()

    report = get("/api/v1/reports/participation?programme=2026-Q4")
    record = get(f"/api/v1/members/{member_no}/record?period=2026")
    return {
        "meta": [report["meta"]],
        "county, townships, sites, sites_without_class": [report["sites"][0]],
        "members": [report["members"][0]],
        "member record meta": [record["meta"]],
        "lessons": [record["lessons"][0]],
        "classes": [record["classes"][0]],
        "Members": [get("/api/v1/members")["members"][0]],
        "Devices": [get(f"/api/v1/devices/{radio}")],
        "Device record": [get(f"/api/v1/devices/{radio}/record"), get(f"/api/v1/devices/{radio}/record")["epochs"][0]],
        "Fleet table": [get("/api/v1/fleet?state=online")["devices"][0]],
        "Class sessions": [get("/api/v1/sessions?period=2026-Q4")["sessions"][0]],
    }


def test_every_documented_table_matches_the_real_json(answers):
    sections = _sections()
    for heading, samples in answers.items():
        tables = sections.get(heading)
        assert tables, f"docs/API.md has no field table under '{heading}'"
        for fields, sample in zip(tables, samples):
            assert fields - set(sample) == set(), f"{heading}: documented but not in the JSON"
            assert set(sample) - fields == set(), f"{heading}: in the JSON but not documented"


def test_the_documented_not_counted_reasons_are_the_ones_the_code_uses():
    source = "\n".join(p.read_text(encoding="utf-8") for p in
                       (DOC.parents[1] / "server" / "attendance").glob("*.py"))
    source += (DOC.parents[1] / "server" / "events" / "ingest.py").read_text(encoding="utf-8")
    used = set(re.findall(r'exclude\("([a-z_]+)"', source)) | set(re.findall(r'return None, "([a-z_]+)"', source))
    text = DOC.read_text(encoding="utf-8")
    table = text[text.index("| reason | the event |"):].split("\n\n")[0]
    documented = {name for line in table.splitlines()[2:] for name in re.findall(r"`([a-z_]+)`", line.split("|")[1])}
    assert used and used == documented
