"""The fleet pages' refusals and confirmations through the Flask test client: a bad filter, an unreadable file, a
revoke that asks first, a new code with its label, and the home page's alert for a radio whose member left."""

from __future__ import annotations

import re

import pytest

from server.devices import registry as devices
from server.org import service as org_service
from tests.console.conftest import PASSWORD


def _signed_in(app, username):
    client = app.test_client()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    assert client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": csrf}).status_code \
        == 302
    # signing in starts a new session, with a new CSRF token
    return client, re.search(r'"X-CSRFToken": "([^"]+)"', client.get("/devices").text).group(1)


@pytest.fixture
def radios(org):
    with org.db.session() as session:
        return [devices.add(org, session, kind="radio", name=f"收音机{n}", site_code=site, actor="test").uid
                for n, site in enumerate(("qs-01", "qs-02", "hw-01"))]


def test_bad_filters_and_files_are_refused_with_a_reason(org, app, staff, radios):
    staff("op", "operator", "qs")
    client, csrf = _signed_in(app, "op")
    assert client.get("/devices?state=asleep").status_code == 422
    assert client.get("/devices?kind=lamp").status_code == 422
    workbook = client.post("/devices/import", data={"csrf_token": csrf, "step": "preview",
                                                    "file": (__import__("io").BytesIO(b"PK\x03\x04xx"), "d.xlsx")},
                           content_type="multipart/form-data")
    assert workbook.status_code == 422 and "CSV" in workbook.text
    empty = client.post("/devices/import", data={"csrf_token": csrf, "step": "preview", "csv": ""})
    assert empty.status_code == 422
    # a write without the session's CSRF token is refused
    assert client.post("/devices/bulk", data={"action": "resync", "uid": radios[0]}).status_code == 400


def test_revoke_asks_first_and_a_new_code_prints_its_label(org, app, staff, radios):
    staff("op", "operator", "qs")
    client, csrf = _signed_in(app, "op")
    ask = client.post("/devices/bulk", data={"csrf_token": csrf, "action": "revoke", "uid": radios[:2]})
    assert ask.status_code == 200 and "confirm-revoke" in ask.text
    with org.db.session() as session:
        assert devices.get(session, radios[0]).state == "pending"
    done = client.post("/devices/bulk", data={"csrf_token": csrf, "action": "revoke", "confirm": "yes",
                                              "uid": radios[:2], "reason": "lost"})
    assert done.status_code == 302
    with org.db.session() as session:
        assert [devices.get(session, uid).state for uid in radios[:2]] == ["revoked", "revoked"]
    # another township's radio in the selection refuses the whole action
    assert client.post("/devices/bulk", data={"csrf_token": csrf, "action": "revoke", "confirm": "yes",
                                              "uid": [radios[2]]}).status_code == 403
    assert client.post(f"/devices/{radios[2]}/code", data={"csrf_token": csrf}).status_code == 403
    staff("admin1", "admin")
    admin, admin_csrf = _signed_in(app, "admin1")
    label = admin.post(f"/devices/{radios[2]}/code", data={"csrf_token": admin_csrf})
    assert label.status_code == 200 and label.text.count('class="label"') == 1
    code = re.search(r'data-code="([A-Z0-9-]+)"', label.text).group(1)
    assert re.fullmatch(r"[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}", code)


def test_home_page_names_the_radio_of_a_member_who_left(org, app, staff):
    org_service.import_members(org, "member_id,name,site_code,left\nm1,张三,qs-01,2026-01-31\n".encode(), "test")
    with org.db.session() as session:
        uid = devices.add(org, session, kind="radio", name="张三的收音机", site_code="qs-01", member_no="m1",
                          actor="test").uid
    staff("op", "operator", "qs")
    staff("op2", "operator", "hw")
    client, _csrf = _signed_in(app, "op")
    home = client.get("/")
    assert f"/devices/{uid}#holder" in home.text and "张三" in home.text
    other, _csrf = _signed_in(app, "op2")
    assert f"/devices/{uid}" not in other.get("/").text
