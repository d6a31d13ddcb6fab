"""Devices: adding, one-time enrolment over the API, revocation at HTTP endpoints, CSV import, and the CLI from
'device add' through 'publish' to a sideload pack that verifies (and one that does not)."""

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner

from lessoncast.cli import main
from playlists.packs import verify_pack
from playlists.trust import TrustError
from server.devices import enrolment, registry as devices
from server.errors import DomainError
from tests.conftest import cli_env

pytestmark = pytest.mark.databases  # each test that uses the instance runs on SQLite and on PostgreSQL


def _add(services, **kw):
    with services.db.session() as session:
        return devices.add(services, session, actor="test", **{"kind": "radio", "name": "收音机", **kw})


def test_enrol_over_the_api_is_one_time(services, client):
    new = _add(services)
    answer = client.post("/api/v1/enrol", json={"code": new.code.lower().replace("-", " ")})
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["device"] == new.uid and body["mqtt"]["username"] == new.uid == body["mqtt"]["client_id"]
    assert body["mqtt"]["port"] == services.settings.mqtt_port and body["mqtt"]["password"]
    assert body["http_token"].startswith("lcd_") and body["root"]["signed"]["_type"] == "root"
    assert body["repository_url"].endswith("/tuf/") and body["config"]["channel"] == body["channel"]
    again = client.post("/api/v1/enrol", json={"code": new.code})
    assert again.status_code == 403 and again.get_json()["error"]["code"] == "bad_enrol_code"
    with services.db.session() as session:
        stored = devices.get(session, new.uid)
        assert stored.state == "enrolled" and body["mqtt"]["password"] not in (stored.mqtt_password_hash or "")
    passwd = (services.data / "broker" / "passwd").read_text()
    assert passwd.startswith(f"{new.uid}:$7$") and body["mqtt"]["password"] not in passwd
    assert f"user {new.uid}\ntopic read lc/v1/channels/{body['channel']}/notify" in (
        services.data / "broker" / "acl").read_text()


@pytest.mark.parametrize("payload, status, code", [
    ({}, 400, "code_required"), ({"code": 12}, 400, "code_required"), ({"code": "AAAA-BBBB-CCCC"}, 403, "bad_enrol_code"),
])
def test_bad_enrol_requests(services, client, payload, status, code):
    answer = client.post("/api/v1/enrol", json=payload)
    assert answer.status_code == status and answer.get_json()["error"]["code"] == code


def test_expired_code_is_refused(services, client):
    new = _add(services)
    later = services.clock() + timedelta(days=services.settings.enrol_code_days + 1)
    services.clock = lambda: later
    answer = client.post("/api/v1/enrol", json={"code": new.code})
    assert answer.status_code == 403 and answer.get_json()["error"]["code"] == "enrol_code_expired"


def test_revoked_device_token_stops_working(tmp_path, database_url):
    from server.app import create_app
    from tests.conftest import free_port, make_services

    services = make_services(tmp_path / "d", mqtt_port=free_port(), mqtt_server_port=free_port(),
                             media_require_token=True, database_url=database_url)
    client = create_app(services=services).test_client()
    body = client.post("/api/v1/enrol", json={"code": _add(services).code}).get_json()
    uid = body["device"]
    name = "0" * 64 + ".mp3"
    headers = {"Authorization": f"Bearer {body['http_token']}"}
    assert client.get(f"/media/{name}", headers=headers).status_code == 404  # authenticated; no such file
    assert client.get(f"/media/{name}").status_code == 401
    devices.revoke(services, uid, "test", "stolen")
    refused = client.get(f"/media/{name}", headers=headers)
    assert refused.status_code == 401 and refused.get_json()["error"]["code"] == "bad_device_token"
    assert uid not in (services.data / "broker" / "passwd").read_text()
    assert uid not in (services.data / "broker" / "acl").read_text()
    services.db.dispose()


