"""Bounded inputs: hostile sizes, wrong types and out-of-range values get a 4xx naming the field, never a 500,
and nothing already stored changes. Enrolment bodies are capped and refused attempts are rate-limited."""

from __future__ import annotations

import io

import pytest

from server.devices import registry as devices
from tests.attendance_data import build_county

BIG = "9" * 30  # past any 64-bit integer


@pytest.fixture
def county(services):
    """Townships t00 and t01, two sites each, two members per site; one pending device of our own."""
    build_county(services, townships=2, sites_per_township=2, members_per_site=2, radios_per_site=1, lessons=1)
    with services.db.session() as session:
        devices.add(services, session, kind="radio", name="待登记", site_code="t00-s00", uid="r-pending", actor="t")
    return services


# (method, path, request arguments, expected status, expected code, field named in the answer)
HOSTILE = [
    ("GET", "/api/v1/devices?limit=x", {}, 400, "bad_parameter", "limit"),
    ("GET", "/api/v1/devices?limit=-1", {}, 400, "bad_parameter", "limit"),
    ("GET", "/api/v1/devices?limit=0", {}, 400, "bad_parameter", "limit"),
    ("GET", "/api/v1/devices?limit=5000", {}, 400, "bad_parameter", "limit"),
    ("GET", f"/api/v1/devices?offset={BIG}", {}, 400, "bad_parameter", "offset"),
    ("GET", "/api/v1/fleet?limit=x", {}, 400, "bad_parameter", "limit"),
    ("GET", f"/api/v1/fleet?offset={BIG}", {}, 400, "bad_parameter", "offset"),
    ("GET", "/api/v1/fleet?online=maybe", {}, 400, "bad_parameter", "online"),
    ("GET", "/api/v1/members?limit=x", {}, 400, "bad_parameter", "limit"),
    ("GET", f"/api/v1/members?offset={BIG}", {}, 400, "bad_parameter", "offset"),
    ("GET", "/api/v1/lessons?page=x", {}, 400, "bad_parameter", "page"),
    ("GET", f"/api/v1/lessons?page={BIG}", {}, 400, "bad_parameter", "page"),
    ("GET", f"/api/v1/lessons/{BIG}", {}, 404, "not_found", None),
    ("POST", f"/api/v1/lessons/{BIG}/retry", {}, 404, "not_found", None),
    ("GET", f"/api/v1/programmes/{BIG}", {}, 404, "no_such_programme", None),
    ("GET", "/api/v1/reports/participation?period=0001-01-01..9999-12-31", {}, 422, "unknown_period", None),
    ("GET", "/api/v1/sessions?period=0001-01-01..0001-12-31", {}, 422, "unknown_period", None),
    ("GET", "/api/v1/members/M00000000/record?period=9999-01-01..9999-12-31", {}, 422, "unknown_period", None),
    ("POST", "/api/v1/sessions", {"json": {"site": "t00-s00", "date": "0001-01-01", "title": "x"}},
     422, "bad_date", "date"),
    ("POST", "/api/v1/sessions", {"json": {"site": "t00-s00", "date": "2026-11-20", "time": "7.30pm"}},
     422, "bad_date", "time"),
    ("POST", "/api/v1/sessions", {"json": {"site": "t00-s00", "date": "2026-11-20", "time": 1930}},
     422, "field_invalid", "time"),
    ("POST", "/api/v1/sessions", {"json": {"site": 5, "date": "2026-11-20"}}, 422, "field_invalid", "site"),
    ("POST", "/api/v1/devices", {"json": {"kind": "radio", "name": "r", "groups": 5}}, 422, "field_invalid",
     "groups"),
    ("POST", "/api/v1/devices", {"json": {"kind": "radio", "name": ["r"]}}, 422, "field_invalid", "name"),
    ("POST", "/api/v1/devices", {"json": {"kind": "radio", "name": "r", "site": {"a": 1}}}, 422, "field_invalid",
     "site"),
    ("PATCH", "/api/v1/devices/r-pending", {"json": {"groups": 5}}, 422, "field_invalid", "groups"),
    ("PATCH", "/api/v1/devices/r-pending", {"json": {"settings": "loud"}}, 422, "field_invalid", "settings"),
    ("PATCH", "/api/v1/devices/r-pending", {"json": {"settings": {"timezone": "../../etc"}}}, 422, "field_invalid",
     "settings.timezone"),
    ("PATCH", "/api/v1/devices/r-pending", {"json": {"settings": {"volume": True}}}, 422, "field_invalid",
     "settings.volume"),
    ("PATCH", "/api/v1/devices/r-pending", {"json": {"settings": {"download_window": ["25:00", "06:00"]}}}, 422,
     "field_invalid", "settings.download_window"),
    ("PATCH", "/api/v1/devices/r-pending", {"json": {"member": "M00000000", "member_from": "0001-01-01"}}, 422,
     "bad_date", "member_from"),
    ("POST", "/api/v1/devices/r-t00-s00-000/commands", {"json": {"type": "set-volume", "volume": True}}, 422,
     "bad_command", "volume"),
    ("POST", "/api/v1/devices/r-t00-s00-000/commands", {"json": {"type": "play-now", "programme": "2026-Q4",
                                                                 "position": False}}, 422, "bad_command",
     "position"),
    ("POST", "/api/v1/devices/r-pending/revoke", {"json": {"reason": ["x"]}}, 422, "field_invalid", "reason"),
    ("POST", "/api/v1/devices", {"data": "[" * 5000, "content_type": "application/json"}, 400, "json_too_deep",
     None),
    ("POST", "/api/v1/devices", {"data": b"{" + b" " * (1024 * 1024 + 1) + b"}",
                                 "content_type": "application/json"}, 413, "too_large", None),
    ("PUT", "/api/v1/sessions/x/attendees/M00000000", {"json": {"reason": 5}}, 422, "field_invalid", "reason"),
    ("GET", "/api/v1/members?township=t00%00", {}, 400, "nul_character", None),
    ("GET", "/api/v1/devices/r-pending%00", {}, 400, "nul_character", None),
    ("POST", "/api/v1/groups", {"json": {"key": "k\u0000", "name": "n", "kind": "branch"}}, 400, "nul_character",
     None),
]


