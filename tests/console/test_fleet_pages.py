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


def test_a_device_page_says_its_machine_words_in_chinese(org, app, staff, enrolled):
    """The sync state, the sync log and a command's outcome are shown in Chinese; the machine word stays in a title
    for support staff, and a word no table knows (a newer agent's) is shown as it came."""
    import json
    import uuid
    from datetime import timedelta

    from server.events.ingest import store_status
    from server.events.models import DeviceEvent

    uid = enrolled("radio", name="收音机", site="qs-01")["device"]
    now = org.clock()
    for minutes, sync in ((30, "checking"), (20, "idle"), (10, "checking"), (1, "idle")):
        assert store_status(org, uid, json.dumps({"online": True, "sync": sync, "battery": 80}).encode(),
                            now - timedelta(minutes=minutes))
    with org.db.session() as session:
        for seq, body in enumerate(({"name": "resync", "result": "done", "message": "sync started"},
                                    {"name": "teleport", "result": "unknown", "message": "unknown command type"}),
                                   start=1):
            session.add(DeviceEvent(device_uid=uid, epoch=1, seq=seq, seq_last=seq, event_id=str(uuid.uuid4()),
                                    type="command", body={"type": "command", "command": f"c{seq}", **body},
                                    device_time=now, received_at=now, at=now))
    staff("op", "operator", "qs")
    client, _csrf = _signed_in(app, "op")
    page = client.get(f"/devices/{uid}")
    assert page.status_code == 200
    text = re.sub(r"<[^>]+>", " ", page.text)  # what a person reads, without the attributes that keep the words
    assert "已同步，空闲" in text and "正在检查更新" in text  # the Sync fact and the sync log
    assert "远程命令" in text and "重新同步" in text and "已完成" in text and "已开始同步" in text
    for raw in ("idle", "checking", "sync started", "resync", "done"):
        assert not re.search(rf"(?<![\w-]){raw}(?![\w-])", text), raw
    assert 'title="idle"' in page.text and 'title="sync started"' in page.text
    assert "teleport" in text  # unknown to the vocabulary: shown as it came, the page still renders
    table = client.get("/devices").text
    row = table[table.index(f'<tr data-uid="{uid}"'):]
    row = row[:row.index("</tr>")]
    assert '<span class="state online" title="online">在线</span>' in row  # the table's state column alike


def test_an_empty_picker_says_what_to_do_and_cannot_be_sent(org, app, staff, enrolled):
    """A radio at a site with no members: no empty select to hand it over, but a message with a link to the
    import page, and the hand-over button disabled; once a member is imported, the picker is back."""
    uid = enrolled("radio", name="收音机", site="qs-01")["device"]
    staff("op", "operator", "qs")
    client, _csrf = _signed_in(app, "op")
    page = client.get(f"/devices/{uid}").text
    holder = page[page.index('id="holder"'):page.index('id="h-sync"')]
    assert '<select id="holder-member"' not in holder
    assert "本村（点）还没有在册党员" in holder and "/org/import?kind=members" in holder
    assert "<button disabled>移交</button>" in holder
    org_service.import_members(org, "member_id,name,site_code\nm1,张三,qs-01\n".encode(), "test")
    holder = client.get(f"/devices/{uid}").text
    holder = holder[holder.index('id="holder"'):holder.index('id="h-sync"')]
    assert '<select id="holder-member"' in holder and "张三" in holder and "<button disabled>" not in holder


def test_adding_a_device_or_a_class_without_sites_says_to_import_sites(app, staff):
    """No site at all: the add-a-device and add-a-class forms say so, link to the sites import and cannot be sent."""
    staff("admin1", "admin")
    client, _csrf = _signed_in(app, "admin1")
    for url, picker, button in (("/devices/new", "new-site", "添加并打印标签"),
                                ("/attendance/sessions", "n-site", "添加课程")):
        page = client.get(url).text
        assert "还没有村（点）" in page and "/org/import?kind=sites" in page, url
        assert f'<select id="{picker}"' not in page and f'<span class="empty" id="{picker}"' in page, url
        assert f"<button disabled>{button}</button>" in page, url
