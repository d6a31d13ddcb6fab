"""``lessoncast agent enrol`` and ``lessoncast agent status`` as a technician at the device runs them, against a real
local HTTP server standing in for the county server's enrolment endpoint."""

from __future__ import annotations

import json
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from lessoncast.cli import main
from tests.conftest import free_port

ANSWER = {
    "device": "r-cf24fc4f07",
    "kind": "radio",
    "channel": "ch-a0578c3a1a34dda0",
    "mqtt": {"host": "127.0.0.1", "port": 1884, "tls": False, "username": "r-cf24fc4f07",
             "password": "az-alpv7rvAkCoJAU-bjMbAEdypOYvCD", "client_id": "r-cf24fc4f07"},
    "http_token": "lcd_6pbBg-d9jOYscjkX3miTbBgkuiTrVw5rvPU4sciPAg8",
    "root": {"signatures": [], "signed": {"_type": "root", "version": 1, "expires": "2027-11-22T03:11:55Z"}},
    "metadata_url": "http://127.0.0.1:8750/tuf/metadata/",
    "targets_url": "http://127.0.0.1:8750/tuf/targets/",
    "config": {"channel": "ch-a0578c3a1a34dda0", "volume": 70, "timezone": "Asia/Shanghai"},
}
REFUSED = {"error": {"code": "bad_enrol_code",
                     "message": "This enrolment code is unknown or was already used. Ask the county office for a new "
                                "one ('lessoncast device code DEVICE')."}}


class EnrolServer(ThreadingHTTPServer):
    """Answers POST /api/v1/enrol with a canned status and JSON body, and remembers the codes sent."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), EnrolHandler)
        self.status, self.answer = 200, ANSWER
        self.codes: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class EnrolHandler(BaseHTTPRequestHandler):
    server: EnrolServer

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        if self.path != "/api/v1/enrol":
            self.send_error(404)
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.codes.append(body["code"])
        data = json.dumps(self.server.answer).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server():
    srv = EnrolServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join()


def agent(*args: str):
    return CliRunner().invoke(main, ["agent", *args], catch_exceptions=False)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_status_of_an_unenrolled_device_says_so(tmp_path):
    result = agent("status", "--data", str(tmp_path / "agent"))

    assert result.exit_code == 1
    assert "not enrolled" in result.output
    assert str(tmp_path / "agent") in result.output


def test_enrol_against_an_unreachable_server_says_what_to_check(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"

    result = agent("enrol", "--server", url, "--code", "P7DQ-VU6E-M7FT", "--data", str(tmp_path / "agent"))

    assert result.exit_code == 1
    assert f"cannot reach {url}/api/v1/enrol" in result.output
    assert "Check the address and the network" in result.output
    assert not (tmp_path / "agent" / "credentials.json").exists()


def test_enrol_stores_private_credentials_and_status_shows_the_device(tmp_path, server):
    data = tmp_path / "agent"

    result = agent("enrol", "--server", server.url + "/", "--code", "P7DQ-VU6E-M7FT", "--data", str(data))

    assert result.exit_code == 0, result.output
    assert "Enrolled as r-cf24fc4f07 (radio), channel ch-a0578c3a1a34dda0" in result.output
    assert server.codes == ["P7DQ-VU6E-M7FT"]
    assert mode(data / "credentials.json") == 0o600
    assert mode(data / "root.json") == 0o600
    assert mode(data) == 0o700
    assert json.loads((data / "root.json").read_text()) == ANSWER["root"]
    assert "root" not in json.loads((data / "credentials.json").read_text())

    status = agent("status", "--data", str(data))

    assert status.exit_code == 0, status.output
    assert "r-cf24fc4f07 (radio)" in status.output
    assert "ch-a0578c3a1a34dda0" in status.output
    assert "programme none verified yet" in status.output
    assert "0 events waiting" in status.output


def test_a_refused_code_shows_the_servers_reason(tmp_path, server):
    server.status, server.answer = 403, REFUSED

    result = agent("enrol", "--server", server.url, "--code", "USED-USED-USED", "--data", str(tmp_path / "agent"))

    assert result.exit_code == 1
    assert "the server refused the code: This enrolment code is unknown or was already used" in result.output
    assert not (tmp_path / "agent" / "credentials.json").exists()


def test_an_answer_that_is_not_from_lessoncast_is_refused(tmp_path, server):
    server.answer = {k: v for k, v in ANSWER.items() if k != "http_token"}

    result = agent("enrol", "--server", server.url, "--code", "P7DQ-VU6E-M7FT", "--data", str(tmp_path / "agent"))

    assert result.exit_code == 1
    assert "lacks 'http_token'" in result.output
    assert not (tmp_path / "agent" / "credentials.json").exists()


def test_agent_unit_prints_the_systemd_unit():
    from click.testing import CliRunner

    from lessoncast.cli import main

    result = CliRunner().invoke(main, ["agent", "unit"])
    assert result.exit_code == 0
    assert "WatchdogSec=" in result.output and "Restart=always" in result.output
    assert "lessoncast agent run --hal linux" in result.output


def test_the_start_hint_after_enrolling_on_simulated_hardware_says_hal_sim(tmp_path, server):
    data = tmp_path / "agent"
    result = agent("enrol", "--server", server.url, "--code", "P7DQ-VU6E-M7FT", "--hal", "sim", "--data", str(data))
    assert result.exit_code == 0, result.output
    assert f"Start it with: lessoncast agent run --hal sim --data {data}" in result.output
    real = agent("enrol", "--server", server.url, "--code", "P7DQ-VU6E-M7FT", "--data", str(tmp_path / "real"))
    assert f"Start it with: lessoncast agent run --data {tmp_path / 'real'}" in real.output


def test_the_simulated_keypad_says_where_its_keys_come_from(tmp_path):
    import os
    import pty

    from device_agent.cli import KEYPAD_HINTS, keypad_source

    with open(os.devnull, "rb") as devnull:
        assert keypad_source(devnull) == "none"
    assert "not a terminal" in KEYPAD_HINTS["none"] and "p + Enter" in KEYPAD_HINTS["none"]
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as pipe:
        assert keypad_source(pipe) == "pipe"
    os.close(write_end)
    leader, follower = pty.openpty()
    with os.fdopen(follower, "rb") as terminal:
        assert keypad_source(terminal) == "terminal"
    os.close(leader)
