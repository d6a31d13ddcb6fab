"""Console sessions end after LESSONCAST_CONSOLE_IDLE_TIMEOUT without a request; cookies are HttpOnly and Lax."""

from __future__ import annotations

import re
from datetime import timedelta

from tests.console.conftest import PASSWORD


def test_a_session_ends_after_inactivity(services, client, staff):
    staff("mo", "media")
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    signed = client.post("/login", data={"username": "mo", "password": PASSWORD, "csrf_token": token})
    cookie = signed.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    start = services.clock()
    services.clock = lambda: start + timedelta(minutes=29)
    assert client.get("/").status_code == 200  # active: the idle time starts again
    services.clock = lambda: start + timedelta(minutes=29 + 31)
    ended = client.get("/lessons")
    assert ended.status_code == 302 and "/login" in ended.headers["Location"]
    assert client.get("/").status_code == 302  # and the session stays ended
