"""The organisation department's quarter in the console: after radios and terminals have played (their events
stored through ingest's own path), a viewer sees the participation bars against the target and the home-visit list,
drills down county → township → site → member, downloads the XLSX and finds the page's figures in its cells, and
prints the report on A4. A township operator is refused another township's members and reports, by link and by
typed URL."""

from __future__ import annotations

import io

from openpyxl import load_workbook
from sqlalchemy import select

from server.audit import AuditEntry

from tests.console.conftest import SCREENSHOTS, check_axe, sign_in
from tests.server.test_reports import make_county


def _table(page, selector: str) -> dict[str, dict[str, str]]:
    """The figures of an area table on the page: {code: {column: text}}."""
    out = {}
    for row in page.locator(f"{selector} tbody tr").all():
        out[row.get_attribute("data-code")] = {
            cell.get_attribute("data-col"): cell.get_attribute("data-value") or cell.inner_text()
            for cell in row.locator("td[data-col]").all()}
    return out


def _sheet(book, index: int) -> dict[str, dict[str, object]]:
    """An area sheet of the report's workbook by code (sheet 0 says what the workbook is)."""
    rows = list(book.worksheets[index].iter_rows(values_only=True))
    keys = ["level", "township", "code", "name", "active", "trained", "rate", "completed_all", "classes",
            "broadcast_days", "clock_flagged"]
    return {r[2]: dict(zip(keys, r)) for r in rows[1:]}


def open_dashboard(page, base: str, username: str, period: str) -> None:
    """Sign in as USERNAME, open the attendance dashboard from the menu for PERIOD, and wait for its bars."""
    sign_in(page, base, username)
    page.click("nav >> text=参学统计")
    page.fill("#a-period", period)
    page.click("form.filters >> text=显示")
    page.wait_for_selector("#chart-rate[data-drawn='1'] canvas")


def test_department_reads_the_quarter(services, live_server, staff, page):
    make_county(services)
    staff("org-dept", "viewer")
    # the bars are drawn, and the same figures stand in the table under them
    open_dashboard(page, live_server, "org-dept", "2026-Q4")
    assert page.locator("#chart-trend canvas").count() == 1
    towns = _table(page, "#townships")
    assert {code: (v["active"], v["trained"]) for code, v in towns.items()} == {"t00": ("6", "2"), "t01": ("6", "1")}
    # the home-visit list: the year's untrained members, each linked to their page
    visits = [r.get_attribute("data-member") for r in page.locator("#home-visits tbody tr").all()]
    assert "M00010000" in visits and "M00000000" not in visits
    assert page.locator("#no-class tr[data-code='t00-s01']").count() == 1
    check_axe(page)
    page.goto(f"{live_server}/attendance/home-visits?period=2026-Q4")  # the whole list, paged
    assert [r.get_attribute("data-member") for r in page.locator("#home-visits tbody tr").all()] == visits
    check_axe(page)
    page.go_back()
    page.wait_for_selector("#chart-rate[data-drawn='1'] canvas")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "attendance-dashboard.png"), full_page=True)

    # the XLSX has the page's numbers in its cells
    with page.expect_download() as download:
        page.click("#export-xlsx")
    book = load_workbook(io.BytesIO(open(download.value.path(), "rb").read()))
    sheet = _sheet(book, 2)  # About, County, Townships, ...
    for code, shown in towns.items():
        cells = sheet[code]
        assert str(cells["active"]) == shown["active"] and str(cells["trained"]) == shown["trained"]
        assert str(cells["classes"]) == shown["classes"] and str(cells["broadcast_days"]) == shown["broadcast_days"]
        assert abs(cells["rate"] - float(shown["rate"])) < 1e-6
    county = _sheet(book, 1)["county"]
    assert (county["active"], county["trained"]) == (12, 3)
    assert page.get_attribute("#county-figures", "data-trained") == "3"

    # print: the county and the period head an A4 page, the navigation is left off
    page.emulate_media(media="print")
    assert page.locator(".print-header").is_visible() and "2026-Q4" in page.inner_text(".print-header")
    assert not page.locator("header.top").is_visible()
    pdf = page.pdf(format="A4")
    assert pdf.startswith(b"%PDF") and b"/MediaBox [0 0 595" in pdf
    page.emulate_media(media="screen")

    # drill down: county -> township -> site -> member
    page.click("#townships a:has-text('镇00')")
    assert "township=t00" in page.url
    page.wait_for_selector("#chart-rate[data-drawn='1']")
    sites = _table(page, "#sites")
    assert set(sites) == {"t00-s00", "t00-s01"}
    check_axe(page)
    page.click("#sites a:has-text('村0000')")
    assert page.locator("#members tbody tr").count() == 3
    assert page.locator("#members tr[data-member='M00000000']").inner_text().count("是") >= 1
    check_axe(page)
    page.click("#members a:has-text('M00000000')")
    assert page.locator("#lessons tbody tr").count() == 2
    assert page.locator("#radios tbody tr").count() == 1
    check_axe(page)
    # a session behind a class count, with its attendee
    page.goto(f"{live_server}/attendance/sessions?period=2026-Q4&site=t00-s00&classes_only=1")
    check_axe(page)
    page.click("#sessions tbody a")
    assert page.locator("#attendees tr[data-member='M00000001']").count() == 1
    check_axe(page)


