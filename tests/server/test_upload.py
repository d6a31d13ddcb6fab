"""Multipart upload to renditions: idempotent by sha256, metadata checked, downloads with Range and ETag."""

import hashlib

import pytest

from tests.generated_media import speech_like, video


def _post(client, headers, path, **fields):
    with open(path, "rb") as fh:
        return client.post("/api/v1/lessons", headers=headers,
                           data={"title": "第一课：学习党章", "speaker": "王书记", "series": "2026 冬训", **fields,
                                 "file": (fh, path.name)})


@pytest.fixture(scope="module")
def talk(tmp_path_factory):
    return speech_like(tmp_path_factory.mktemp("media") / "第一课 学习.wav", seconds=6)


def test_upload_makes_every_rendition(client, auth, services, drain, talk):
    response = _post(client, auth("media"), talk)
    assert response.status_code == 201, response.get_json()
    lesson = response.get_json()
    assert lesson["title"] == "第一课：学习党章" and lesson["state"] == "processing"
    assert {r["profile"]: r["state"] for r in lesson["renditions"]} == {"radio": "queued", "terminal-audio": "queued"}
    assert lesson["source"]["sha256"] == hashlib.sha256(talk.read_bytes()).hexdigest()

    drain()
    lesson = client.get(f"/api/v1/lessons/{lesson['id']}", headers=auth("viewer")).get_json()
    assert lesson["state"] == "ready", lesson
    for r in lesson["renditions"]:
        assert r["state"] == "ready" and r["progress"] == 100.0
        assert r["url"] == f"/media/{r['sha256']}.{'mp3' if r['profile'] == 'radio' else 'm4a'}"
        assert -17.0 <= r["loudness_lufs"] <= -15.0 and r["true_peak_dbtp"] <= -1.0
        body = client.get(r["url"]).data
        assert hashlib.sha256(body).hexdigest() == r["sha256"] and len(body) == r["size"]
    assert not list(services.upload_dir.iterdir()), "staged upload left behind"


def test_same_bytes_again_is_the_same_lesson(client, auth, talk, services):
    first = _post(client, auth("media"), talk)
    again = _post(client, auth("media"), talk, title="another title")
    assert first.status_code == 201 and again.status_code == 200
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.get_json()["title"] == "第一课：学习党章"
    assert services.sources.count() == 1
    assert not list(services.upload_dir.iterdir())


@pytest.mark.parametrize("fields, code", [
    ({"title": ""}, "title_required"),
    ({"title": "x" * 201}, "field_too_long"),
    ({"language": "Mandarin Chinese"}, "bad_language"),
    ({"speaker": "a\x00b"}, "bad_characters"),
])
def test_bad_metadata_is_refused_and_nothing_kept(client, auth, talk, services, fields, code):
    response = _post(client, auth("media"), talk, **fields)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == code
    assert services.sources.count() == 0 and not list(services.upload_dir.iterdir())


def test_missing_file_field(client, auth):
    response = client.post("/api/v1/lessons", headers=auth("media"), data={"title": "x"})
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "file_required"


def test_video_gets_three_renditions_and_a_poster(client, auth, drain, tmp_path):
    clip = video(tmp_path / "lecture.mp4", 640, 360, seconds=2)
    lesson = _post(client, auth("media"), clip).get_json()
    assert {r["profile"] for r in lesson["renditions"]} == {"radio", "terminal-audio", "terminal-video"}
    drain()
    lesson = client.get(f"/api/v1/lessons/{lesson['id']}", headers=auth("viewer")).get_json()
    assert lesson["state"] == "ready", lesson
    video_rendition = next(r for r in lesson["renditions"] if r["profile"] == "terminal-video")
    poster = client.get(video_rendition["poster_url"])
    assert poster.status_code == 200 and poster.data[:3] == b"\xff\xd8\xff"


def test_media_download_range_etag_and_caching(client, auth, drain, talk):
    lesson = _post(client, auth("media"), talk).get_json()
    drain()
    lesson = client.get(f"/api/v1/lessons/{lesson['id']}", headers=auth("viewer")).get_json()
    radio = next(r for r in lesson["renditions"] if r["profile"] == "radio")
    whole = client.get(radio["url"])
    assert whole.status_code == 200 and whole.headers["Content-Type"] == "audio/mpeg"
    assert "immutable" in whole.headers["Cache-Control"] and "max-age=31536000" in whole.headers["Cache-Control"]
    assert whole.headers["ETag"] == f'"{radio["sha256"]}"'
    assert whole.headers["Accept-Ranges"] == "bytes"

    part = client.get(radio["url"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.data == whole.data[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(whole.data)}"
    # Resuming a dropped download: everything from an offset to the end.
    tail = client.get(radio["url"], headers={"Range": f"bytes={len(whole.data) - 10}-"})
    assert tail.status_code == 206 and tail.data == whole.data[-10:]
    unsatisfiable = client.get(radio["url"], headers={"Range": f"bytes={len(whole.data) + 5}-"})
    assert unsatisfiable.status_code == 416

    cached = client.get(radio["url"], headers={"If-None-Match": whole.headers["ETag"]})
    assert cached.status_code == 304 and cached.data == b""


def test_media_names_are_checked(client):
    assert client.get("/media/../../etc/passwd").status_code == 404
    assert client.get("/media/" + "a" * 64 + ".mp3").status_code == 404
    response = client.get("/media/notahash.mp3")
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"


def test_media_can_require_a_token(tmp_path, auth):
    from server.app import create_app
    from tests.conftest import make_services

    services = make_services(tmp_path / "d", media_require_token=True)
    client = create_app(services=services).test_client()
    response = client.get("/media/" + "a" * 64 + ".mp3")
    assert response.status_code == 401
