"""Report tables and their formats: JSON, CSV and XLSX all come from ``tables``, so they cannot disagree.

``tables`` lays a ``server.attendance.reports.Report`` (or ``MemberRecord``) out as named tables of typed cells. A
format only writes cells: numbers stay numbers (a rate is a fraction, formatted as a percentage in XLSX), dates stay
dates. Headers and sheet names are message ids of the console's translation catalogue (``server.i18n``), Chinese by
default.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
import unicodedata
from datetime import date, datetime
from typing import IO, Any, Callable, Optional, Union
from zoneinfo import ZoneInfo

from server.attendance.reports import MemberRecord, MemberRow, Report, Row
from server.i18n import _, translator

FORMATS = ("json", "csv", "xlsx")


@dataclass(frozen=True)
class Table:
    """A named table: its key, title (a message id), columns as (key, header message id), and rows of cells."""

    key: str
    title: str
    columns: tuple[tuple[str, str], ...]
    rows: list[tuple[Any, ...]]


_AREA = (("level", _("Level")), ("township", _("Township code")), ("code", _("Code")), ("name", _("Name")),
         ("active", _("Active members")), ("trained", _("Trained members")), ("rate", _("Participation rate")),
         ("completed_all", _("Completed all mandatory lessons")), ("classes", _("Class sessions")),
         ("broadcast_days", _("Broadcast days")), ("clock_flagged", _("Records with an implausible clock")))
_MEMBER = (("member_no", _("Member number")), ("name", _("Member name")), ("township", _("Township code")),
           ("site", _("Site code")), ("site_name", _("Site")), ("branch", _("Party branch")),
           ("mandatory", _("Mandatory lessons")), ("completed", _("Mandatory lessons completed")),
           ("classes", _("Classes attended")), ("trained", _("Trained")), ("last_training", _("Last training")),
           ("clock_flagged", _("Records with an implausible clock")))
_UNTRAINED = (("member_no", _("Member number")), ("name", _("Member name")), ("township", _("Township code")),
              ("site", _("Site code")), ("site_name", _("Site")), ("branch", _("Party branch")))


def _area(row: Row) -> tuple:
    return (row.level, row.township, row.code, row.name, row.active, row.trained, row.rate, row.completed_all,
            row.classes, row.broadcast_days, row.clock_flagged)


def _member(m: MemberRow) -> tuple:
    return (m.member_no, m.name, m.township, m.site, m.site_name, m.branch, m.mandatory, m.completed, m.classes,
            m.trained, m.last_training, m.clock_flagged)


def tables(report: Report) -> list[Table]:
    """Every table of a participation report, in the order of the XLSX sheets."""
    return [
        Table("county", _("County"), _AREA, [_area(report.county)]),
        Table("townships", _("Townships"), _AREA, [_area(r) for r in report.townships]),
        Table("sites", _("Sites"), _AREA, [_area(r) for r in report.sites]),
        Table("members", _("Members"), _MEMBER, [_member(m) for m in report.members]),
        Table("sites_without_class", _("Sites without a class"), _AREA,
              [_area(r) for r in report.sites_without_class]),
        Table("untrained", _("Untrained this year"), _UNTRAINED,
              [(m.member_no, m.name, m.township, m.site, m.site_name, m.branch) for m in report.untrained_this_year]),
    ]


def record_tables(record: MemberRecord) -> list[Table]:
    """A member's record: lessons completed and classes attended."""
    lessons = Table("lessons", _("Lessons completed"),
                    (("programme", _("Programme")), ("lesson", _("Lesson")), ("title", _("Title")),
                     ("completed_on", _("Completed on")), ("mandatory", _("Mandatory")),
                     ("clock_flagged", _("Implausible clock"))),
                    [(x["programme"], x["lesson"], x["title"], date.fromisoformat(x["completed_on"]), x["mandatory"],
                      x["clock_flagged"]) for x in record.lessons])
    classes = Table("classes", _("Classes attended"),
                    (("date", _("Date")), ("site", _("Site code")), ("lesson", _("Lesson")), ("title", _("Title")),
                     ("recorded_by", _("Recorded by")), ("clock_flagged", _("Implausible clock"))),
                    [(date.fromisoformat(x["date"]), x["site"], x["lesson"], x["title"], x["recorded_by"],
                      x["clock_flagged"]) for x in record.classes])
    return [lessons, classes]


