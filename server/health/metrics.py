"""GET /metrics: the stack's figures in the Prometheus text format, computed from the database at scrape time.

The database (and the beat files of this host's processes) is the one source of truth across the web, worker and
ingest processes, so nothing is counted in process memory: every gunicorn worker answers the same figures, and a
restart loses nothing. Each scrape runs a handful of small queries; none scans the event table (the ingest rate
finds the first event of its window by a binary search on the primary key).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterable, Optional

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.attendance.models import Export
from server.devices.models import Device
from server.events.models import DeviceEvent, DeviceSequence, DeviceStatus
from server.health.beats import SILENCE_S, read_file_beats
from server.jobs.models import Job
from server.services import Services

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
DEVICE_STATES = ("pending", "enrolled", "revoked")
RATE_WINDOWS_S = (60, 300)
# Seconds: a transcode of a short lesson takes seconds, a county-wide export minutes.
DURATION_BUCKETS_S = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)


@dataclass
class Family:
    """One metric family: its name, type, help text and samples (suffix, labels, value)."""

    name: str
    kind: str
    help: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, suffix: str = "", **labels: str) -> None:
        self.samples.append((suffix, labels, value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def render(families: Iterable[Family]) -> str:
    """The Prometheus text exposition format (version 0.0.4) of FAMILIES."""
    lines = []
    for fam in families:
        lines.append(f"# HELP {fam.name} {fam.help}")
        lines.append(f"# TYPE {fam.name} {fam.kind}")
        for suffix, labels, value in fam.samples:
            label_text = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
            lines.append(f"{fam.name}{suffix}{{{label_text}}} {_number(value)}" if label_text
                         else f"{fam.name}{suffix} {_number(value)}")
    return "\n".join(lines) + "\n"


def _histogram(fam: Family, durations: list[float], **labels: str) -> None:
    for bound in DURATION_BUCKETS_S:
        fam.add(sum(1 for d in durations if d <= bound), "_bucket", **labels, le=_number(bound))
    fam.add(len(durations), "_bucket", **labels, le="+Inf")
    fam.add(sum(durations), "_sum", **labels)
    fam.add(len(durations), "_count", **labels)


def _first_id_since(session: Session, cutoff: datetime, low: int, high: int) -> Optional[int]:
    """The smallest event id received at or after CUTOFF, by binary search over ids LOW..HIGH.

    Events are stored in the order they arrive, so ``received_at`` rises with the id; the search reads about
    log2(rows) rows through the primary key instead of scanning the table for a column without an index.
    """
    def received(at_least: int):
        return session.execute(select(DeviceEvent.id, DeviceEvent.received_at).where(DeviceEvent.id >= at_least)
                               .order_by(DeviceEvent.id).limit(1)).first()

    first = received(low)
    if first is None:
        return None
    if first.received_at >= cutoff:
        return first.id
    last = received(high)
    if last is None or last.received_at < cutoff:
        return None
    lo, hi = first.id, last.id  # received(lo) < cutoff <= received(hi)
    while hi - lo > 1:
        row = received((lo + hi) // 2)
        if row.id >= hi:
            break
        if row.received_at >= cutoff:
            hi = row.id
        else:
            lo = row.id
    return hi


def _ingest(session: Session, services: Services, now: datetime) -> list[Family]:
    total = Family("lessoncast_ingest_events_stored_total", "counter",
                   "Device events stored since the database was created (duplicates not counted).")
    total.add(int(session.scalar(select(func.coalesce(func.sum(DeviceSequence.events), 0)))))
    recent = Family("lessoncast_ingest_events_recent", "gauge",
                    "Device events stored within the last window seconds (received_at at or after now - window).")
    rate = Family("lessoncast_ingest_rate_events_per_second", "gauge",
                  "Device events stored per second, averaged over the last window seconds.")
    low, high = session.execute(select(func.min(DeviceEvent.id), func.max(DeviceEvent.id))).one()
    for window in RATE_WINDOWS_S:
        count = 0
        if high is not None:
            first = _first_id_since(session, now - timedelta(seconds=window), low, high)
            if first is not None:
                count = session.scalar(select(func.count()).select_from(DeviceEvent).where(DeviceEvent.id >= first))
        recent.add(count, window=str(window))
        rate.add(round(count / window, 3), window=str(window))
    # The ingest processes of this host say in their beats how many batches wait and when they last stored some.
    beats = [b for b in read_file_beats(services, "ingest")
             if (now - b["seen_at"]).total_seconds() <= SILENCE_S]
    waiting = Family("lessoncast_ingest_waiting_batches", "gauge",
                     "Batches received by this host's ingest processes and not yet stored.")
    waiting.add(sum(int(b.get("waiting") or 0) for b in beats))
    lag = Family("lessoncast_ingest_lag_seconds", "gauge",
                 "While batches wait: seconds since an ingest process last finished storing (or became busy); "
                 "0 when nothing waits.")
    lags = []
    for b in beats:
        if b.get("waiting"):
            marks = [datetime.fromisoformat(b[k]) for k in ("stored_at", "busy_since") if b.get(k)]
            lags.append(max(0.0, (now - max(marks)).total_seconds()) if marks else 0.0)
    lag.add(round(max(lags), 3) if lags else 0.0)
    last = Family("lessoncast_ingest_last_stored_age_seconds", "gauge",
                  "Seconds since any device's events were last stored (absent before the first).")
    newest = session.scalar(select(func.max(DeviceSequence.last_event_at)))
    if newest is not None:
        last.add(round(max(0.0, (now - newest).total_seconds()), 3))
    return [total, recent, rate, waiting, lag, last]


def _devices(session: Session, now: datetime) -> list[Family]:
    states = Family("lessoncast_devices", "gauge", "Devices in the registry, by kind and state.")
    counts = {(k, s): n for k, s, n in session.execute(
        select(Device.kind, Device.state, func.count()).group_by(Device.kind, Device.state))}
    for kind in sorted({k for k, _s in counts} | {"radio", "terminal"}):
        for state in DEVICE_STATES:
            states.add(counts.get((kind, state), 0), kind=kind, state=state)
    online = Family("lessoncast_devices_online", "gauge",
                    "Enrolled devices whose last status (or will) says online, by kind.")
    rows = dict(session.execute(select(Device.kind, func.count()).join(DeviceStatus, DeviceStatus.device_uid == Device.uid)
                                .where(DeviceStatus.online.is_(True), Device.state == "enrolled")
                                .group_by(Device.kind)).all())
    for kind in sorted(set(rows) | {"radio", "terminal"}):
        online.add(rows.get(kind, 0), kind=kind)
    outbox = Family("lessoncast_devices_outbox_events", "gauge",
                    "Events devices hold that the server has not acknowledged yet, as their last status reported.")
    outbox.add(int(session.scalar(select(func.coalesce(func.sum(DeviceStatus.outbox_depth), 0)))))
    gap = Family("lessoncast_ack_gap_events", "gauge",
                 "Sequence numbers between devices' acknowledgements and the highest event stored: the missing events "
                 "and those stored behind them, which wait for the missing ones before they are acknowledged.")
    behind = session.execute(select(DeviceSequence.stored_max, DeviceSequence.acked, DeviceSequence.updated_at)
                             .where(DeviceSequence.stored_max > DeviceSequence.acked)).all()
    gap.add(sum(s - a for s, a, _u in behind))
    lag = Family("lessoncast_ack_lag_seconds", "gauge",
                 "The longest time an acknowledgement has not moved while later events wait behind a gap; "
                 "0 when every stored event is acknowledged.")
    lag.add(round(max([max(0.0, (now - u).total_seconds()) for _s, _a, u in behind] or [0.0]), 3))
    return [states, online, outbox, gap, lag]


def _jobs(session: Session) -> list[Family]:
    states = Family("lessoncast_jobs", "gauge", "Background jobs by kind and state (the job rows).")
    counts = {(k, s): n for k, s, n in session.execute(
        select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state))}
    for kind in sorted({k for k, _s in counts} | {"analyse", "render", "export"}):
        for state in JOB_STATES:
            states.add(counts.get((kind, state), 0), kind=kind, state=state)
    jobs = Family("lessoncast_job_duration_seconds", "histogram",
                  "How long finished jobs ran (started to finished), by kind.")
    by_kind: dict[str, list[float]] = {}
    for kind, started, finished in session.execute(
            select(Job.kind, Job.started_at, Job.finished_at)
            .where(Job.state == "done", Job.started_at.is_not(None), Job.finished_at.is_not(None))):
        by_kind.setdefault(kind, []).append(max(0.0, (finished - started).total_seconds()))
    for kind in sorted(by_kind):
        _histogram(jobs, by_kind[kind], kind=kind)
    exports = Family("lessoncast_export_duration_seconds", "histogram",
                     "How long report exports took to build (the export job, started to finished), by report.")
    by_report: dict[str, list[float]] = {}
    for report, started, finished in session.execute(
            select(Export.report, Job.started_at, Job.finished_at).join(Job, Job.id == Export.job_id)
            .where(Job.state == "done", Job.started_at.is_not(None), Job.finished_at.is_not(None))):
        by_report.setdefault(report, []).append(max(0.0, (finished - started).total_seconds()))
    for report in sorted(by_report):
        _histogram(exports, by_report[report], report=report)
    return [states, jobs, exports]


def collect(services: Services) -> list[Family]:
    """Every metric family, read now."""
    now = services.clock()
    with services.db.session() as session:
        families = _jobs(session) + _ingest(session, services, now) + _devices(session, now)
    return families


def exposition(services: Services) -> str:
    """The /metrics body."""
    return render(collect(services))
