"""SQLAlchemy models for what devices report: play and other events, quarantined batches, acks and status.

Events are stored raw (every field the device sent) with their arrival time, once per (device, event id), so a
batch sent twice is counted once. Attendance reads them later; ingest only stores and acknowledges.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import JSON, Boolean, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UTCDateTime


class DeviceEvent(Base):
    """One event a device recorded: a play, a check-in, an error or a command result.

    ``seq_last`` equals ``seq`` except for a compacted summary event, which stands for the whole range.
    """

    __tablename__ = "device_events"
    # The unique constraint and the sequence index both lead with device_uid, so they serve per-device lookups too.
    __table_args__ = (
        UniqueConstraint("device_uid", "event_id", name="uq_device_events_device_event"),
        Index("ix_device_events_device_epoch_seq", "device_uid", "epoch", "seq"),
        Index("ix_device_events_type_device_at", "type", "device_uid", "at"),  # logbooks' operating log
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    device_uid: Mapped[str] = mapped_column(String(64))
    epoch: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    seq_last: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[str] = mapped_column(String(36))
    type: Mapped[str] = mapped_column(String(32))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    device_time: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # When the event counts for attendance (corrected device time, or the arrival time when that is implausible)
    # and why the corrected time was not used: no_time, before_enrolment or future (attendance_rules).
    at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    clock_flag: Mapped[Optional[str]] = mapped_column(String(16))


class QuarantinedBatch(Base):
    """A batch the server could not accept (unreadable, inconsistent, from a device that is not enrolled).

    Its raw bytes are kept for staff to look at. Its sequence range counts as stored, so the device can move on.
    """

    __tablename__ = "quarantined_batches"
    __table_args__ = (Index("ix_quarantined_batches_device_epoch_seq", "device_uid", "epoch", "seq_first"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_uid: Mapped[str] = mapped_column(String(64))
    epoch: Mapped[int] = mapped_column(Integer)
    seq_first: Mapped[int] = mapped_column(Integer)
    seq_last: Mapped[int] = mapped_column(Integer)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    reason: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DeviceSequence(Base):
    """How far a device's events are stored in one epoch: every seq 1..acked is committed (the ack it gets)."""

    __tablename__ = "device_sequences"

    device_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    acked: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The highest sequence stored (events or quarantined) in this epoch: while it is at or below the ack, a batch
    # beyond it needs no look-ups for duplicates or for ranges stored earlier.
    stored_max: Mapped[int] = mapped_column(Integer, default=0)
    # What ingest did with this epoch's batches: the device's record and the ingest metrics add these up.
    events: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    quarantined: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    clock_flagged: Mapped[int] = mapped_column(Integer, default=0)
    last_event_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)


class DeviceStatus(Base):
    """The last status a device reported (or its last will, which says it went offline): the fleet table.

    The columns after ``received_at`` are copied from the body so the fleet can be filtered and sorted; a last
    will (``{"online": false}``) changes only ``online`` and keeps what the device said before.
    """

    __tablename__ = "device_status"

    device_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    online: Mapped[bool] = mapped_column(Boolean)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    battery: Mapped[Optional[int]] = mapped_column(Integer)
    storage_free_mb: Mapped[Optional[int]] = mapped_column(Integer)
    firmware: Mapped[Optional[str]] = mapped_column(String(64))
    agent_version: Mapped[Optional[str]] = mapped_column(String(32))
    manifest_version: Mapped[Optional[int]] = mapped_column(Integer)
    sync_state: Mapped[Optional[str]] = mapped_column(String(32))
    stale: Mapped[Optional[bool]] = mapped_column(Boolean)
    outbox_depth: Mapped[Optional[int]] = mapped_column(Integer)


class DeviceStatusHistory(Base):
    """Every status a device reported (and each last will), for the device page's chart of battery, storage and
    online periods. Only the columns the chart needs are kept; the full body stays in ``DeviceStatus``."""

    __tablename__ = "device_status_history"
    __table_args__ = (Index("ix_device_status_history_device_at", "device_uid", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_uid: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    online: Mapped[bool] = mapped_column(Boolean)
    battery: Mapped[Optional[int]] = mapped_column(Integer)
    storage_free_mb: Mapped[Optional[int]] = mapped_column(Integer)
    manifest_version: Mapped[Optional[int]] = mapped_column(Integer)
    sync_state: Mapped[Optional[str]] = mapped_column(String(32))
    outbox_depth: Mapped[Optional[int]] = mapped_column(Integer)


class DeviceStatusHourly(Base):
    """Each device's statuses summed up per UTC hour, written by ingest in the transaction that stores the status,
    so the device page charts a week from 168 rows instead of 10,080 minute rows.

    Every column is what the hour's ``DeviceStatusHistory`` rows give, whatever order they arrived in: counts, lowest
    and highest values, the first and last times of online and of offline reports, and the battery of the latest
    report that carried one (``last_battery_at`` says which). ``online_reports`` is the hour's online minutes when the
    device reports every minute. Minute rows are pruned after ``device_status_retention_days``; these rows stay."""

    __tablename__ = "device_status_hourly"

    device_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    reports: Mapped[int] = mapped_column(Integer)
    online_reports: Mapped[int] = mapped_column(Integer)
    min_battery: Mapped[Optional[int]] = mapped_column(Integer)
    max_battery: Mapped[Optional[int]] = mapped_column(Integer)
    last_battery: Mapped[Optional[int]] = mapped_column(Integer)
    last_battery_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    min_storage_free_mb: Mapped[Optional[int]] = mapped_column(Integer)
    first_online_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    last_online_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    first_offline_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    last_offline_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
