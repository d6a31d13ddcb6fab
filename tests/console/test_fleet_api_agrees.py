"""The API's fleet table (`/api/v1/fleet?state=`) and the console's devices table count the same devices in each
state: both use server/devices/fleet.py's conditions, so a radio online by one is online by the other."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from server.devices import fleet
from server.events.ingest import store_status
from tests.console.test_fleet_pages import _signed_in

pytestmark = pytest.mark.databases


@pytest.fixture
def troubled(org, enrolled):
    """Radios in 青山镇 and 海湾镇, each with a different trouble, statuses stored by ingest."""
    services = org
    now = services.clock()
    cases = {  # name: (site, minutes ago, body); None: never reported
        "fine": ("qs-01", 1, {"battery": 90, "storage_free_mb": 4000}),
        # said online, but silent longer than device_silent_after: the old API filter called it online
        "silent": ("qs-01", 60, {"battery": 90, "storage_free_mb": 4000}),
        "gone": ("qs-02", 5 * 24 * 60, {"battery": 90, "storage_free_mb": 4000}),
        "failing": ("qs-02", 2, {"battery": 90, "storage_free_mb": 100, "sync": "error", "stale": True}),
        "weak": ("hw-01", 3, {"battery": 5, "storage_free_mb": 4000}),
        "mute": ("hw-01", None, None),
    }
    uids = {}
    for name, (site, ago, body) in cases.items():
        uids[name] = enrolled("radio", name=name, site=site)["device"]
        if body is not None:
            assert store_status(services, uids[name], json.dumps({"online": True, **body}).encode(),
                                now - timedelta(minutes=ago))
    assert store_status(services, uids["weak"], b'{"online":false}', now - timedelta(minutes=2))  # a last will
    return uids


def _console_counts(client, township=None):
    page = client.get("/devices" + (f"?township={township}" if township else ""))
    assert page.status_code == 200
    return {s: int(n.replace(",", "")) for s, n in re.findall(r'data-state="(\w+)"[^>]*>[^<]*<b>([\d,]+)</b>',
                                                             page.text)}


@pytest.mark.parametrize("role,township", [("admin", None), ("operator", "qs")])
def test_api_and_console_count_the_same_devices_in_each_state(org, app, staff, auth, troubled, role, township):
    staff("person", role, township)
    console, _csrf = _signed_in(app, "person")
    counts = _console_counts(console)
    assert set(counts) == {"total", *fleet.STATES}
    api, headers = app.test_client(), auth(role)
    assert api.get("/api/v1/fleet", headers=headers).get_json()["total"] == counts["total"]
    for state in fleet.STATES:
        answer = api.get(f"/api/v1/fleet?state={state}", headers=headers)
        assert answer.status_code == 200, answer.text
        body = answer.get_json()
        assert body["total"] == counts[state], state
        assert all(state in d["states"] for d in body["devices"])
        if township:
            assert {d["township"] for d in body["devices"]} <= {township}
    if role == "admin":  # the cases give each state at least one device, and the silent radio is offline
        assert all(counts[s] for s in fleet.STATES), counts
        offline = {d["name"] for d in api.get("/api/v1/fleet?state=offline", headers=headers).get_json()["devices"]}
        assert {"silent", "weak", "mute", "gone"} <= offline


def test_online_is_an_alias_and_a_bad_state_is_refused(org, app, auth, troubled):
    api, headers = app.test_client(), auth("admin")

    def names(query):
        answer = api.get(f"/api/v1/fleet?{query}", headers=headers)
        assert answer.status_code == 200, answer.text
        return sorted(d["name"] for d in answer.get_json()["devices"])

    assert names("online=1") == names("state=online") == ["failing", "fine"]
    assert names("online=0") == names("state=offline")
    assert names("stale=1") == names("state=stale") == ["failing"]
    assert names("online=1&state=online") == ["failing", "fine"]
    for query, code in (("state=asleep", "bad_state"), ("state=offline&online=1", "state_conflict")):
        answer = api.get(f"/api/v1/fleet?{query}", headers=headers)
        error = answer.get_json()["error"]
        assert answer.status_code == 422 and error["code"] == code, answer.text
        assert "online" in error["message"]
