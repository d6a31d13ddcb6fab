"""Study-hours tables: the report and the member record laid out as ``server.attendance.report_export`` tables, so
JSON, CSV and XLSX come from the same cells (and the same ``HoursReport``) and cannot disagree."""

from __future__ import annotations

from typing import Any

from server.attendance.report_export import Table
from server.i18n import _
from server.training.hours import AreaHours, HoursReport, MemberHours

_AREA = (("level", _("Level")), ("township", _("Township code")), ("code", _("Code")), ("name", _("Name")),
         ("members", _("Members")), ("below_quota", _("Members below quota")), ("hours", _("Study hours")))
_MEMBER = (("member_no", _("Member number")), ("name", _("Name")), ("township", _("Township code")),
           ("site", _("Site code")), ("site_name", _("Site")), ("role", _("Role")), ("quota", _("Quota (hours)")),
           ("lesson_hours", _("Hours from lessons")), ("class_hours", _("Hours from classes")),
           ("training_hours", _("Hours from off-system trainings")), ("hours", _("Study hours")),
           ("below_quota", _("Below quota")))
_SOURCE = (("kind", _("Source")), ("day", _("Date")), ("title", _("Title")), ("hours", _("Study hours")),
           ("makeup", _("Make-up")))


def _area(a: AreaHours) -> tuple:
    return (a.level, a.township, a.code, a.name, a.members, a.below_quota, a.hours)


def _member(m: MemberHours) -> tuple:
    return (m.member_no, m.name, m.township, m.site, m.site_name, m.role, m.quota, m.hours_of("lesson"),
            m.hours_of("class"), m.hours_of("training"), m.hours, m.below_quota)


def tables(report: HoursReport) -> list[Table]:
    """Every table of a study-hours report, in the order of the XLSX sheets."""
    return [Table("county", _("County"), _AREA, [_area(report.county)]),
            Table("townships", _("Townships"), _AREA, [_area(t) for t in report.townships]),
            Table("sites", _("Sites"), _AREA, [_area(s) for s in report.sites]),
            Table("members", _("Members"), _MEMBER, [_member(m) for m in report.members]),
            Table("below_quota", _("Below quota"), _MEMBER, [_member(m) for m in report.below_quota])]


def meta(report: HoursReport) -> dict[str, Any]:
    return {"period": str(report.year), "township": report.township or "",
            "generated_at": report.generated_at}


def record_tables(m: MemberHours) -> list[Table]:
    """A member's study hours: the summary row and every source with its date."""
    return [Table("member", _("Member"), _MEMBER, [_member(m)]),
            Table("sources", _("Sources of study hours"), _SOURCE,
                  [(s.kind, s.day, s.title, round(s.hours, 2), s.makeup) for s in m.sources])]
