"""``lessoncast attendance`` (rebuild the aggregates, import rosters, list sessions) and ``lessoncast report``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import click

from server.attendance.report_export import FORMATS
from server.cli.common import LANGUAGE, api_errors, initialised, load_services


@click.group()
def attendance() -> None:
    """Rebuild attendance from the stored events, import class rosters, list class sessions."""


@attendance.command("rebuild")
def rebuild_cmd() -> None:
    """Recompute every attendance aggregate from the raw events (after changing a radio's holder in the past,
    a programme's dates or the attendance settings). Entered sessions and attendees are kept."""
    from server.attendance import fold as attendance_mod

    services = load_services()
    initialised(services)
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = click.progressbar(length=max(total, 1), label="Rebuilding attendance", file=sys.stderr)
            bar.__enter__()
        bar.update(done - bar.pos)

    try:
        result = attendance_mod.rebuild(services, progress=progress)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    click.echo(f"Rebuilt attendance from {result['events']} events of {result['devices']} devices"
               + (f"; {result['times_changed']} event times re-attributed" if result["times_changed"] else "") + ".")


@attendance.command("roster")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--actor", default="cli", show_default=True, help="Who is importing (recorded in the audit log).")
def roster_cmd(csv_file: Path, actor: str) -> None:
    """Import a class roster: columns member plus session, or site and date (time and title optional).
    Chinese headers (党员编号, 村（点）代码, 日期, 时间) work too; the whole file is checked before anything is stored."""
    from server.attendance.edit import import_roster
    from server.org.csv_rows import OrgImportError, decode_csv

    services = load_services()
    initialised(services)
    try:
        text = decode_csv(csv_file.read_bytes())
    except OrgImportError as exc:
        raise click.ClickException("\n".join([f"{csv_file.name}:{e.line}: {e.message}" for e in exc.errors]
                                             + [exc.summary(csv_file.name)])) from None
    with api_errors(), services.db.session() as session:
        result = import_roster(session, services.rules, text, actor, services.clock(), filename=csv_file.name)
    click.echo(f"{csv_file}: {result.attendees} attendee(s) in {result.sessions} session(s) "
               f"({result.created_sessions} new).")


@attendance.command("sessions")
@click.option("--period", required=True, help="2026, 2026-Q4, 2026-10-01..2026-10-31 or a programme code.")
@click.option("--township", default=None)
@click.option("--site", default=None)
@click.option("--classes-only", is_flag=True, help="Leave out operator playbacks too short to be a class.")
def sessions_cmd(period: str, township: Optional[str], site: Optional[str], classes_only: bool) -> None:
    """List class sessions with their attendee counts."""
    from server.attendance.edit import list_sessions
    from server.attendance.reports import resolve_period

    services = load_services()
    initialised(services)
    with api_errors(), services.db.session() as session:
        p, _programme = resolve_period(session, period, services.rules)
        rows = list_sessions(session, services.rules, p.start, p.end, township=township, site=site,
                             classes_only=classes_only)
    for r in rows:
        kind = "class" if r["is_class"] else "short"
        click.echo(f"{r['started_at'][:16]}  {r['site']:<12} {kind:<6} {r['attendees']:>4} attendee(s)  {r['key']}")
    click.echo(f"{len(rows)} session(s).", err=True)


@click.command()
@click.option("--programme", default=None, help="Report on a programme (its window plus the grace period).")
@click.option("--period", default=None, help="Report on 2026, 2026-Q4 or 2026-01-01..2026-06-30.")
@click.option("--township", default=None, help="Only this township's sites and members.")
@click.option("--member", "member_no", default=None, help="One member's record (lessons and classes, with dates).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="xlsx", show_default=True)
@click.option("--table", default=None,
              help="For CSV, which table: county, townships, sites (default for a report), members, "
                   "sites_without_class, untrained; lessons or classes for a member.")
@click.option("--lang", type=LANGUAGE, default="zh_CN", show_default=True,
              help="Language of headers: zh_CN or en.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (default: report-<period>.<format> in the current folder; - for stdout).")
def report(programme: Optional[str], period: Optional[str], township: Optional[str], member_no: Optional[str],
           fmt: str, table: Optional[str], lang: str, output: Optional[Path]) -> None:
    """Participation report of a programme or period, or a member's record (XLSX, CSV, JSON).

    Participation report of a programme or period (county, townships, sites, members, sites without a
    class, members untrained this year), or one member's record, as XLSX, CSV or JSON."""
    from server.attendance import report_export, reports

    if bool(programme) == bool(period):
        raise click.UsageError("Give exactly one of --programme 2026-Q4 or --period 2026-Q4.")
    services = load_services()
    initialised(services)
    label = programme or period
    with api_errors(), services.db.session() as session:
        if member_no:
            record = reports.member_record(session, member_no, label, services.rules, programme=bool(programme))
            tables, meta = report_export.record_tables(record), report_export.record_meta(record, label)
            stem = f"member-{member_no}-{label}"
        else:
            result = reports.participation(session, label, services.rules, township=township, now=services.clock(),
                                           programme=bool(programme))
            tables, meta = report_export.tables(result), report_export.report_meta(result)
            stem = f"report-{label}" + (f"-{township}" if township else "")
    if fmt == "csv" and table is None and not member_no:
        table = "sites"
    try:
        data, _media = report_export.render(tables, meta, fmt, table=table, language=lang)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if output is not None and str(output) == "-":
        sys.stdout.buffer.write(data)
        return
    path = output or Path(f"{stem}{'-' + table if fmt == 'csv' and table else ''}.{fmt}".replace("/", "_"))
    path.write_bytes(data)
    click.echo(f"Wrote {path} ({len(data)} bytes).")
