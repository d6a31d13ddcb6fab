"""The huey queue: SqliteHuey in the data directory by default, RedisHuey when LESSONCAST_REDIS_URL is set.

The queue only carries job ids. Which jobs exist and what state they are in lives in the database
(``server.jobs.leases``).
"""

from __future__ import annotations

from huey import Huey, RedisHuey, SqliteHuey


class JobQueue:
    """A huey instance with lessoncast's one task registered on it."""

    def __init__(self, huey: Huey, task):
        self.huey = huey
        self._task = task

    def enqueue(self, job_id: int) -> None:
        """Send a job id to the workers."""
        self._task(job_id)

    def pending(self) -> int:
        """How many messages wait in the queue."""
        return self.huey.pending_count()


def build_huey(services) -> JobQueue:
    """Create the queue for these services and register the task that runs a job."""
    url = services.settings.redis_url
    if url:
        huey = RedisHuey(services.settings.queue_name, url=url, results=False)
    else:
        services.data.mkdir(parents=True, exist_ok=True)
        huey = SqliteHuey(services.settings.queue_name, filename=str(services.data / "queue.db"), results=False, timeout=15)

    @huey.task(name="lessoncast.run_job")
    def run_job_task(job_id: int) -> None:
        from server.lessons.transcode import run_job

        run_job(services, job_id)

    return JobQueue(huey, run_job_task)
