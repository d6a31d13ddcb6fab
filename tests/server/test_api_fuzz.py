"""schemathesis against the real app: requests generated from /api/v1/openapi.json, valid and invalid, for every
operation, as an admin and as an operator. No request may get a 5xx.

The county holds the objects the document's examples name (device r-3f9a1c2b7d, site qs-01, member M0001, programme
2026-Q4, a manual class at qs-01), so generated requests reach real rows as well as missing ones. A real Mosquitto
runs, so commands and enrolments go as far as the broker. Examples per operation and the seed are fixed: the run is
bounded and repeatable.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from datetime import date, time

import pytest
import schemathesis
from hypothesis import settings

from server.accounts.auth import create_token
from server.api import openapi_doc as openapi
from server.attendance import edit as attendance_edit
from server.devices import registry as devices
from server.org import service as org
from server.programmes import service as programmes

EXAMPLES = 10
SEED = 20261203

SITES = ("township_code,township_name,site_code,site_name\n"
         "qs,青山镇,qs-01,青山村\nqs,青山镇,qs-02,河口村\nhs,黄沙镇,hs-01,黄沙村\n")
MEMBERS = "member_id,name,site_code,branch\nM0001,张三,qs-01,第一支部\nM0002,李四,qs-02,第一支部\nM0003,王五,hs-01,第二支部\n"


def _county(services) -> None:
    """The objects the OpenAPI examples name, made through the same services the API uses."""
    org.import_file(services, SITES.encode(), "sites", "test", "sites.csv")
    org.import_file(services, MEMBERS.encode(), "members", "test", "members.csv")
    org.create_group(services, {"key": "qs-branch-1", "name": "第一支部", "kind": "branch", "township": "qs"},
                     "test")
    with services.db.session() as session:
        devices.add(services, session, kind="radio", name="收音机", site_code="qs-01", uid="r-3f9a1c2b7d",
                    member_no="M0001", actor="test")
        devices.add(services, session, kind="terminal", name="终端", site_code="hs-01", uid="t-3f9a0c21be",
                    actor="test")
    programmes.create(services, {"code": "2026-Q4", "title": "第四季度", "valid_from": "2026-10-01",
                                 "valid_until": "2026-12-31"}, "test")
    with services.db.session() as session:
        attendance_edit.add_session(session, services.rules, "qs-01", date(2026, 11, 20), time(19, 30), "冬训",
                                    "test", services.clock())


CONFIG = schemathesis.Config.from_dict({
    "seed": SEED,
    "suppress-health-check": ["all"],
    "generation": {"mode": "all", "max-examples": EXAMPLES, "deterministic": True, "database": "none"},
    # Methods a route lacks answer 405 from Flask itself: the tests of the route table cover them.
    "phases": {"stateful": {"enabled": False}, "coverage": {"unexpected-methods": []}},
})
# tus PATCH bodies are plain bytes under their own media type.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")
# Built from the document itself (a pure function), so pytest lists one test per operation and role.
schema = schemathesis.openapi.from_dict(openapi.document(), config=CONFIG)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """One instance for the whole module (a real Mosquitto, the app called through WSGI), its county, and an admin
    and an operator token: generated requests pile up on the same data, as they would on a live server."""
    from server.app import create_app
    from server.messaging.broker import mosquitto_executable, write_config
    from tests.conftest import free_port, make_services
    from tests.e2e.stack import stop, wait_for

    services = make_services(tmp_path_factory.mktemp("fuzz") / "data", port=free_port(), mqtt_port=free_port(),
                             mqtt_server_port=free_port())
    log = services.data / "broker" / "mosquitto.log"
    with open(log, "wb") as out:
        mosquitto = subprocess.Popen([mosquitto_executable(services), "-c", str(write_config(services))],
                                     stdout=out, stderr=subprocess.STDOUT)
    wait_for(lambda: _listening(services.settings.mqtt_server_port), 10, "mosquitto", log)
    _county(services)
    with services.db.session() as session:
        tokens = {role: create_token(session, name=f"fuzz-{role}", role=role,
                                     township="qs" if role == "operator" else None, now=services.clock())
                  for role in ("admin", "operator")}
    yield create_app(services=services), tokens
    stop(mosquitto, signal.SIGTERM, timeout=10)
    services.db.dispose()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _no_server_error(case, stack, role: str) -> None:
    app, tokens = stack
    response = case.call(app=app, headers={"Authorization": f"Bearer {tokens[role]}"})
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} answered {response.status_code}: {response.text[:300]}\n"
        f"{case.as_curl_command()}")


@schema.parametrize()
@settings(deadline=None)
def test_no_server_error_as_admin(case, stack):
    _no_server_error(case, stack, "admin")


@schema.parametrize()
@settings(deadline=None)
def test_no_server_error_as_operator(case, stack):
    _no_server_error(case, stack, "operator")
