"""Resumable uploads (tus 1.0.0): a real tus client, a dropped connection resumed, and the protocol's refusals."""

import base64
import hashlib

import pytest
from tusclient import client as tus_client

from tests.generated_media import speech_like


def _meta(**fields):
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in fields.items())


@pytest.fixture
def talk(tmp_path):
    return speech_like(tmp_path / "长篇讲话.wav", seconds=5)


def _create(client, headers, length, **meta):
    return client.post("/api/v1/uploads", headers={**headers, "Tus-Resumable": "1.0.0",
                                                   "Upload-Length": str(length),
                                                   "Upload-Metadata": _meta(**meta)})


def _patch(client, headers, location, offset, data):
    return client.patch(location, data=data, headers={
        **headers, "Tus-Resumable": "1.0.0", "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream"})


def test_options_advertises_tus(client):
    response = client.options("/api/v1/uploads")
    assert response.status_code == 204
    assert response.headers["Tus-Version"] == "1.0.0"
    assert "creation" in response.headers["Tus-Extension"] and "termination" in response.headers["Tus-Extension"]


def test_resume_after_a_dropped_connection(client, auth, services, drain, talk):
    headers = auth("media")
    data = talk.read_bytes()
    created = _create(client, headers, len(data), title="长篇讲话", filename=talk.name, speaker="李老师")
    assert created.status_code == 201
    location = created.headers["Location"]

    # The first request brings only part of the body, as when a village link drops mid-upload.
    first = _patch(client, headers, location, 0, data[:10000])
    assert first.status_code == 204 and first.headers["Upload-Offset"] == "10000"
    head = client.head(location, headers={**headers, "Tus-Resumable": "1.0.0"})
    assert head.headers["Upload-Offset"] == "10000" and head.headers["Upload-Length"] == str(len(data))

    stale = _patch(client, headers, location, 0, data[:10])
    assert stale.status_code == 409 and stale.get_json()["error"]["offset"] == 10000

    last = _patch(client, headers, location, 10000, data[10000:])
    assert last.status_code == 204
    lesson_id = int(last.headers["Lessoncast-Lesson-Id"])
    lesson = client.get(f"/api/v1/lessons/{lesson_id}", headers=headers).get_json()
    assert lesson["title"] == "长篇讲话" and lesson["speaker"] == "李老师"
    assert lesson["source"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert lesson["source"]["filename"] == "长篇讲话.wav"
    drain()
    assert client.get(f"/api/v1/lessons/{lesson_id}", headers=headers).get_json()["state"] == "ready"
    assert not list(services.upload_dir.iterdir())


def test_refusals(client, auth, services, talk):
    headers = auth("media")
    assert _create(client, headers, 100).status_code == 422  # no title
    assert _create(client, headers, 0, title="x").get_json()["error"]["code"] == "empty_file"
    too_big = _create(client, headers, services.settings.max_upload_size + 1, title="x")
    assert too_big.status_code == 413 and too_big.get_json()["error"]["code"] == "too_large"
    no_length = client.post("/api/v1/uploads", headers={**headers, "Tus-Resumable": "1.0.0"})
    assert no_length.get_json()["error"]["code"] == "length_required"
    bad_meta = client.post("/api/v1/uploads", headers={**headers, "Tus-Resumable": "1.0.0", "Upload-Length": "5",
                                                       "Upload-Metadata": "title !!!"})
    assert bad_meta.get_json()["error"]["code"] == "bad_metadata"
    old_version = client.post("/api/v1/uploads", headers={**headers, "Tus-Resumable": "0.2.2"})
    assert old_version.status_code == 412

    location = _create(client, headers, 10, title="x").headers["Location"]
    past = _patch(client, headers, location, 0, b"y" * 11)
    assert past.status_code == 413 and past.get_json()["error"]["code"] == "past_length"
    wrong_type = client.patch(location, data=b"y", headers={**headers, "Tus-Resumable": "1.0.0",
                                                            "Upload-Offset": "0", "Content-Type": "text/plain"})
    assert wrong_type.status_code == 415
    assert client.patch(location, data=b"y", headers={"Tus-Resumable": "1.0.0"}).status_code == 401


def test_refused_file_leaves_nothing(client, auth, services):
    headers = auth("media")
    data = b"this is a text file pretending to be audio\n" * 20
    location = _create(client, headers, len(data), title="bad", filename="lesson.mp3").headers["Location"]
    response = _patch(client, headers, location, 0, data)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "not_media"
    status = client.get(location, headers=headers).get_json()
    assert status["error"]["code"] == "not_media" and status["lesson_id"] is None
    assert services.sources.count() == 0 and not list(services.upload_dir.iterdir())


def test_terminate_deletes_the_bytes(client, auth, services):
    headers = auth("media")
    location = _create(client, headers, 1000, title="x").headers["Location"]
    _patch(client, headers, location, 0, b"z" * 100)
    assert client.delete(location, headers={**headers, "Tus-Resumable": "1.0.0"}).status_code == 204
    assert client.head(location, headers={**headers, "Tus-Resumable": "1.0.0"}).status_code == 404
    assert not list(services.upload_dir.iterdir())


def test_expired_uploads_are_removed(client, auth, services):
    from datetime import timedelta

    from server import uploads

    headers = auth("media")
    _create(client, headers, 1000, title="x")
    real_clock = services.clock
    services.clock = lambda: real_clock() + timedelta(days=8)
    try:
        assert uploads.expire(services) == 1
    finally:
        services.clock = real_clock
    assert not list(services.upload_dir.iterdir())


def test_real_tus_client(live_server, token, talk):
    """tuspy, a standard tus client, uploads in chunks to the real server."""
    tus = tus_client.TusClient(f"{live_server}/api/v1/uploads",
                               headers={"Authorization": f"Bearer {token('media')}"})
    uploader = tus.uploader(str(talk), chunk_size=16 * 1024,
                            metadata={"title": "tuspy 上传", "filename": talk.name})
    uploader.upload()
    assert uploader.offset == talk.stat().st_size
