"""Admins manage accounts in the console and read the audit log; a user changes their own password."""

from __future__ import annotations

import re

from tests.console.conftest import PASSWORD, check_axe, sign_in


def test_admin_manages_accounts_and_reads_the_audit(org, live_server, staff, page, browser):
    staff("root", "admin")
    sign_in(page, live_server, "root")
    page.click("nav >> text=账号")
    check_axe(page)
    page.fill("#new-username", "qs-op")
    page.select_option("#new-role", "operator")
    page.select_option("#new-township", "qs")
    page.click("text=创建账号")
    password = re.search(r"：(\S+)$", page.locator(".flash").inner_text()).group(1)
    # the new operator signs in with the password shown once, in another browser
    other = browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN").new_page()
    sign_in(other, live_server, "qs-op", password)
    assert "乡镇操作员" in other.inner_text("header")
    # an operator without a township is refused with the service's words
    page.fill("#new-username", "nowhere")
    page.select_option("#new-role", "operator")
    page.click("text=创建账号")
    assert page.inner_text("[data-code=township_required]") == "乡镇操作员必须指定一个乡镇：操作员只能查看一个乡镇。"
    page.goto(f"{live_server}/admin/users")
    # disable the operator: their open session ends, and they cannot sign in again
    row = page.locator("tr", has_text="qs-op")
    row.locator("input[name=enabled]").uncheck()
    row.locator("button:has-text('保存')").click()
    assert other.goto(f"{live_server}/").url.startswith(f"{live_server}/login")
    sign_in(other, live_server, "qs-op", password)
    assert other.locator("[data-code=account_disabled]").count() == 1
    other.context.close()
    # the audit page, filtered by what
    page.goto(f"{live_server}/admin/audit")
    check_axe(page)
    page.select_option("#a-action", "account.update")
    page.click("text=筛选")
    assert [t.inner_text() for t in page.locator("tbody td:nth-child(3)").all()] == ["account.update"]
    # one's own password
    page.click("header >> text=密码")
    check_axe(page)
    page.fill("#old", PASSWORD)
    page.fill("#new", "a-new-password-2")
    page.click("button[type=submit]")
    assert "密码已修改" in page.inner_text("main")
