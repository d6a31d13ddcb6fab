"""Console accounts in the browser: scope by link and typed URL, roles, CSRF, the lock-out, the remembered language."""

from __future__ import annotations

import re

import requests
from sqlalchemy import select

from server.audit import AuditEntry
from tests.console.conftest import PASSWORD, check_axe, sign_in


def test_operator_gets_403_for_another_township_by_link_and_typed_url(org, live_server, staff, page):
    staff("op", "operator", "qs")
    sign_in(page, live_server, "op")
    response = page.goto(f"{live_server}/sync")
    assert response.status == 200 and "qs" in page.inner_text("h1")
    check_axe(page)
    # typed URL
    response = page.goto(f"{live_server}/sync?township=hw")
    assert response.status == 403
    assert page.locator("[data-code=other_township]").count() == 1
    assert "属于其他乡镇" in page.inner_text("[data-code=other_township]")  # the error page speaks the page's language
    check_axe(page)
    # by link: a link to the other township followed from a page
    page.goto(f"{live_server}/sync")
    page.evaluate("""() => { const a = document.createElement('a'); a.id = 'other'; a.textContent = 'hw';
                             a.href = '/sync/table?township=hw'; document.querySelector('main').append(a); }""")
    with page.expect_response(re.compile(r"/sync/table\?township=hw")) as info:
        page.click("#other")
    assert info.value.status == 403
    # and an admin page and a write outside the role
    assert page.goto(f"{live_server}/admin/users").status == 403
    assert page.goto(f"{live_server}/lessons/upload").status == 403


def test_viewer_cannot_upload_or_publish(org, live_server, staff, page, services):
    from server.programmes import service as programmes

    pid = programmes.create(services, {"code": "C1", "title": "专题", "valid_from": "2026-10-01",
                                       "valid_until": "2026-10-31"}, "test")
    staff("vi", "viewer")
    sign_in(page, live_server, "vi")
    assert page.locator("nav >> text=上传").count() == 0
    assert page.goto(f"{live_server}/lessons/upload").status == 403
    page.goto(f"{live_server}/programmes/{pid}/preview")
    page.wait_for_selector("p.summary")
    assert page.locator("#publish").count() == 0  # no publish button for a viewer
    check_axe(page)
    # the same writes posted by hand, with a valid CSRF token: the role refuses them
    token = page.evaluate("document.body.getAttribute('hx-headers')")
    csrf = re.search(r'"X-CSRFToken": "([^"]+)"', token).group(1)
    published = page.request.post(f"{live_server}/programmes/{pid}/publish", form={"csrf_token": csrf, "devices": "0"})
    assert published.status == 403
    upload = page.request.post(f"{live_server}/api/v1/uploads", headers={
        "X-CSRFToken": csrf, "Tus-Resumable": "1.0.0", "Upload-Length": "10", "Upload-Metadata": "title dGVzdA=="})
    assert upload.status == 403


def test_a_form_without_its_csrf_token_is_refused(live_server, staff, services):
    staff("mo", "media")
    web = requests.Session()
    page = web.get(f"{live_server}/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert web.post(f"{live_server}/login", data={"username": "mo", "password": PASSWORD}).status_code == 400
    signed = web.post(f"{live_server}/login", data={"username": "mo", "password": PASSWORD, "csrf_token": token},
                      allow_redirects=False)
    assert signed.status_code == 302
    refused = web.post(f"{live_server}/programmes", data={"code": "X", "title": "x", "kind": "quarter",
                                                          "quarter": "2026-Q4"})
    assert refused.status_code == 400 and "CSRF" in refused.text
    from server.programmes.models import Programme
    with services.db.session() as session:
        assert session.scalar(select(Programme.id)) is None
    # the browser's tus calls need it too
    assert web.post(f"{live_server}/api/v1/uploads", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "10",
                                                             "Upload-Metadata": "title dGVzdA=="}).status_code == 400


def test_five_wrong_passwords_lock_the_account(live_server, staff, page, services):
    staff("mo", "media")
    for _ in range(4):
        sign_in(page, live_server, "mo", "wrong-password")
        assert page.locator("[data-code=bad_login]").count() == 1
    # the refusal reads in the page's language (zh_CN by default), the same words the API gives a Chinese caller
    assert page.inner_text("[data-code=bad_login]") == "用户名或密码错误。"
    sign_in(page, live_server, "mo", "wrong-password")
    assert page.locator("[data-code=account_locked]").count() == 1
    assert page.inner_text("[data-code=account_locked]") == "密码错误次数过多：此账号已锁定 15 分钟。"
    check_axe(page)
    sign_in(page, live_server, "mo")  # the right password, while locked
    assert page.locator("[data-code=account_locked]").count() == 1
    assert "/login" in page.url
    with services.db.session() as session:
        assert session.scalars(select(AuditEntry.action).where(AuditEntry.subject == "mo")).all() == ["account.locked"]


def test_the_english_switch_works_and_is_remembered(live_server, staff, page):
    staff("mo", "media")
    sign_in(page, live_server, "mo")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    page.click("button:has-text('English')")
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("h1").inner_text() == "What needs attention"
    check_axe(page)
    page.click("text=Sign out")
    # the sign-out's redirect to /login sets a new session cookie; clearing cookies before it has landed let that
    # late cookie pair with the next form's token, and the sign-in was refused as a CSRF mismatch (400)
    page.wait_for_url(re.compile(r"/login$"))
    page.wait_for_load_state("load")
    page.context.clear_cookies()
    sign_in(page, live_server, "mo")
    assert page.locator("html").get_attribute("lang") == "en"  # kept on the account, not in the cookie
    page.click("button:has-text('中文')")
    assert page.locator("h1").inner_text() == "待处理事项"