def _json_cell(value: Any) -> Any:
    return value.isoformat() if isinstance(value, (date, datetime)) else value


def to_json(report_tables: list[Table], meta: dict[str, Any]) -> bytes:
    """{"meta": {...}, "<table>": [{column: cell}, ...], ...} as UTF-8 JSON."""
    out: dict[str, Any] = {"meta": {k: _json_cell(v) for k, v in meta.items()}}  # dates as in the tables
    for table in report_tables:
        keys = [k for k, _h in table.columns]
        out[table.key] = [{k: _json_cell(v) for k, v in zip(keys, row)} for row in table.rows]
    return json.dumps(out, ensure_ascii=False, indent=1).encode("utf-8")


# Values a person reads in a file, through the catalogue: the level of a row, the kind of period, yes and no.
_VALUES = {"county": _("county"), "township": _("township"), "site": _("site"), "quarter": _("quarter"),
           "year": _("year"), "range": _("range of days"), "programme": _("programme")}
_YES, _NO = _("Yes"), _("No")
_THIS_COUNTY = _("This county")


def _shown(table: Table, gettext: Callable[[str], str]) -> Callable[[tuple], list]:
    """How a row of TABLE reads in a file: levels translated, the county row named, booleans as yes/no."""
    keys = [k for k, _h in table.columns]
    level = keys.index("level") if "level" in keys else None
    name = keys.index("name") if "name" in keys else None

    def show(row: tuple) -> list:
        cells = [(gettext(_YES) if v else gettext(_NO)) if isinstance(v, bool) else v for v in row]
        if level is not None:
            if cells[level] == "county" and name is not None and not cells[name]:
                cells[name] = gettext(_THIS_COUNTY)
            cells[level] = gettext(_VALUES.get(cells[level], cells[level]))
        return cells

    return show


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    return _spreadsheet_text(_json_cell(value))


def to_csv(table: Table, language: Optional[str] = None) -> bytes:
    """One table as CSV with translated headers, UTF-8 with a BOM so Excel on a Chinese Windows opens it right."""
    gettext = translator(language)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([gettext(h) for _k, h in table.columns])
    show = _shown(table, gettext)
    for row in table.rows:
        writer.writerow([_csv_cell(v) for v in show(row)])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def to_xlsx(report_tables: list[Table], meta: dict[str, Any], language: Optional[str] = None) -> bytes:
    """A workbook with a sheet per table (translated names and headers) and a first sheet saying what it is."""
    buffer = io.BytesIO()
    write_xlsx(report_tables, meta, buffer, language)
    return buffer.getvalue()


def write_xlsx(report_tables: list[Table], meta: dict[str, Any], out: Union[str, IO[bytes]],
               language: Optional[str] = None, on_progress: Optional[Callable[[float], None]] = None) -> int:
    """Write the workbook to OUT (a path or a binary file) in openpyxl's write-only mode; return the rows written.

    Write-only mode streams each row to a scratch file instead of keeping a cell object per value: the workbook of
    a 100,000-member county costs a few megabytes, not a gigabyte. Column widths, the bold header and the frozen
    first row are set before the rows, as the mode needs. ON_PROGRESS gets the share of rows written so far.
    """
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    gettext = translator(language)
    book = Workbook(write_only=True)
    about = book.create_sheet(gettext(_("About"))[:31])
    lines = [[gettext(_META.get(key, key)), _meta_cell(key, value, gettext)] for key, value in meta.items()
             if key not in ("grace_days", "window_until")]
    if meta.get("grace_days"):
        lines.append([gettext(_("Note")), gettext(_("The end date includes the {days} grace days after the "
                                                    "programme's window, which ends on {until}: plays in them still "
                                                    "count.")).format(days=meta["grace_days"],
                                                                       until=_json_cell(meta["window_until"]))])
    for column, width in enumerate(_widths([], lines), 1):
        about.column_dimensions[get_column_letter(column)].width = width
    for line in lines:
        about.append(line)
    total = sum(len(t.rows) for t in report_tables) or 1
    written = 0
    bold = Font(bold=True)
    for table in report_tables:
        sheet = book.create_sheet(_sheet_name(gettext(table.title)))
        show = _shown(table, gettext)
        rate_col = next((i for i, (k, _h) in enumerate(table.columns) if k == "rate"), None)
        for i, width in enumerate(_widths([gettext(h) for _k, h in table.columns],
                                          (show(row) for row in table.rows), percent=rate_col), 1):
            sheet.column_dimensions[get_column_letter(i)].width = width
        sheet.freeze_panes = "A2"
        headers = []
        for _k, header in table.columns:
            cell = WriteOnlyCell(sheet, gettext(header))
            cell.font = bold
            headers.append(cell)
        sheet.append(headers)
        for row in table.rows:
            cells: list[Any] = [_xlsx_cell(v) for v in show(row)]
            if rate_col is not None:
                cells[rate_col] = WriteOnlyCell(sheet, cells[rate_col])
                cells[rate_col].number_format = "0.0%"
            sheet.append(cells)
            written += 1
            if on_progress is not None and written % 2000 == 0:
                on_progress(written / total)
    book.save(out)
    if on_progress is not None:
        on_progress(1.0)
    return written


