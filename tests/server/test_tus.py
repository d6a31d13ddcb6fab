"""Resumable uploads (tus 1.0.0): a real tus client, a dropped connection resumed, and the protocol's refusals."""

import base64
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests
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

    from server.lessons import tus as uploads

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


def _head(client, headers, location):
    return client.head(location, headers={**headers, "Tus-Resumable": "1.0.0"})


def test_bytes_past_the_length_are_refused_and_the_upload_resumes(client, auth, talk):
    headers = auth("media")
    data = talk.read_bytes()
    location = _create(client, headers, len(data), title="多出来的字节", filename=talk.name).headers["Location"]
    first = _patch(client, headers, location, 0, data[:5000])
    assert first.status_code == 204

    past = _patch(client, headers, location, 5000, data[5000:] + b"extra")
    assert past.status_code == 413 and past.get_json()["error"]["code"] == "past_length"
    assert str(len(data) - 5000) in past.get_json()["error"]["message"]
    # Nothing of the refused request was kept: the upload is where it was, not "complete" without a lesson.
    assert _head(client, headers, location).headers["Upload-Offset"] == "5000"

    last = _patch(client, headers, location, 5000, data[5000:])
    assert last.status_code == 204 and last.headers["Lessoncast-Lesson-Id"]


def test_a_chunked_body_past_the_length_is_refused_whole(live_server, token, services, talk):
    """Without Content-Length the server learns of the extra bytes only at the end; it drops the whole request."""
    import http.client
    from urllib.parse import urlsplit

    headers = {"Authorization": f"Bearer {token('media')}", "Tus-Resumable": "1.0.0"}
    data = talk.read_bytes()
    created = requests.post(f"{live_server}/api/v1/uploads", headers={
        **headers, "Upload-Length": str(len(data)), "Upload-Metadata": _meta(title="分块", filename=talk.name)})
    location = created.headers["Location"]
    conn = http.client.HTTPConnection(urlsplit(live_server).netloc, timeout=30)
    conn.request("PATCH", location, body=iter([data[:70000], data[70000:], b"one too many"]), encode_chunked=True,
                 headers={**headers, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    answer = conn.getresponse()
    assert answer.status == 413 and json.loads(answer.read())["error"]["code"] == "past_length"
    conn.close()
    head = requests.head(live_server + location, headers=headers)
    assert head.headers["Upload-Offset"] == "0"
    done = requests.patch(live_server + location, data=data, headers={
        **headers, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    assert done.status_code == 204 and done.headers["Lessoncast-Lesson-Id"]


@pytest.mark.parametrize("header", ["Upload-Length", "Upload-Offset"])
@pytest.mark.parametrize("value", ["²", "١٢", "-5", "1e3", " 12", "9" * 40])
def test_byte_counts_must_be_plain_digits(client, auth, header, value):
    headers = {**auth("media"), "Tus-Resumable": "1.0.0"}
    if header == "Upload-Length":
        response = client.post("/api/v1/uploads", headers={**headers, "Upload-Length": value,
                                                           "Upload-Metadata": _meta(title="x")})
        expected = "length_required"
    else:
        location = _create(client, headers, 10, title="x").headers["Location"]
        response = client.patch(location, data=b"y", headers={
            **headers, "Upload-Offset": value, "Content-Type": "application/offset+octet-stream"})
        expected = "offset_required"
    assert response.status_code == 400, response.data
    assert response.get_json()["error"]["code"] == expected
    assert header in response.get_json()["error"]["message"]


def test_an_upload_the_disk_cannot_hold_is_refused_with_what_is_free(client, auth, services):
    headers = auth("media")
    gib = 1024**3
    services.disk_free = lambda path: 9 * gib  # the default margin keeps 2 GiB of it free
    assert _create(client, headers, 4 * gib, title="一").status_code == 201
    # 9 GiB free, 4 GiB promised to the first upload, 2 GiB margin: another 4 GiB does not fit, 2 GiB does.
    refused = _create(client, headers, 4 * gib, title="二")
    assert refused.status_code == 507
    error = refused.get_json()["error"]
    assert error["code"] == "insufficient_storage"
    assert error["free"] == 9 * gib and error["reserved"] == 4 * gib and error["room"] == 3 * gib
    assert "9.0 GB free" in error["message"] and "LESSONCAST_UPLOAD_FREE_MARGIN" in error["message"]
    assert _create(client, headers, 2 * gib, title="三").status_code == 201
    assert len(list(services.upload_dir.iterdir())) == 2


def test_a_multipart_upload_the_disk_cannot_hold_is_refused_before_it_is_written(client, auth, services, talk):
    services.disk_free = lambda path: services.settings.upload_free_margin + 1000
    with open(talk, "rb") as fh:
        response = client.post("/api/v1/lessons", headers=auth("media"),
                               data={"title": "满了", "file": (fh, talk.name)})
    assert response.status_code == 507 and response.get_json()["error"]["code"] == "insufficient_storage"
    assert not list(services.upload_dir.iterdir())


def test_open_uploads_per_token_are_capped(client, auth, services):
    headers, other = auth("media"), auth("media")
    cap = services.settings.max_open_uploads
    locations = [_create(client, headers, 1000, title=f"第{n}讲").headers["Location"] for n in range(cap)]
    refused = _create(client, headers, 1000, title="one too many")
    assert refused.status_code == 429
    error = refused.get_json()["error"]
    assert error["code"] == "too_many_uploads" and error["limit"] == cap and len(error["open"]) == cap
    assert _create(client, other, 1000, title="another token").status_code == 201
    client.delete(locations[0], headers={**headers, "Tus-Resumable": "1.0.0"})
    assert _create(client, headers, 1000, title="room again").status_code == 201


def _age(path, seconds):
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_orphans_are_swept_when_the_worker_starts(client, auth, services, talk):
    """Files of dead requests go; files of live requests and open uploads stay; a complete upload whose web
    process died before making the lesson gets its lesson."""
    import threading

    from server.jobs import worker
    from server.lessons.models import Upload
    from server.lessons.upload_stream import HashingFile

    headers = auth("media")
    # A multipart upload whose web worker was killed mid-request: its staged file is held by nobody.
    child = subprocess.run([sys.executable, "-c", (
        "import sys; from pathlib import Path; from server.lessons.upload_stream import HashingFile; "
        "f = HashingFile(Path(sys.argv[1])); f.write(b'x' * 1000); f.flush(); print(f.path.name)"),
        str(services.upload_dir)], capture_output=True, text=True, check=True)
    dead = services.upload_dir / child.stdout.strip()
    live = HashingFile(services.upload_dir)  # a slow upload still arriving: old, but its request holds it
    live.write(b"y" * 1000)
    stray = services.upload_dir / "tus-0123456789abcdef0123456789abcdef.part"  # its upload row is gone
    stray.write_bytes(b"z")
    waiting = _create(client, headers, 1000, title="still coming").headers["Location"].rsplit("/", 1)[1]
    data = talk.read_bytes()
    complete = _create(client, headers, len(data), title="最后一个字节之后", filename=talk.name)
    complete_id = complete.headers["Location"].rsplit("/", 1)[1]
    # The web process wrote every byte, then died before it made the lesson.
    (services.upload_dir / f"tus-{complete_id}.part").write_bytes(data)
    with services.db.session() as session:
        session.get(Upload, complete_id).offset = len(data)
    for path in services.upload_dir.iterdir():
        _age(path, 2 * 3600)

    stop = threading.Event()
    stop.set()  # one round of housekeeping, as at the worker's start
    worker._Housekeeping(services).run(stop)

    left = {p.name for p in services.upload_dir.iterdir()}
    assert dead.name not in left and stray.name not in left
    assert live.path.name in left and f"tus-{waiting}.part" in left
    status = client.get(f"/api/v1/uploads/{complete_id}", headers=headers).get_json()
    assert status["lesson_id"] is not None
    assert f"tus-{complete_id}.part" not in left
    live.discard()


def test_a_fresh_staged_file_is_not_swept(services):
    from server.lessons import tus as uploads

    orphan = services.upload_dir / "0123456789abcdef0123456789abcdef.part"
    orphan.write_bytes(b"x")  # nobody holds it, but it was written a moment ago: its request may still use it
    assert uploads.sweep(services).deleted == []
    _age(orphan, uploads.ORPHAN_GRACE_S + 60)
    assert uploads.sweep(services).deleted == [orphan.name]


def test_the_offset_survives_a_killed_web_server(services, token, tmp_path):
    """SIGKILL the real web server (gunicorn) in the middle of a PATCH: HEAD after the restart shows the bytes that
    were made durable, and the client resumes from there to a lesson with the right bytes."""
    from server.lessons import tus as uploads
    from tests.e2e.stack import stack_env, start, wait_for

    env = stack_env(services.data, web_workers=1, web_threads=4)
    base = f"http://127.0.0.1:{env['LESSONCAST_PORT']}"
    log = tmp_path / "web.log"
    headers = {"Authorization": f"Bearer {token('media')}", "Tus-Resumable": "1.0.0"}
    audio = speech_like(tmp_path / "两小时讲话.wav", seconds=130)  # about 11 MB
    data = audio.read_bytes()
    sent = 2 * uploads.CHECKPOINT + 100_000

    def up():
        try:  # OPTIONS needs neither the database nor the broker: it answers as soon as gunicorn serves
            return requests.options(f"{base}/api/v1/uploads", timeout=5).status_code == 204
        except requests.RequestException:
            return False

    def offset(location):
        return int(requests.head(base + location, headers=headers, timeout=5).headers["Upload-Offset"])

    web = start(["web"], env, log)
    try:
        wait_for(up, 60, "the web server", log)
        location = requests.post(f"{base}/api/v1/uploads", headers={
            **headers, "Upload-Length": str(len(data)),
            "Upload-Metadata": _meta(title="断电续传", filename=audio.name)}).headers["Location"]
        with socket.create_connection(("127.0.0.1", int(env["LESSONCAST_PORT"]))) as sock:
            sock.sendall((f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(data)}\r\n"
                          "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n" +
                          "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode())
            sock.sendall(data[:sent])  # ... and then the link stalls, mid-request
            wait_for(lambda: offset(location) >= 2 * uploads.CHECKPOINT, 30, "the first checkpoints", log)
            os.killpg(web.pid, signal.SIGKILL)
            web.wait(timeout=30)
    finally:
        if web.poll() is None:
            os.killpg(web.pid, signal.SIGKILL)
            web.wait(timeout=30)

    web = start(["web"], env, log)
    try:
        wait_for(up, 60, "the web server to come back", log)
        resumed = offset(location)
        assert 2 * uploads.CHECKPOINT <= resumed <= sent
        done = requests.patch(base + location, data=data[resumed:], headers={
            **headers, "Upload-Offset": str(resumed), "Content-Type": "application/offset+octet-stream"}, timeout=60)
        assert done.status_code == 204, done.text
        lesson = requests.get(f"{base}/api/v1/lessons/{done.headers['Lessoncast-Lesson-Id']}",
                              headers=headers, timeout=10).json()
        assert lesson["source"]["sha256"] == hashlib.sha256(data).hexdigest()
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(timeout=30)
