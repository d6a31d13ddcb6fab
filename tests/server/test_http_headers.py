"""Every answer carries the browser-hardening headers; member, report and device data are never cached."""

from __future__ import annotations

import pytest

from tests.server.test_reports import make_county

PERSONAL = [
    "/api/v1/members",
    "/api/v1/members?format=csv",
    "/api/v1/members/M00000001/record?period=2026",
    "/api/v1/reports/participation?period=2026-Q4",
    "/api/v1/reports/participation?period=2026-Q4&format=csv",
    "/api/v1/reports/participation?period=2026-Q4&format=xlsx",
    "/api/v1/devices",
    "/api/v1/devices/r-t00-s00-000",
    "/api/v1/devices/r-t00-s00-000/record",
    "/api/v1/sessions?period=2026-Q4",
    "/api/v1/fleet",
]


@pytest.fixture
def county(services):
    return make_county(services)


@pytest.mark.parametrize("path", PERSONAL)
def test_member_report_and_device_data_is_never_stored(client, auth, county, path):
    response = client.get(path, headers=auth("admin"))
    assert response.status_code == 200, (path, response.get_data(as_text=True)[:300])
    assert response.headers["Cache-Control"] == "no-store"
    _hardened(response)


@pytest.mark.parametrize("path", ["/healthz", "/api/v1/lessons", "/api/v1/nowhere", "/media/" + "0" * 64 + ".mp3"])
def test_every_answer_is_hardened(client, auth, path):
    response = client.get(path, headers=auth("admin"))
    _hardened(response)
    if path.startswith("/api/"):
        assert response.headers["Cache-Control"] == "no-store"


def test_media_keeps_its_own_cache_policy(client, auth, services, ready_lesson):
    from sqlalchemy import select

    from server.lessons.models import Rendition

    ready_lesson("缓存")
    with services.db.session() as session:
        rendition = session.scalars(select(Rendition).where(Rendition.sha256.is_not(None))).first()
        name = f"{rendition.sha256}.mp3" if rendition.profile == "radio" else None
    if name is None:
        pytest.skip("no radio rendition")
    response = client.get(f"/media/{name}")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    _hardened(response)


def _hardened(response) -> None:
    headers = response.headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["X-Frame-Options"] == "DENY"
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
