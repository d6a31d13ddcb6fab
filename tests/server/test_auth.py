"""The API is closed to anonymous writes, and each role may do only what it is for."""

import io


def _upload(client, headers):
    return client.post("/api/v1/lessons", headers=headers,
                       data={"title": "x", "file": (io.BytesIO(b"not used"), "a.mp3")})


def test_anonymous_write_is_refused_with_a_hint(client):
    response = _upload(client, {})
    assert response.status_code == 401
    body = response.get_json()["error"]
    assert body["code"] == "unauthenticated" and "lessoncast token create" in body["message"]


def test_unknown_token_is_refused(client):
    response = _upload(client, {"Authorization": "Bearer lc_nope"})
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "bad_token"


def test_viewer_and_operator_cannot_upload(org, client, auth):
    for role in ("viewer", "operator"):
        response = _upload(client, auth(role))
        assert response.status_code == 403, role
        assert response.get_json()["error"]["code"] == "forbidden"


def test_viewer_can_read(client, auth):
    response = client.get("/api/v1/lessons", headers=auth("viewer"))
    assert response.status_code == 200 and response.get_json()["lessons"] == []


def test_revoked_token_stops_working(client, services, token):
    from server.accounts.auth import find_token

    value = token("media")
    with services.db.session() as session:
        find_token(session, value).revoked_at = services.clock()
    response = client.get("/api/v1/lessons", headers={"Authorization": f"Bearer {value}"})
    assert response.status_code == 401


def test_operator_token_needs_a_township(services):
    import pytest

    from server.accounts.auth import create_token

    with services.db.session() as session, pytest.raises(ValueError, match="township"):
        create_token(session, name="op", role="operator", township=None, now=services.clock())
