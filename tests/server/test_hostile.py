"""Hostile and broken files through the real upload API: each gets its own refusal and leaves nothing behind.

Probe-stage refusals answer the upload with a 4xx; decode-stage ones end the lesson as `rejected` once its
analysis job has run. Either way no source, rendition, staged upload or scratch file remains.
"""

from pathlib import Path

import pytest
from sqlalchemy import func, select

from server.lessons.models import Lesson, Rendition, SourceFile
from tests.media.hostile_corpus import build_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("hostile"))


def _cases():
    # The corpus is built per session; ids come from a throwaway build in a temp dir at collection time.
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return [case[0] for case in build_corpus(Path(tmp))]


def _bytes(data):
    return data if isinstance(data, bytes) else Path(data).read_bytes()


@pytest.mark.parametrize("name", _cases())
def test_hostile_file_is_refused_with_nothing_left(name, corpus, client, auth, services, drain):
    case = next(c for c in corpus if c[0] == name)
    filename, data, expected_code, stage = case[:4]
    from io import BytesIO

    response = client.post("/api/v1/lessons", headers=auth("media"),
                           data={"title": "hostile", "file": (BytesIO(_bytes(data)), filename)})
    if expected_code is None:
        assert response.status_code == 201, response.get_json()
        drain()
        lesson = client.get(f"/api/v1/lessons/{response.get_json()['id']}", headers=auth("viewer")).get_json()
        assert lesson["state"] == "ready", lesson
        assert "/" not in lesson["source"]["filename"] and ".." not in lesson["source"]["filename"]
        return
    if stage == "probe":
        assert 400 <= response.status_code < 500, (response.status_code, response.get_json())
        error = response.get_json()["error"]
    else:
        assert response.status_code == 201, response.get_json()
        drain()
        lesson = client.get(f"/api/v1/lessons/{response.get_json()['id']}", headers=auth("viewer")).get_json()
        assert lesson["state"] == "rejected", lesson
        assert lesson["renditions"] == [] and lesson["source"] is None
        error = lesson["error"]
    assert error["code"] == expected_code, error
    assert error["message"] and error["file"], error
    assert services.sources.count() == 0 and services.media.count() == 0
    assert not list(services.upload_dir.iterdir()) and not list(services.work_dir.iterdir())
    with services.db.session() as session:
        assert session.scalar(select(func.count(SourceFile.id))) == 0
        assert session.scalar(select(func.count(Rendition.id))) == 0
        assert session.scalar(select(func.count(Lesson.id))) == (0 if stage == "probe" else 1)
