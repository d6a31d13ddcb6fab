"""Beyond one machine: PostgreSQL for the database and RedisHuey for jobs, with two workers sharing the queue."""

import signal
import uuid

from sqlalchemy import select

from server.jobs.models import Job
from server.lessons import service as lessons
from server.lessons.models import Lesson
from tests.conftest import make_services, stage_file
from tests.e2e.stack import stack_env, start, wait_for
from tests.generated_media import speech_like

REDIS_URL = "redis://127.0.0.1:6379/13"


def test_two_workers_on_redis_and_postgresql(tmp_path, pg_url):
    # A queue of its own: another instance (or a leftover worker) on the same Redis must not take these jobs.
    settings = {"database_url": pg_url, "redis_url": REDIS_URL, "job_workers": 1,
                "queue_name": f"lessoncast-test-{uuid.uuid4().hex[:8]}"}
    services = make_services(tmp_path / "data", **settings)
    ids = []
    for n in range(3):
        audio = speech_like(tmp_path / f"lesson{n}.wav", seconds=3 + n)
        lesson, created = lessons.ingest(services, stage_file(services, audio), audio.name,
                                         lessons.LessonMeta(title=f"第{n + 1}课"), "test")
        assert created
        ids.append(lesson.id)

    env = stack_env(tmp_path / "data", **settings)
    workers = [start(["worker"], env, tmp_path / f"worker{n}.log") for n in range(2)]
    try:
        def all_done():
            with services.db.session() as session:
                states = session.scalars(select(Lesson.state).where(Lesson.id.in_(ids))).all()
            return "processing" not in states and states

        assert set(wait_for(all_done, 180, "three lessons", tmp_path / "worker0.log")) == {"ready"}
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            proc.wait(timeout=30)
    with services.db.session() as session:
        attempts = session.scalars(select(Job.attempts)).all()
    assert attempts and set(attempts) == {1}, "every job ran exactly once"
    logs = [(tmp_path / f"worker{n}.log").read_text() for n in range(2)]
    assert all("attempt 1" in text_ for text_ in logs), "both workers took jobs from the shared queue"
    services.db.dispose()
