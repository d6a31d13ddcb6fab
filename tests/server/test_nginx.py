"""The nginx in front of gunicorn: its generated config, the media hand-over, and whose address the app sees.

The whole pair under slow clients is in tests/e2e/test_slow_clients.py; these check the parts one at a time.
"""

import hashlib
import re
import subprocess
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from flask import request

from lessoncast.cli import main
from server import nginx
from server.app import create_app
from server.nginx import MEDIA_INTERNAL
from tests.conftest import free_port, make_services
from tests.e2e.stack import get_json, wait_for


def _nginx(services) -> str:
    executable = nginx.nginx_executable(services)
    assert executable, "these tests need nginx: apt-get install nginx (make installs it)"
    return executable


@pytest.mark.parametrize("host, data", [("127.0.0.1", "data"), ("0.0.0.0", "county data/青山"), ("::", "data")])
def test_generated_config_is_valid_nginx(tmp_path, host, data):
    services = make_services(tmp_path / data, host=host, port=free_port(), trusted_proxies=1)
    conf = nginx.write_config(services)
    checked = subprocess.run([*nginx.argv(_nginx(services), conf), "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert "[warn]" not in checked.stderr and "[emerg]" not in checked.stderr, checked.stderr
    assert (conf.parent.stat().st_mode & 0o777) == 0o700


def test_a_data_directory_nginx_cannot_name_is_refused(tmp_path):
    services = make_services(tmp_path / "$data")
    with pytest.raises(ValueError, match="LESSONCAST_DATA_DIR"):
        nginx.write_config(services)


def test_nginx_answers_json_when_gunicorn_is_down_or_a_body_is_too_large(tmp_path):
    services = make_services(tmp_path / "data", port=free_port(), web_backend_port=free_port())
    conf = nginx.write_config(services)
    log = tmp_path / "nginx.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(nginx.argv(_nginx(services), conf), stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{services.settings.port}"
    try:
        status, answer = wait_for(lambda: (got := get_json(f"{base}/healthz"))[0] and got, 30, "nginx", log)
        assert status == 503 and answer["error"]["code"] == "web_down", "no gunicorn behind it"
        big = requests.post(f"{base}/api/v1/enrol", data=b"x" * (nginx.body_limit() + 1), timeout=30)
        assert big.status_code == 413 and big.json()["error"]["code"] == "too_large"
        assert "LESSONCAST_MAX_UPLOAD_SIZE" in big.json()["error"]["message"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("require_token", [False, True])
def test_public_media_are_answered_by_nginx_itself_and_the_rest_by_the_view(tmp_path, require_token):
    # No gunicorn behind this nginx: whatever reaches the view comes back as 503 web_down.
    services = make_services(tmp_path / "data", port=free_port(), web_backend_port=free_port(),
                             media_require_token=require_token)
    sha256, path = _stored(services)
    conf = nginx.write_config(services)
    log = tmp_path / "nginx.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(nginx.argv(_nginx(services), conf), stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{services.settings.port}"
    try:
        wait_for(lambda: get_json(f"{base}/healthz")[0], 30, "nginx", log)
        whole = requests.get(f"{base}/media/{sha256}.mp3", timeout=10)
        if require_token:
            assert whole.status_code == 503, "with tokens required, every download goes through the view's check"
            return
        assert whole.status_code == 200 and whole.content == path.read_bytes()
        assert whole.headers["Content-Type"] == "audio/mpeg"
        assert whole.headers["ETag"] == f'"{sha256}"'
        assert whole.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        part = requests.get(f"{base}/media/{sha256}.mp3", headers={"Range": "bytes=2-5"}, timeout=10)
        assert part.status_code == 206 and part.content == path.read_bytes()[2:6]
        for to_the_view in (f"/media/{'0' * 64}.mp3", f"/media/{sha256.upper()}.mp3", f"/media/{sha256}.wav",
                            f"/media/../{sha256[:2]}/{sha256}.mp3"):
            assert requests.get(base + to_the_view, timeout=10).status_code in (503, 400, 404), to_the_view
        conditional = requests.get(f"{base}/media/{sha256}.mp3", headers={"If-None-Match": f'"{sha256}"'},
                                   timeout=10)
        assert conditional.status_code == 503, "a conditional request is the view's to answer (304)"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_backend_port_is_loopback_and_derived_from_the_port(tmp_path):
    services = make_services(tmp_path / "data", host="0.0.0.0", port=8750)
    assert nginx.backend_bind(services.settings) == "127.0.0.1:8751"
    services = make_services(tmp_path / "other", port=8750, web_backend_port=9000)
    assert nginx.backend_bind(services.settings) == "127.0.0.1:9000"
    clash = make_services(tmp_path / "clash", port=8750, web_backend_port=8750)
    with pytest.raises(ValueError, match="LESSONCAST_WEB_BACKEND_PORT"):
        nginx.write_config(clash)


def _stored(services, body: bytes = b"ID3 lesson audio") -> tuple[str, Path]:
    sha256 = hashlib.sha256(body).hexdigest()
    staged = services.work_dir / "staged.mp3"
    staged.write_bytes(body)
    services.media.put(staged, sha256, "mp3")
    return sha256, services.media.path(sha256, "mp3")


def _alias(services) -> Path:
    """Where the generated config's internal media location reads files from."""
    match = re.search(rf"location {re.escape(MEDIA_INTERNAL)} {{\s*internal;\s*alias ([^;]+);",
                      nginx.config_text(services))
    assert match, "the config has an internal media location"
    return Path(match.group(1).strip('"'))


def test_media_behind_nginx_hand_the_file_to_nginx(services):
    sha256, path = _stored(services)
    client = create_app(services=services, behind_nginx=True).test_client()
    response = client.get(f"/media/{sha256}.mp3", headers={"Range": "bytes=0-9"})
    assert response.status_code == 200 and response.data == b"", "nginx sends the bytes and does Range"
    redirect = response.headers["X-Accel-Redirect"]
    assert redirect.startswith(MEDIA_INTERNAL)
    assert _alias(services) / redirect.removeprefix(MEDIA_INTERNAL) == path, "nginx finds the stored file"
    assert response.headers["Content-Type"] == "audio/mpeg"
    assert response.headers["ETag"] == f'"{sha256}"'
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"

    cached = client.get(f"/media/{sha256}.mp3", headers={"If-None-Match": f'"{sha256}"'})
    assert cached.status_code == 304 and "X-Accel-Redirect" not in cached.headers
    missing = client.get(f"/media/{'0' * 64}.mp3")
    assert missing.status_code == 404 and "X-Accel-Redirect" not in missing.headers
    assert missing.get_json()["error"]["code"] == "not_found"


def test_media_token_rule_stays_in_the_view_behind_nginx(tmp_path):
    services = make_services(tmp_path / "data", media_require_token=True)
    sha256, _ = _stored(services)
    client = create_app(services=services, behind_nginx=True).test_client()
    refused = client.get(f"/media/{sha256}.mp3")
    assert refused.status_code == 401 and "X-Accel-Redirect" not in refused.headers

    from server.accounts.auth import create_token

    with services.db.session() as session:
        token = create_token(session, name="radio-mirror", role="viewer", township=None, now=services.clock())
    allowed = client.get(f"/media/{sha256}.mp3", headers={"Authorization": f"Bearer {token}"})
    assert allowed.status_code == 200 and allowed.headers["X-Accel-Redirect"].startswith(MEDIA_INTERNAL)


def test_media_without_nginx_is_sent_by_the_app(services):
    sha256, _ = _stored(services)
    response = create_app(services=services).test_client().get(f"/media/{sha256}.mp3")
    assert response.status_code == 200 and response.data == b"ID3 lesson audio"
    assert "X-Accel-Redirect" not in response.headers, "a client could not follow it"


def _seen_by_app(services, behind_nginx: bool) -> tuple[str, str]:
    app = create_app(services=services, behind_nginx=behind_nginx)
    app.add_url_rule("/_test/client", "client", lambda: f"{request.remote_addr} {request.scheme}")
    # What nginx forwards when a client forged X-Forwarded-For: nginx appends the address it saw.
    response = app.test_client().get("/_test/client", environ_base={"REMOTE_ADDR": "127.0.0.1"},
                                     headers={"X-Forwarded-For": "6.6.6.6, 10.20.30.40",
                                              "X-Forwarded-Proto": "https, http"})
    return tuple(response.get_data(as_text=True).split())


def test_client_address_is_trusted_only_from_nginx(tmp_path):
    services = make_services(tmp_path / "data")
    assert _seen_by_app(services, behind_nginx=True) == ("10.20.30.40", "http")
    assert _seen_by_app(services, behind_nginx=False) == ("127.0.0.1", "http"), "gunicorn alone trusts no header"
    trusting = make_services(tmp_path / "proxied", trusted_proxies=1)
    assert _seen_by_app(trusting, behind_nginx=True) == ("6.6.6.6", "https"), "one proxy of the county's own"


def test_run_without_nginx_says_what_to_install(tmp_path):
    env = {"LESSONCAST_DATA_DIR": str(tmp_path / "data"), "LESSONCAST_NGINX_BIN": "lessoncast-no-such-nginx",
           "LESSONCAST_PORT": str(free_port()), "LESSONCAST_WEB_BACKEND_PORT": str(free_port()),
           "LESSONCAST_MQTT_PORT": str(free_port()), "LESSONCAST_MQTT_SERVER_PORT": str(free_port())}
    result = CliRunner().invoke(main, ["run"], env=env)
    assert result.exit_code == 1, result.output
    assert "apt-get install nginx" in result.output and "LESSONCAST_NGINX=false" in result.output
