"""GET /metrics: the Prometheus text format, read with prometheus_client's own parser, after real activity (events
stored through ingest, statuses, a gap, export jobs run by the worker's runner); only a monitor or admin token."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from server.attendance.models import Export
from server.events.ingest import store_batch, store_status
from server.jobs.models import Job
from tests.attendance_data import build_county
from tests.conftest import free_port, make_services

NOW = datetime(2027, 1, 5, 3, 0, tzinfo=timezone.utc)


class SteppedClock:
    """A clock that moves only when told to, plus one second per reading while ``ticking`` (so a job has a
    duration that the database records, whatever the machine's speed)."""

    def __init__(self, at: datetime):
        self.at, self.ticking = at, False

    def __call__(self) -> datetime:
        if self.ticking:
            self.at += timedelta(seconds=1)
        return self.at


@pytest.fixture
def services(tmp_path):
    svc = make_services(tmp_path / "data", port=free_port(), mqtt_port=free_port(), mqtt_server_port=free_port(),
                        report_inline_members=5)
    svc.clock = SteppedClock(NOW)
    yield svc
    svc.db.dispose()


def _play(seq: int) -> dict:
    return {"id": str(uuid.uuid4()), "seq": seq, "type": "play", "phase": "completed", "play_id": str(uuid.uuid4()),
            "programme": "2026-Q4", "lesson": 1, "start_position": 0.0, "end_position": 12.5, "volume": 70,
            "device_time": "2027-01-05T02:00:00Z"}


def _send(services, device: str, first: int, last: int, at: datetime):
    body = json.dumps({"device": device, "epoch": 1, "events": [_play(s) for s in range(first, last + 1)]})
    props = {"device": device, "epoch": "1", "seq": f"{first}-{last}"}
    return store_batch(services, device, props, body.encode(), at)


def _scrape(client, headers) -> dict[tuple[str, tuple], float]:
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 200, answer.data
    assert answer.content_type.startswith("text/plain; version=0.0.4")
    values = {}
    for family in text_string_to_metric_families(answer.get_data(as_text=True)):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def test_metrics_after_real_activity(client, token, services, drain):
    county = build_county(services, townships=1, sites_per_township=2, members_per_site=4, radios_per_site=2)
    radios = [uid for uid, _member in county.radios]
    monitor = {"Authorization": f"Bearer {token('monitor')}"}

    # Events: 3 received 30 s ago, 2 received 200 s ago, 1 received 1,000 s ago (in arrival order).
    assert _send(services, radios[0], 1, 1, NOW - timedelta(seconds=1000)) == (1, 1)
    assert _send(services, radios[1], 1, 2, NOW - timedelta(seconds=200)) == (1, 2)
    assert _send(services, radios[2], 1, 3, NOW - timedelta(seconds=30)) == (1, 3)
    # A batch 6-7 of radio 0 arrives while 2-5 are missing: stored, not acknowledged (ack stays at 1).
    assert _send(services, radios[0], 6, 7, NOW - timedelta(seconds=20)) == (1, 1)
    # Statuses: two radios online (one holds 4 unacknowledged events), one offline.
    assert store_status(services, radios[0], json.dumps({"online": True, "queue": 4}).encode(), NOW)
    assert store_status(services, radios[1], json.dumps({"online": True}).encode(), NOW)
    assert store_status(services, radios[2], json.dumps({"online": False}).encode(), NOW)

    # Export jobs: one built by the runner (on a clock that moves a second per reading), one left queued.
    admin = {"Authorization": f"Bearer {token('admin')}"}
    built = client.post("/api/v1/exports", json={"period": "2026-Q4"}, headers=admin)
    assert built.status_code == 202, built.data
    services.clock.ticking = True
    assert drain() == 1
    services.clock.ticking = False
    waiting = client.post("/api/v1/exports", json={"period": "2026-Q4", "format": "csv", "table": "members"},
                          headers=admin)
    assert waiting.status_code == 202, waiting.data
    with services.db.session() as session:
        job = session.scalar(select(Job).join(Export, Export.job_id == Job.id).where(Job.state == "done"))
        took = (job.finished_at - job.started_at).total_seconds()
    assert took > 0

    services.clock.at = NOW
    m = _scrape(client, monitor)
    assert m[("lessoncast_jobs", (("kind", "export"), ("state", "done")))] == 1
    assert m[("lessoncast_jobs", (("kind", "export"), ("state", "queued")))] == 1
    assert m[("lessoncast_jobs", (("kind", "render"), ("state", "failed")))] == 0

    assert m[("lessoncast_ingest_events_stored_total", ())] == 8
    assert m[("lessoncast_ingest_events_recent", (("window", "60"),))] == 3 + 2
    assert m[("lessoncast_ingest_events_recent", (("window", "300"),))] == 3 + 2 + 2
    assert m[("lessoncast_ingest_rate_events_per_second", (("window", "300"),))] == pytest.approx(7 / 300, abs=1e-3)
    assert m[("lessoncast_ingest_last_stored_age_seconds", ())] == 20
    assert m[("lessoncast_ingest_lag_seconds", ())] == 0  # no ingest process runs here: nothing waits

    assert m[("lessoncast_devices_online", (("kind", "radio"),))] == 2
    assert m[("lessoncast_devices_online", (("kind", "terminal"),))] == 0
    assert m[("lessoncast_devices", (("kind", "radio"), ("state", "enrolled")))] == len(radios)
    assert m[("lessoncast_devices_outbox_events", ())] == 4
    assert m[("lessoncast_ack_gap_events", ())] == 6  # 2-5 missing, 6 and 7 stored behind them
    assert m[("lessoncast_ack_lag_seconds", ())] == 1000  # radio 0's ack last moved 1,000 s ago

    labels = (("le", "+Inf"), ("report", "participation"))
    assert m[("lessoncast_export_duration_seconds_bucket", labels)] == 1
    assert m[("lessoncast_export_duration_seconds_count", (("report", "participation"),))] == 1
    assert m[("lessoncast_export_duration_seconds_sum", (("report", "participation"),))] == took
    assert m[("lessoncast_job_duration_seconds_count", (("kind", "export"),))] == 1

    # More activity shows at the next scrape: the window moves with the clock.
    services.clock.at = NOW + timedelta(seconds=35)
    m = _scrape(client, monitor)
    assert m[("lessoncast_ingest_events_recent", (("window", "60"),))] == 2  # only the batch 20 s before NOW

    # Not public: a monitor or admin token, and the monitor token reads nothing else.
    assert client.get("/metrics").status_code == 401
    for role in ("media", "viewer"):
        answer = client.get("/metrics", headers={"Authorization": f"Bearer {token(role)}"})
        assert answer.status_code == 403 and answer.get_json()["error"]["code"] == "forbidden"
    assert client.get("/metrics", headers=admin).status_code == 200
    assert client.get("/api/v1/devices", headers=monitor).status_code == 403
    assert client.get("/api/v1/lessons", headers=monitor).status_code == 403
