"""Make-up tables: make-ups per site, every owed make-up, and the participation with and without make-ups, laid out
as ``server.attendance.report_export`` tables, so the API's JSON, CSV and XLSX and the CLI's files come from the same
``makeup.by_site``, ``makeup.owed`` and ``ClassParticipation`` and cannot disagree."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from server.attendance.report_export import Table
from server.i18n import _
from server.training.makeup import ClassParticipation, Owed, SiteMakeups

_SITE = (("township", _("Township code")), ("site", _("Site code")), ("owed", _("Make-ups owed")),
         ("done", _("Make-ups done")), ("late", _("Done after the deadline")), ("overdue", _("Overdue")),
         ("open", _("Open")))
_OWED = (("member_no", _("Member number")), ("name", _("Name")), ("township", _("Township code")),
         ("site", _("Site code")), ("session", _("Class session")), ("lesson", _("Lesson")), ("radio", _("Radio")),
         ("due_at", _("Deadline")), ("done_at", _("Done at")), ("state", _("State")))
PARTICIPATION = (("period", _("Period")), ("members", _("Members")), ("attended", _("Attended a class")),
                  ("made_up", _("Made up instead")), ("overdue", _("Make-up overdue")),
                  ("rate", _("Participation rate without make-ups")),
                  ("rate_with_makeups", _("Participation rate with make-ups")))


def _local(at: Optional[datetime], zone) -> Optional[datetime]:
    """AT as the county's local wall time (a spreadsheet cell holds no zone)."""
    return None if at is None else at.astimezone(zone).replace(tzinfo=None, microsecond=0)


def owed_row(o: Owed, now: datetime, zone) -> tuple:
    return (o.member_no, o.name, o.township, o.site, o.session_key, o.lesson_id, o.radio, _local(o.due_at, zone),
            _local(o.done_at, zone), o.state(now))


def participation_row(label: str, p: ClassParticipation) -> tuple:
    return (label, p.members, p.attended, p.made_up, p.overdue, p.rate, p.rate_with_makeups)


def tables(sites: list[SiteMakeups], rows: list[Owed], now: datetime, zone,
           participation: Optional[tuple[str, ClassParticipation]] = None) -> list[Table]:
    """The make-up report's tables, in the order of the XLSX sheets (times local to ZONE); the participation table
    when a period is given."""
    out = [Table("sites", _("Make-ups per site"), _SITE,
                 [(s.township, s.site, s.owed, s.done, s.late, s.overdue, s.open) for s in sites]),
           Table("owed", _("Owed make-ups"), _OWED, [owed_row(o, now, zone) for o in rows])]
    if participation is not None:
        out.append(Table("participation", _("Participation with and without make-ups"), PARTICIPATION,
                         [participation_row(*participation)]))
    return out


def meta(period: str, township: Optional[str], now: datetime) -> dict[str, Any]:
    return {"period": period, "township": township or "", "generated_at": now}
