"""How many refused enrolments a client address, or a code prefix, may have in an hour.

The counts live in the database, as audit entries of each refused attempt, so every gunicorn worker (and every
web host of a scaled-out county) sees the same numbers: a per-worker counter would let an attacker multiply the
allowance by the number of workers and would forget it at every restart. Two workers checking at the same instant
may both let one more attempt through; the limit is a brake on guessing, and that slack is a handful of tries.
Attempts already over the limit are refused without a write, so a flood does not grow the audit log.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.audit import AuditEntry
from server.errors import TooMany
from server.i18n import _l

REFUSED = "device.enrol_refused"
WINDOW = timedelta(hours=1)
PREFIX_LENGTH = 4  # one group of the printed code: an attacker who saw part of a slip guesses the rest


def check(session: Session, address: str, prefix: str, now: datetime, per_hour: int) -> None:
    """Raise TooMany when ADDRESS or PREFIX already had PER_HOUR refused attempts in the last hour."""
    if per_hour <= 0:
        return
    since = now - WINDOW
    for column, key, what in ((AuditEntry.subject, address, f"from {address}"),
                              (AuditEntry.note, prefix, f"with codes starting {prefix}")):
        if not key:
            continue
        recent = select(AuditEntry.at).where(AuditEntry.action == REFUSED, AuditEntry.at >= since, column == key)
        count = session.scalar(select(func.count()).select_from(recent.subquery()))
        if count >= per_hour:
            oldest = session.scalar(select(func.min(AuditEntry.at)).where(
                AuditEntry.action == REFUSED, AuditEntry.at >= since, column == key))
            retry = max(1, math.ceil((oldest + WINDOW - now).total_seconds()))
            raise TooMany("enrol_rate_limited",
                          _l("Too many refused enrolment attempts {what} in the last hour (the limit is {per_hour}). "
                             "Check the code on the device's paper slip and try again in {value} minutes, or ask the "
                             "county office for a new code.",
                             what=what, per_hour=per_hour, value=math.ceil(retry / 60)), retry_after=retry)


def record(session: Session, address: str, prefix: str, now: datetime, reason: str) -> None:
    """Count one refused attempt against ADDRESS and PREFIX (the caller commits)."""
    session.add(AuditEntry(at=now, actor="enrol", action=REFUSED, subject=address[:200], note=prefix,
                           details={"reason": reason}))
