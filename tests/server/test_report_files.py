"""Report files read like the county's own documents: levels, kinds of period and yes/no through the catalogue, the
county row named after the county, 姓名 over members' names, the generation time in county time, a note that a
programme's end date includes the grace days, and columns wide enough for their longest value (CJK counts two)."""

from __future__ import annotations

import csv
import dataclasses
import io
from datetime import datetime, timezone

import pytest
from openpyxl import load_workbook

from server.attendance.report_export import text_width
from tests.attendance_data import build_county
from tests.conftest import free_port, make_services

# 17:30 UTC on 4 January is 01:30 on 5 January in the county (Asia/Shanghai).
NOW = datetime(2027, 1, 4, 17, 30, tzinfo=timezone.utc)


@pytest.fixture
def services(tmp_path):
    svc = make_services(tmp_path / "data", port=free_port(), mqtt_port=free_port(), mqtt_server_port=free_port(),
                        county_name="青山县")
    svc.clock = lambda: NOW
    yield svc
    svc.db.dispose()


def _get(client, headers, query: str) -> bytes:
    answer = client.get(f"/api/v1/reports/participation?{query}", headers=headers)
    assert answer.status_code == 200, answer.data[:300]
    return answer.data


def test_an_xlsx_report_reads_chinese_throughout(client, auth, services):
    build_county(services, townships=1, sites_per_township=2, members_per_site=3, radios_per_site=1)
    admin = auth("admin")
    book = load_workbook(io.BytesIO(_get(client, admin, "programme=2026-Q4&format=xlsx")))
    assert book.sheetnames[0] == "说明"
    about = {row[0]: row[1] for row in book["说明"].iter_rows(values_only=True)}
    assert about["期间类型"] == "节目单"
    assert about["生成时间"] == "2027-01-05 01:30 (Asia/Shanghai)"
    assert about["结束日期"] == "2027-01-30"  # 31 December plus the 30 grace days...
    assert "30 天宽限期" in about["备注"] and "2026-12-31" in about["备注"]  # ...and the file says so

    header, row = list(book["全县"].iter_rows(values_only=True))
    assert row[header.index("层级")] == "县" and row[header.index("名称")] == "青山县"
    sites = list(book["村（点）"].iter_rows(values_only=True))
    assert {r[sites[0].index("层级")] for r in sites[1:]} == {"村（点）"}
    members = list(book["党员"].iter_rows(values_only=True))
    assert members[0][1] == "姓名" and "名称" not in members[0]
    assert {r[members[0].index("已参训")] for r in members[1:]} == {"否"}

    # Every column is as wide as its longest header or value, a Chinese character counting two.
    for name in book.sheetnames:
        sheet = book[name]
        rows = list(sheet.iter_rows(values_only=True))
        for column, cells in enumerate(zip(*rows), 1):
            letter = sheet.cell(1, column).column_letter
            widest = max(text_width(str(c)) for c in cells if c is not None and not isinstance(c, float))
            assert sheet.column_dimensions[letter].width >= min(widest, 60), (name, letter, cells[0])


def test_csv_reports_read_chinese_and_english(client, auth, services):
    build_county(services, townships=1, sites_per_township=1, members_per_site=2, radios_per_site=1)
    admin = auth("admin")
    text = _get(client, admin, "period=2026-Q4&format=csv&table=county").decode("utf-8").removeprefix("\ufeff")
    head, county = list(csv.reader(io.StringIO(text)))
    assert county[0] == "县" and county[3] == "青山县"
    members = _get(client, admin, "period=2026-Q4&format=csv&table=members").decode("utf-8").removeprefix("\ufeff")
    rows = list(csv.reader(io.StringIO(members)))
    assert rows[0][1] == "姓名"
    trained = rows[0].index(next(h for h in rows[0] if "参训" in h and "次" not in h and "率" not in h))
    assert {r[trained] for r in rows[1:]} == {"否"}
    english = _get(client, admin, "period=2026-Q4&format=csv&table=members&lang=en").decode("utf-8")
    rows = list(csv.reader(io.StringIO(english.removeprefix("\ufeff"))))
    assert rows[0][1] == "Member name" and {r[rows[0].index("Trained")] for r in rows[1:]} == {"No"}
    sites = _get(client, admin, "period=2026-Q4&format=csv&table=townships&lang=en").decode("utf-8")
    assert list(csv.reader(io.StringIO(sites.removeprefix("\ufeff"))))[1][0] == "township"
    # JSON keeps the codes a program reads, and says when in the county's time.
    body = client.get("/api/v1/reports/participation?period=2026-Q4", headers=admin).get_json()
    assert body["county"][0]["level"] == "county" and body["county"][0]["name"] == "青山县"
    assert body["meta"]["generated_at"] == "2027-01-05T01:30:00+08:00"
    assert body["meta"]["kind"] == "quarter" and "grace_days" not in body["meta"]

    # Without LESSONCAST_COUNTY_NAME the county row says "this county" in the reader's language.
    services.__dict__["rules"] = dataclasses.replace(services.rules, county_name="")
    for lang, says in (("zh_CN", "本县"), ("en", "This county")):
        text = _get(client, admin, f"period=2026-Q4&format=csv&table=county&lang={lang}").decode("utf-8")
        assert list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))[1][3] == says
