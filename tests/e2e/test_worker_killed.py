"""A worker killed mid-transcode loses nothing: its job is picked up again, done once, and no scratch is left."""

import os
import signal

from sqlalchemy import select

from server.jobs.models import Job
from server.lessons import service as lessons
from server.lessons.models import Lesson
from tests.conftest import make_services, stage_file
from tests.e2e.stack import stack_env, start, wait_for
from tests.generated_media import video


def test_killed_worker_job_is_picked_up_again(tmp_path):
    data = tmp_path / "data"
    env = stack_env(data, job_lease=3, job_workers=1)
    services = make_services(data, job_lease=3)
    clip = video(tmp_path / "lecture.mp4", 1920, 1080, seconds=12)
    lesson, _ = lessons.ingest(services, stage_file(services, clip), "lecture.mp4",
                               lessons.LessonMeta(title="党课"), "test")

    first = start(["worker"], env, tmp_path / "worker1.log")

    def busy_render():
        with services.db.session() as session:
            return session.scalar(select(Job).where(Job.kind == "render", Job.state == "running",
                                                    Job.progress > 0.05))

    victim = wait_for(busy_render, 120, "a render job under way", tmp_path / "worker1.log")
    os.killpg(first.pid, signal.SIGKILL)  # the worker and its ffmpeg, as a power cut or OOM kill would
    first.wait()

    second = start(["worker"], env, tmp_path / "worker2.log")
    try:
        def finished():
            with services.db.session() as session:
                state = session.get(Lesson, lesson.id).state
            return state if state != "processing" else None

        assert wait_for(finished, 240, "the lesson to finish", tmp_path / "worker2.log") == "ready"
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)

    with services.db.session() as session:
        job = session.get(Job, victim.id)
        assert job.state == "done" and job.attempts == 2
        all_jobs = session.scalars(select(Job)).all()
        assert all(j.state == "done" for j in all_jobs)
        ready = session.get(Lesson, lesson.id).renditions
    # Three renditions and one poster, each stored once; the killed attempt's scratch is gone.
    assert services.media.count() == len(ready) + 1
    assert list(services.work_dir.iterdir()) == []