def test_operator_enters_a_class_and_is_refused_another_township(services, live_server, staff, page):
    make_county(services)
    staff("t00-op", "operator", "t00")
    sign_in(page, live_server, "t00-op")
    # a class held without a terminal, with an attendee added and one refused from another township; audited
    page.goto(f"{live_server}/attendance/sessions?period=2026-Q4")
    check_axe(page)
    page.select_option("#n-site", "t00-s01")
    page.fill("#n-date", "2026-11-25")
    page.fill("#n-title", "冬训集中学习")
    page.click("button:has-text('添加课程')")
    page.fill("#add-member", "M00010001")
    page.click("button:has-text('添加参学人员')")
    page.wait_for_selector("#attendees tr[data-member='M00010001']")
    check_axe(page)
    page.fill("#add-member", "M01000001")
    with page.expect_navigation() as refused:
        page.click("button:has-text('添加参学人员')")
    assert refused.value.status == 403 and "M01000001" in page.inner_text("main")
    with services.db.session() as session:
        actions = session.scalars(select(AuditEntry.action).where(AuditEntry.actor == "t00-op")
                                  .order_by(AuditEntry.id)).all()
    assert actions == ["session.add", "attendee.add"]
    page.goto(f"{live_server}/attendance/sites/t00-s01?period=2026-Q4")
    assert page.locator("#members tr[data-member='M00010001']").inner_text().count("是") >= 1
    # typed URLs: members, a member's page and export, reports and sites of t01
    for path in ("/org/members/M01000001", "/org/members?township=t01", "/attendance?township=t01&period=2026-Q4",
                 "/attendance/sites/t01-s00?period=2026-Q4", "/attendance/export?township=t01&period=2026-Q4",
                 "/attendance/members/M01000001/export?period=2026"):
        response = page.goto(f"{live_server}{path}")
        assert response.status in (403, 404), path
    # by link: a link to t01's member followed from the operator's own page
    page.goto(f"{live_server}/attendance?period=2026-Q4")
    assert set(_table(page, "#sites")) == {"t00-s00", "t00-s01"}  # an operator's dashboard is their township's
    check_axe(page)
    page.evaluate("""() => { const a = document.createElement('a'); a.id = 'foreign';
        a.href = '/org/members/M01000001'; a.textContent = 'x'; document.querySelector('main').append(a); }""")
    with page.expect_navigation() as nav:
        page.click("#foreign")
    assert nav.value.status == 403
    assert "M01000001" in page.inner_text("main")
