"""The hourly rollup of device statuses (``DeviceStatusHourly``): how one status changes its hour's row.

``add_report`` is the one rule, used by ingest for each status it stores and by the migration that sums up the
minute rows stored before the rollup existed. Every column is a count, a lowest or highest value, or the value at
the latest time, so the row is the same whatever order the hour's statuses arrive in.
"""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any, Optional

HOURLY_FIELDS = ("reports", "online_reports", "min_battery", "max_battery", "last_battery", "last_battery_at",
                 "min_storage_free_mb", "first_online_at", "last_online_at", "first_offline_at", "last_offline_at")


def hour_of(at: datetime) -> datetime:
    """The UTC hour AT falls in."""
    return at.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def _lower(a, b):
    return b if a is None else a if b is None else min(a, b)


def _higher(a, b):
    return b if a is None else a if b is None else max(a, b)


def add_report(row: Any, at: datetime, online: bool, battery: Optional[int], storage_free_mb: Optional[int]) -> None:
    """Add the status reported at AT to ROW, its hour's rollup (any object with ``HOURLY_FIELDS`` attributes; a new
    row has them all None)."""
    row.reports = (row.reports or 0) + 1
    row.online_reports = (row.online_reports or 0) + bool(online)
    row.min_battery = _lower(row.min_battery, battery)
    row.max_battery = _higher(row.max_battery, battery)
    if battery is not None and (row.last_battery_at is None or at >= row.last_battery_at):
        row.last_battery, row.last_battery_at = battery, at
    row.min_storage_free_mb = _lower(row.min_storage_free_mb, storage_free_mb)
    if online:
        row.first_online_at, row.last_online_at = _lower(row.first_online_at, at), _higher(row.last_online_at, at)
    else:
        row.first_offline_at, row.last_offline_at = _lower(row.first_offline_at, at), _higher(row.last_offline_at, at)


def empty() -> SimpleNamespace:
    """A rollup row with nothing added yet."""
    return SimpleNamespace(**dict.fromkeys(HOURLY_FIELDS))


def summed(reports) -> dict[tuple[str, datetime], SimpleNamespace]:
    """Rollup rows from minute rows REPORTS, ``(device_uid, at, online, battery, storage_free_mb)`` with aware AT."""
    rows: dict[tuple[str, datetime], SimpleNamespace] = {}
    for uid, at, online, battery, storage in reports:
        key = (uid, hour_of(at))
        if key not in rows:
            rows[key] = empty()
        add_report(rows[key], at, online, battery, storage)
    return rows


def backfill(conn) -> int:
    """Sum up every stored minute row of ``device_status_history`` into ``device_status_hourly`` (empty before);
    used by the migration that adds the rollup. Returns how many hourly rows it wrote."""
    import sqlalchemy as sa

    def aware(value):
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=timezone.utc)

    minute = conn.execute(sa.text("SELECT device_uid, at, online, battery, storage_free_mb "
                                  "FROM device_status_history"))
    rows = summed((uid, aware(at), bool(online), battery, storage) for uid, at, online, battery, storage in minute)
    hourly = sa.table("device_status_hourly", sa.column("device_uid"), sa.column("hour"),
                      *(sa.column(f) for f in HOURLY_FIELDS))

    def naive(value):
        return value.replace(tzinfo=None) if isinstance(value, datetime) else value

    values = [{"device_uid": uid, "hour": naive(hour), **{f: naive(getattr(r, f)) for f in HOURLY_FIELDS}}
              for (uid, hour), r in rows.items()]
    for start in range(0, len(values), 5000):
        conn.execute(hourly.insert(), values[start:start + 5000])
    return len(values)