def _spreadsheet_text(value: Any) -> Any:
    """Text a spreadsheet would run as a formula (=, +, -, @, tab, CR first) gets a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _xlsx_cell(value: Any) -> Any:
    return _spreadsheet_text(value)


def text_width(text: str) -> int:
    """Columns TEXT takes in a spreadsheet: a Chinese (wide or full-width) character takes two."""
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def _cell_text(value: Any, percent: bool = False) -> str:
    if value is None:
        return ""
    if percent and isinstance(value, (int, float)):
        return f"{value * 100:.1f}%"
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return str(value)


def _widths(headers: list[str], rows, percent: Optional[int] = None, *, low: int = 6, high: int = 60) -> list[int]:
    """Column widths that fit the longest header or value of each column (plus a margin), within LOW..HIGH."""
    widths = [text_width(h) for h in headers]
    for row in rows:
        if len(widths) < len(row):
            widths += [0] * (len(row) - len(widths))
        for i, value in enumerate(row):
            widths[i] = max(widths[i], text_width(_cell_text(value, i == percent)))
    return [max(low, min(high, w + 2)) for w in widths]


def _meta_cell(key: str, value: Any, gettext: Callable[[str], str]) -> Any:
    """A line of the About sheet as a person reads it: the kind of period translated, times in the county's."""
    if key == "kind":
        return gettext(_VALUES.get(value, value))
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M} ({value.tzinfo})" if value.tzinfo else value.isoformat()
    return _json_cell(value)


def _sheet_name(name: str) -> str:
    for bad in "[]:*?/\\":
        name = name.replace(bad, " ")
    return name[:31]


_META = {"period": _("Period"), "kind": _("Kind of period"), "from": _("From"), "until": _("Until"),
         "township": _("Township code"), "generated_at": _("Generated at"), "year": _("Year of the home-visit list"),
         "member_no": _("Member number"), "name": _("Member name"), "site": _("Site code")}


def report_meta(report: Report) -> dict[str, Any]:
    """What a report is: its period (``until`` includes a programme's grace days, ``grace_days`` says how many),
    township, the year of its home-visit list, and when it was made (in the county's time zone)."""
    meta = {"period": report.period.label, "kind": report.period.kind, "from": report.period.start,
            "until": report.period.end, "township": report.township or "",
            "generated_at": report.generated_at.astimezone(ZoneInfo(report.timezone)), "year": report.year_label}
    if report.grace_days:
        meta["grace_days"] = report.grace_days
        meta["window_until"] = date.fromordinal(report.period.end.toordinal() - report.grace_days)
    return meta


def record_meta(record: MemberRecord, period: str) -> dict[str, Any]:
    return {"member_no": record.member_no, "name": record.name, "site": record.site, "township": record.township,
            "period": period}


def render(report_tables: list[Table], meta: dict[str, Any], fmt: str, *, table: Optional[str] = None,
           language: Optional[str] = None) -> tuple[bytes, str]:
    """(bytes, media type) of the tables in FMT; CSV holds one table (TABLE, default the first)."""
    if fmt == "json":
        return to_json(report_tables, meta), "application/json"
    if fmt == "xlsx":
        return to_xlsx(report_tables, meta, language), \
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    if fmt == "csv":
        keys = [t.key for t in report_tables]
        chosen = table or keys[0]
        if chosen not in keys:
            raise ValueError(f"table {chosen!r}: a CSV holds one of {', '.join(keys)}")
        return to_csv(report_tables[keys.index(chosen)], language), "text/csv; charset=utf-8"
    raise ValueError(f"format {fmt!r}: use one of {', '.join(FORMATS)}")


