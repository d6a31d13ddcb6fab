"""A township operator imports their villages in the console: a sites CSV with one bad row shows that row before
anything is stored, the fixed file (in GBK, as county offices save it) is previewed and then imported in one go,
and a row of another township is refused with its line named."""

from __future__ import annotations

from sqlalchemy import func, select

from server.audit import AuditEntry
from server.org.models import Site
from tests.console.conftest import check_axe, sign_in

HEADER = "township_code,township_name,site_code,site_name\n"
BAD = HEADER + "qs,青山镇,qs-03,南村\nqs,青山镇,qs-04,\n"
GOOD = HEADER + "qs,青山镇,qs-03,南村\nqs,青山镇,qs-04,北村\n"
OTHER = HEADER + "qs,青山镇,qs-05,新村\nhw,海湾镇,hw-05,海边村\n"


def _stored(services) -> tuple[list[str], int]:
    with services.db.session() as session:
        return (sorted(session.scalars(select(Site.code))),
                session.scalar(select(func.count(AuditEntry.id)).where(AuditEntry.action.startswith("org.import"))))


def _choose(page, tmp_path, name: str, data: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    page.select_option("#i-kind", "sites")
    page.set_input_files("#i-file", str(path))
    page.click("#check")


def test_operator_imports_sites_after_seeing_the_bad_row(org, live_server, staff, page, tmp_path):
    services = org
    staff("qs-op", "operator", "qs")
    before = _stored(services)
    sign_in(page, live_server, "qs-op")
    page.click("nav >> text=组织")
    check_axe(page)
    page.click("text=导入 CSV")
    check_axe(page)

    # 1. one bad row: the page names its line and column, and nothing is stored
    _choose(page, tmp_path, "村.csv", BAD.encode())
    errors = page.locator("#row-errors tbody tr")
    assert errors.count() == 1
    assert errors.first.locator("td").nth(0).inner_text() == "3"
    assert errors.first.locator("td").nth(1).inner_text() == "site_name"
    assert "未导入任何内容" in page.inner_text("[data-code=csv_invalid]")
    check_axe(page)
    assert _stored(services) == before

    # 2. the fixed file, saved in GBK: a preview of what it will do, still nothing stored until confirmed
    _choose(page, tmp_path, "村-改.csv", GOOD.encode("gbk"))
    assert page.locator("#preview").count() == 1
    assert "2" in page.inner_text("#preview p")
    check_axe(page)
    assert _stored(services) == before
    page.click("#confirm")
    assert page.url.startswith(f"{live_server}/org/sites")
    assert "村-改.csv" in page.inner_text(".flash")
    sites, imports = _stored(services)
    assert sites == sorted(before[0] + ["qs-03", "qs-04"]) and imports == before[1] + 1
    assert page.locator("#sites input[name=name][value='北村']").count() == 1  # the operator may rename it
    check_axe(page)

    # 3. a row of another township: refused with its line, nothing of the file stored
    page.goto(f"{live_server}/org/import")
    _choose(page, tmp_path, "别人的.csv", OTHER.encode())
    assert page.locator("#row-errors tbody tr").count() == 1
    assert page.locator("#row-errors tbody td").first.inner_text() == "3"
    assert "qs-05" not in _stored(services)[0]
