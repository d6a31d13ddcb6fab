"""Slot days through the API: written and answered as documented, hostile values refused with a clear 422, only
programme writers may set them, stored slots from before days read as every day, and a published terminal
manifest carries them (schema 2) only when a slot does not play every day."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import update

from playlists.manifest import parse_manifest
from playlists.model import WEEKDAYS
from server.programmes import publish, service as programmes
from server.programmes.models import Channel, Programme
from tests.server.test_api_doc import _sections

WEEKDAYS_ONLY = ["mon", "tue", "wed", "thu", "fri"]
BASE = {"code": "2026-Q4", "title": "2026年第四季度", "valid_from": "2026-10-01", "valid_until": "2026-12-31"}


def create(client, headers, slots, **extra):
    return client.post("/api/v1/programmes", json={**BASE, "slots": slots, **extra}, headers=headers)


def test_days_are_written_answered_in_week_order_and_default_to_every_day(client, auth, org):
    media = auth("media")
    answer = create(client, media, [{"time": "07:00", "days": ["fri", "mon", "wed", "tue", "thu"]},
                                    {"time": "19:30", "kind": "class"}])
    assert answer.status_code == 201, answer.get_json()
    slots = answer.get_json()["slots"]
    assert [(s["time"], s["days"]) for s in slots] == [("07:00", WEEKDAYS_ONLY), ("19:30", list(WEEKDAYS))]
    changed = client.patch(f"/api/v1/programmes/{answer.get_json()['id']}", headers=media,
                           json={"slots": [{"time": "07:00", "days": ["sat", "sun"]}]})
    assert changed.status_code == 200 and changed.get_json()["slots"][0]["days"] == ["sat", "sun"]


def test_the_documented_slot_fields_are_the_answered_ones(client, auth, org):
    answer = create(client, auth("media"), [{"time": "07:00", "days": WEEKDAYS_ONLY}]).get_json()
    sections = _sections()
    [programme_fields] = sections["Programmes"]
    [slot_fields] = sections["Programme slots"]
    assert programme_fields == set(answer)
    assert slot_fields == set(answer["slots"][0])


@pytest.mark.parametrize("days, says", [
    ([], "days is empty"),
    (["Monday"], "'Monday' is not a day"),
    (["周一"], "is not a day"),
    ([1, 2], "1 is not a day"),
    (["mon", "mon"], "mon is listed twice"),
    ("mon", "must be a list"),
    (None, "must be a list"),
    ({"mon": True}, "must be a list"),
])
def test_bad_days_are_refused_with_a_400_that_says_what_to_send(client, auth, org, days, says):
    answer = create(client, auth("media"), [{"time": "07:00"}, {"time": "19:30", "days": days}])
    assert answer.status_code == 422, answer.get_json()
    error = answer.get_json()["error"]
    assert error["code"] == "bad_days" and error["message"].startswith("slot 2:") and says in error["message"]
    assert client.get("/api/v1/programmes/2026-Q4", headers=auth("media")).status_code == 404  # nothing made


def test_a_bad_day_is_explained_in_chinese_when_asked(client, auth, org):
    answer = create(client, {**auth("media"), "Accept-Language": "zh-CN"}, [{"time": "07:00", "days": []}])
    assert answer.status_code == 422 and "周" not in answer.get_json()["error"]["code"]
    assert "空" in answer.get_json()["error"]["message"], answer.get_json()


@pytest.mark.parametrize("role", ["operator", "viewer"])
def test_only_programme_writers_may_set_slot_days(client, auth, org, role):
    pid = create(client, auth("media"), [{"time": "07:00"}]).get_json()["id"]
    answer = client.patch(f"/api/v1/programmes/{pid}", headers=auth(role),
                          json={"slots": [{"time": "07:00", "days": ["sun"]}]})
    assert answer.status_code == 403
    assert create(client, auth(role), [{"time": "07:00", "days": ["sun"]}], code="other").status_code == 403
    shown = client.get(f"/api/v1/programmes/{pid}", headers=auth("media")).get_json()
    assert shown["slots"][0]["days"] == list(WEEKDAYS)


def test_a_slot_stored_before_days_existed_reads_as_every_day(services, client, auth, org):
    pid = create(client, auth("media"), [{"time": "07:00", "days": ["mon"]}]).get_json()["id"]
    with services.db.session() as session:
        session.execute(update(Programme).where(Programme.id == pid)
                        .values(slots=[{"time": "07:00", "kind": "broadcast", "item_position": None}]))
    shown = client.get(f"/api/v1/programmes/{pid}", headers=auth("media")).get_json()
    assert shown["slots"] == [{"time": "07:00", "kind": "broadcast", "item_position": None, "days": list(WEEKDAYS)}]


def _terminal_manifest(services, channel):
    with services.db.session() as session:
        return parse_manifest(session.get(Channel, channel).manifest)


def test_a_published_weekday_slot_reaches_the_terminal_manifest_as_schema_2(broker, org, enrolled, ready_lesson):
    lesson = ready_lesson("第一课 学习党章", 2.0)
    terminal = enrolled("terminal", name="渔港村终端", site="hw-01")
    pid = programmes.create(broker, {**BASE, "items": [{"lesson": lesson}],
                                     "slots": [{"time": "07:00", "days": WEEKDAYS_ONLY}, {"time": "19:30"}]}, "test")
    publish.publish(broker, pid, "test")
    manifest = _terminal_manifest(broker, terminal["channel"])
    assert manifest.schema == 2
    assert [(s.time, s.days) for s in manifest.slots] == [("07:00", tuple(WEEKDAYS_ONLY)), ("19:30", WEEKDAYS)]


def test_the_preview_counts_devices_whose_agent_would_refuse_a_schema_2_manifest(broker, org, enrolled, ready_lesson,
                                                                                    client, auth):
    from datetime import datetime, timezone

    from server.events.ingest import store_status

    lesson = ready_lesson("第一课 学习党章", 2.0)
    old, new, silent = (enrolled("terminal", name=f"终端{n}", site="hw-01")["device"] for n in range(3))
    now = datetime(2026, 11, 1, 3, 0, tzinfo=timezone.utc)
    for uid, version in ((old, "0.3.0"), (new, "0.4.0")):
        assert store_status(broker, uid, json.dumps({"online": True, "agent_version": version}).encode(), now)
    every_day = programmes.create(broker, {**BASE, "items": [{"lesson": lesson}], "slots": [{"time": "07:00"}]},
                                  "test")
    preview = client.get(f"/api/v1/programmes/{every_day}/preview", headers=auth("media")).get_json()
    assert preview["devices_affected"] == 3 and preview["old_agents"] == 0  # schema 1: every agent reads it
    assert {c["schema"] for c in preview["channels"]} == {1}
    programmes.update(broker, every_day, {"slots": [{"time": "07:00", "days": WEEKDAYS_ONLY}]}, "test")
    preview = client.get(f"/api/v1/programmes/{every_day}/preview", headers=auth("media")).get_json()
    # Only the terminal that said it runs 0.3.0; the one that never reported its version is not guessed at.
    assert preview["old_agents"] == 1 and {c["schema"] for c in preview["channels"]} == {2}
    # The console's preview says it in words, next to the publish button.
    import re

    from server.accounts.auth import hash_password
    from server.accounts.models import User

    with broker.db.session() as session:
        session.add(User(username="mo", password_hash=hash_password("pw-slot-days-1"), role="media",
                         created_at=broker.clock()))
    login = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
    assert client.post("/login", data={"username": "mo", "password": "pw-slot-days-1", "csrf_token": token},
                       headers={"Accept-Language": "zh-CN"}).status_code == 302
    fragment = client.get(f"/programmes/{every_day}/preview/plan").get_data(as_text=True)
    assert re.search(r'id="old-agents"[^>]*>1 台设备的终端程序早于 0.4.0', fragment), fragment[:600]