@pytest.mark.parametrize("method, path, kwargs, status, code, field", HOSTILE,
                         ids=[f"{c[0]} {c[1][:60]} {c[5] or c[4]}" for c in HOSTILE])
def test_hostile_input_gets_a_4xx_naming_the_field(county, client, auth, method, path, kwargs, status, code, field):
    answer = client.open(path, method=method, headers=auth("admin"), **kwargs)
    error = (answer.get_json() or {}).get("error", {})
    assert (answer.status_code, error.get("code")) == (status, code), answer.get_data(as_text=True)[:300]
    assert error["message"]
    if field is not None:
        assert error.get("field") == field and field.split(".")[-1] in error["message"], error


def test_a_bad_time_zone_is_refused_and_enrolment_still_works(services, client, auth):
    with services.db.session() as session:
        code = devices.add(services, session, kind="radio", name="r", uid="r-pending", actor="t").code
    refused = client.patch("/api/v1/devices/r-pending", headers=auth("admin"),
                           json={"settings": {"timezone": "../../etc", "volume": 40}})
    assert refused.status_code == 422
    ok = client.patch("/api/v1/devices/r-pending", headers=auth("admin"),
                      json={"settings": {"timezone": "Asia/Urumqi"}})
    assert ok.status_code == 200 and ok.get_json()["settings"]["timezone"] == "Asia/Urumqi"
    assert ok.get_json()["settings"]["volume"] == 70  # the refused PATCH changed nothing
    enrolled = client.post("/api/v1/enrol", json={"code": code})
    assert enrolled.status_code == 200, enrolled.get_json()
    assert enrolled.get_json()["config"]["timezone"] == "Asia/Urumqi"