def test_devices_api_and_operator_scope(org, client, auth, token):
    created = client.post("/api/v1/devices", headers=auth("admin"),
                          json={"kind": "terminal", "name": "东村终端", "site": "qs-01"})
    assert created.status_code == 201 and len(created.get_json()["enrol_code"]) == 14
    uid = created.get_json()["id"]
    other = client.post("/api/v1/devices", headers=auth("admin"), json={"kind": "radio", "name": "渔船", "site": "hw-01"})
    qs_operator = {"Authorization": f"Bearer {token('operator', township='qs')}"}
    listed = client.get("/api/v1/devices", headers=qs_operator).get_json()
    assert [d["id"] for d in listed["devices"]] == [uid]
    refused = client.post(f"/api/v1/devices/{other.get_json()['id']}/revoke", headers=qs_operator)
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "other_township"
    assert client.post(f"/api/v1/devices/{uid}/revoke", headers=qs_operator).get_json()["state"] == "revoked"
    bad = client.post("/api/v1/devices", headers=auth("admin"), json={"kind": "tv", "name": "x"})
    assert bad.status_code == 422 and bad.get_json()["error"]["code"] == "bad_kind"
    assert client.post("/api/v1/devices", headers=auth("viewer"), json={}).status_code == 403


def test_device_without_site_goes_to_the_county_default_site(services):
    assert _add(services).site == "county"


def test_device_csv_import_is_all_or_nothing(org):
    good = "kind,name,site,language\nradio,张三的收音机,qs-01,cmn\nterminal,渔港村终端,hw-01,nan\n"
    added = devices.import_csv(org, good, "test")
    assert [d.kind for d in added] == ["radio", "terminal"]
    bad = "kind,name,site\nradio,李四,qs-02\nradio,王五,nowhere\nphone,x,qs-01\n"
    with pytest.raises(DomainError) as caught:
        devices.import_csv(org, bad, "test")
    assert "line 3" in caught.value.message and "line 4" in caught.value.message
    with org.db.session() as session:
        from sqlalchemy import func, select

        from server.devices.models import Device

        assert session.scalar(select(func.count(Device.id))) == 2, "nothing of the bad file was added"


def test_cli_from_device_add_to_a_verified_pack(org, ready_lesson, tmp_path):
    services = org
    env = cli_env(services)
    run = lambda *args, **kw: CliRunner().invoke(main, list(args), env=env, catch_exceptions=False, **kw)
    added = run("device", "add", "--kind", "radio", "--name", "老张的收音机", "--site", "hw-01")
    assert added.exit_code == 0, added.output
    code = added.stdout.strip().splitlines()[-1]
    answer = enrolment.enrol(services, code)
    lesson = ready_lesson("第一课", 2.0)
    assert run("programme", "create", "--code", "2026-Q4", "--title", "第四季度", "--from", "2026-10-01",
               "--until", "2026-12-31", "--slot", "07:00/class").exit_code == 0
    assert run("programme", "add", "2026-Q4", str(lesson)).exit_code == 0
    published = run("publish", "2026-Q4", input="y\n")
    assert published.exit_code == 0, published.output
    assert "devices affected: 1 of 1" in published.output and "+ 2026-Q4 #1 第一课" in published.output
    status = run("keys", "status")
    assert "root v1" in status.output and "move it offline" in status.output

    out = tmp_path / "pack"
    packed = run("pack", "--channel", answer["channel"], str(out))
    assert packed.exit_code == 0, packed.output
    root = json.dumps(answer["root"]).encode()
    verified = verify_pack(out, root, work_dir=tmp_path / "check")
    assert verified.channel == answer["channel"] and len(verified.media) == 1
    media_file = next((out / "lessoncast-pack" / "media").iterdir())
    data = bytearray(media_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    media_file.write_bytes(bytes(data))
    with pytest.raises(TrustError):
        verify_pack(out, root, work_dir=tmp_path / "check2")
    tarred = run("pack", "--channel", answer["channel"], str(tmp_path / "p.tar"), "--tar")
    assert tarred.exit_code == 0, tarred.output
    assert verify_pack(tmp_path / "p.tar", root, work_dir=tmp_path / "check3").channel == answer["channel"]


def test_bulk_device_import_over_the_api(org, client, auth):
    csv_text = "kind,name,site,language,groups\nradio,渔船一号,hw-01,nan,sea-branch\nterminal,西村终端,qs-02,cmn,\n"
    done = client.post("/api/v1/devices/import", data=csv_text.encode("gb18030"), headers=auth("admin"),
                       content_type="text/csv")
    assert done.status_code == 201, done.get_json()
    added = done.get_json()["added"]
    assert [d["name"] for d in added] == ["渔船一号", "西村终端"] and all(len(d["enrol_code"]) == 14 for d in added)
    bad = client.post("/api/v1/devices/import", data=b"kind,name,site\nradio,x,nowhere\n", headers=auth("admin"),
                      content_type="text/csv")
    assert bad.status_code == 422 and "line 2" in bad.get_json()["error"]["message"]
