"""A failed job keeps ffmpeg's last lines, and a retry after the cause is fixed finishes the lesson."""

from sqlalchemy import select

from server.jobs.models import Job
from server.jobs.runner import run_job
from tests.generated_media import speech_like


def test_failed_render_keeps_log_and_can_be_retried(client, auth, services, drain, tmp_path):
    audio = speech_like(tmp_path / "talk.wav", seconds=3)
    with open(audio, "rb") as fh:
        lesson = client.post("/api/v1/lessons", headers=auth("media"),
                             data={"title": "重试", "file": (fh, audio.name)}).get_json()
    with services.db.session() as session:
        analyse_id = session.scalar(select(Job.id).where(Job.kind == "analyse"))
    run_job(services, analyse_id)

    # The stored source goes bad between analysis and rendering (a failing disk, say).
    source = services.sources.path(lesson["source"]["sha256"], "wav")
    good = source.read_bytes()
    source.write_bytes(b"\x00" * 4096)
    drain()
    failed = client.get(f"/api/v1/lessons/{lesson['id']}", headers=auth("viewer")).get_json()
    assert failed["state"] == "failed"
    for rendition in failed["renditions"]:
        assert rendition["state"] == "failed" and rendition["url"] is None
        assert rendition["error"]["code"] == "ffmpeg_failed", rendition["error"]
        assert rendition["error"]["log"], "ffmpeg's last lines are kept"
    with services.db.session() as session:
        assert all(job.log_tail for job in session.scalars(select(Job).where(Job.kind == "render")))

    assert client.post(f"/api/v1/lessons/{lesson['id']}/retry", headers=auth("viewer")).status_code == 403
    source.write_bytes(good)
    retried = client.post(f"/api/v1/lessons/{lesson['id']}/retry", headers=auth("media"))
    assert retried.status_code == 200 and retried.get_json()["state"] == "processing"
    assert {r["state"] for r in retried.get_json()["renditions"]} == {"queued"}
    drain()
    done = client.get(f"/api/v1/lessons/{lesson['id']}", headers=auth("viewer")).get_json()
    assert done["state"] == "ready" and all(r["error"] is None for r in done["renditions"])
    again = client.post(f"/api/v1/lessons/{lesson['id']}/retry", headers=auth("media"))
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "nothing_to_retry"