def test_a_bad_setting_stored_earlier_is_a_409_that_says_how_to_fix_it(services, client, auth):
    with services.db.session() as session:
        code = devices.add(services, session, kind="radio", name="r", uid="r-old", actor="t").code
        devices.get(session, "r-old").settings = {**devices.DEFAULT_DEVICE_SETTINGS, "timezone": "../../etc"}
    refused = client.post("/api/v1/enrol", json={"code": code})
    error = refused.get_json()["error"]
    assert refused.status_code == 409 and error["code"] == "device_settings_invalid", error
    assert "timezone" in error["message"] and "PATCH /api/v1/devices/r-old" in error["message"]
    fixed = client.patch("/api/v1/devices/r-old", headers=auth("admin"),
                         json={"settings": {"timezone": "Asia/Shanghai"}})
    assert fixed.status_code == 200
    assert client.post("/api/v1/enrol", json={"code": code}).status_code == 200  # the code was not used up


def test_limit_minus_one_does_not_lift_the_row_cap(county, client, auth):
    answer = client.get("/api/v1/devices?limit=-1", headers=auth("admin"))
    assert answer.status_code == 400 and answer.get_json()["error"]["field"] == "limit"
    assert "1 to 1000" in answer.get_json()["error"]["message"]
    page = client.get("/api/v1/devices?limit=2&offset=1", headers=auth("admin")).get_json()
    assert len(page["devices"]) == 2 and page["total"] == 9


class _Unreadable(io.BytesIO):
    """A request body that fails the test if the server reads any of it."""

    def read(self, *args):
        raise AssertionError("the server read a body it should have refused on its length")

    readline = readinto = read


def test_an_oversized_enrolment_is_refused_before_the_body_is_read(app, client):
    import json

    from werkzeug.test import EnvironBuilder, run_wsgi_app

    environ = EnvironBuilder(path="/api/v1/enrol", method="POST", content_type="application/json").get_environ()
    environ.update({"wsgi.input": _Unreadable(), "CONTENT_LENGTH": str(100 * 1024 * 1024)})
    body, status, _headers = run_wsgi_app(app, environ, buffered=True)
    error = json.loads(b"".join(body))["error"]
    assert status.startswith("413") and error["code"] == "too_large" and "16 KB" in error["message"], error
    small_but_over = client.post("/api/v1/enrol", json={"code": "K" * (17 * 1024)})
    assert small_but_over.status_code == 413


def test_enrolment_attempts_are_rate_limited_per_address_and_per_code_prefix(tmp_path):
    from server.app import create_app
    from tests.conftest import make_services

    services = make_services(tmp_path / "data", enrol_attempts_per_hour=3)
    client = create_app(services=services).test_client()
    with services.db.session() as session:
        good = devices.add(services, session, kind="radio", name="r", actor="t").code

    def attempt(code, address="10.0.0.1"):
        return client.post("/api/v1/enrol", json={"code": code}, environ_base={"REMOTE_ADDR": address})

    assert [attempt(f"AAAA-BBBB-CCC{c}").status_code for c in "ACD"] == [403, 403, 403]
    limited = attempt(good)
    assert limited.status_code == 429 and limited.get_json()["error"]["code"] == "enrol_rate_limited"
    assert int(limited.headers["Retry-After"]) > 0 and "10.0.0.1" in limited.get_json()["error"]["message"]
    # Another address trying the same prefix is held back too: the prefix has had its three tries.
    assert attempt("AAAA-XXXX-YYYY", "10.0.0.2").status_code == 429
    # Another address with another code goes through, so one village's mistakes do not lock out the county.
    assert attempt(good, "10.0.0.2").status_code == 200
    # An hour later the address may try again.
    later = services.clock() + __import__("datetime").timedelta(hours=1, minutes=1)
    services.clock = lambda: later
    assert attempt("AAAA-BBBB-CCCE").status_code == 403
