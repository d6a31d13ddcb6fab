"""The huey queue: SqliteHuey in the data directory by default, RedisHuey when LESSONCAST_REDIS_URL is set.

The queue only carries job ids. Which jobs exist and what state they are in lives in the database
(``server.jobs.leases``).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from huey import Huey, RedisHuey, SqliteHuey


class JobQueue:
    """A huey instance with lessoncast's one task registered on it.

    Any process may enqueue; only a worker runs jobs, with the runner it hands to ``consumer`` (the queue knows no
    job code, so it imports nothing of ours).
    """

    def __init__(self, huey: Huey, services):
        self.huey = huey
        self._runner: Optional[Callable[[Any, int], None]] = None

        # The name is what queued messages carry: it stays the same whatever module registers the task.
        @huey.task(name="lessoncast.run_job")
        def run_job_task(job_id: int) -> None:
            if self._runner is None:
                raise RuntimeError("this process enqueues jobs but runs none; start 'lessoncast worker'")
            self._runner(services, job_id)

        self._task = run_job_task

    def enqueue(self, job_id: int) -> None:
        """Send a job id to the workers."""
        self._task(job_id)

    def pending(self) -> int:
        """How many messages wait in the queue."""
        return self.huey.pending_count()

    def consumer(self, runner: Callable[[Any, int], None], **options):
        """A huey consumer that runs each job with RUNNER(services, job_id)."""
        self._runner = runner
        return self.huey.create_consumer(**options)


def build_huey(services) -> JobQueue:
    """Create the queue for these services, with the task that runs a job registered on it."""
    url = services.settings.redis_url
    if url:
        huey = RedisHuey(services.settings.queue_name, url=url, results=False)
    else:
        services.data.mkdir(parents=True, exist_ok=True)
        huey = SqliteHuey(services.settings.queue_name, filename=str(services.data / "queue.db"), results=False,
                          timeout=15)
    return JobQueue(huey, services)
