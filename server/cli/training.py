"""``lessoncast training``: study-hours reports and member records, off-system training rosters, certificates."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import click

from server.attendance.report_export import FORMATS
from server.cli.common import LANGUAGE, api_errors, initialised, load_services


@click.group()
def training() -> None:
    """Study hours against quotas, off-system training rosters, certificates."""


def _write(data: bytes, output: Optional[Path], default: str) -> None:
    if output is not None and str(output) == "-":
        sys.stdout.buffer.write(data)
        return
    path = output or Path(default.replace("/", "_"))
    path.write_bytes(data)
    click.echo(f"Wrote {path} ({len(data)} bytes).")


@training.command("hours")
@click.option("--year", required=True, type=int, help="The year, e.g. 2026.")
@click.option("--township", default=None, help="Only this township's sites and members.")
@click.option("--member", "member_no", default=None, help="One member's hours, with every source and its date.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="xlsx", show_default=True,
              help="File format.")
@click.option("--table", default=None, help="For CSV, which table: county, townships, sites, members (default), "
                                            "below_quota; member or sources for --member.")
@click.option("--lang", type=LANGUAGE, default="zh_CN", show_default=True,
              help="Language of headers: zh_CN or en.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (default: study-hours-<year>.<format> in the current folder; - for stdout).")
def hours_cmd(year: int, township: Optional[str], member_no: Optional[str], fmt: str, table: Optional[str],
              lang: str, output: Optional[Path]) -> None:
    """Study-hours report of a year (members against quota, below quota, sites, townships), or one member's."""
    from server.accounts.scope import COUNTY
    from server.attendance import report_export
    from server.training import hours, hours_export

    services = load_services()
    initialised(services)
    hrules = hours.hour_rules_from(services.settings)
    with api_errors(), services.db.session() as session:
        year = hours.parse_year(year)
        if member_no:
            record = hours.member_hours(session, member_no, year, services.rules, hrules, COUNTY)
            tables, meta, stem = hours_export.record_tables(record), {"member_no": member_no, "period": str(year)}, \
                f"study-hours-{member_no}-{year}"
            table = table or ("sources" if fmt == "csv" else None)
        else:
            result = hours.collect(session, year, services.rules, hrules, township=township, now=services.clock())
            tables, meta = hours_export.tables(result), hours_export.meta(result)
            stem = f"study-hours-{year}" + (f"-{township}" if township else "")
            table = table or ("members" if fmt == "csv" else None)
    try:
        data, _media = report_export.render(tables, meta, fmt, table=table, language=lang)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    _write(data, output, f"{stem}{'-' + table if fmt == 'csv' and table else ''}.{fmt}")


@training.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--actor", default="cli", show_default=True, help="Who is importing (recorded in the audit log).")
def import_cmd(csv_file: Path, actor: str) -> None:
    """Import off-system trainings: columns member, title, date, hours (党员编号, 培训名称, 日期, 学时)."""
    from server.accounts.scope import COUNTY
    from server.org.csv_rows import OrgImportError, decode_csv
    from server.training import trainings

    services = load_services()
    initialised(services)
    try:
        text = decode_csv(csv_file.read_bytes())
    except OrgImportError as exc:
        raise click.ClickException(exc.summary(csv_file.name)) from None
    with api_errors(), services.db.session() as session:
        rows = trainings.parse_roster(text, csv_file.name)
        result = trainings.add_trainings(session, rows, COUNTY, actor, services.clock(), csv_file.name)
    click.echo(f"{csv_file}: {result['added']} training(s) added, {result['updated']} updated.")


@training.command("logbook")
@click.option("--site", "site_code", required=True, help="The site's code.")
@click.option("--month", required=True, help="The month, e.g. 2026-10.")
@click.option("--format", "fmt", type=click.Choice([*FORMATS, "html"]), default="xlsx", show_default=True,
              help="File format: XLSX (one sheet per book), CSV (one book), JSON, or HTML (A4 print pages).")
@click.option("--table", default=None, help="For CSV, which book: viewing (default), operating, equipment, "
                                            "roster, feedback.")
@click.option("--lang", type=LANGUAGE, default="zh_CN", show_default=True,
              help="Language of headers: zh_CN or en.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (default: logbook-<site>-<month>.<format>; - for stdout).")
def logbook_cmd(site_code: str, month: str, fmt: str, table: Optional[str], lang: str,
                output: Optional[Path]) -> None:
    """A site's logbooks (四簿一册) of a month, as GET /api/v1/sites/<site>/logbook gives them."""
    from server.accounts.scope import COUNTY
    from server.attendance import report_export
    from server.training import hours, logbooks, printing

    services = load_services()
    initialised(services)
    with api_errors(), services.db.session() as session:
        tables, meta = logbooks.logbook(session, site_code, month, services.rules,
                                        hours.hour_rules_from(services.settings), COUNTY, lang)
    stem = f"logbook-{site_code}-{month}"
    if fmt == "html":
        _write(printing.logbook_html(tables, meta, lang).encode(), output, f"{stem}.html")
        return
    table = table or ("viewing" if fmt == "csv" else None)
    try:
        data, _media = report_export.render(tables, meta, fmt, table=table, language=lang)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    _write(data, output, f"{stem}{'-' + table if fmt == 'csv' and table else ''}.{fmt}")


@training.command("certificates")
@click.option("--programme", required=True, help="The programme's (or campaign's) code.")
@click.option("--site", default=None, help="Only this site's members (required with --print).")
@click.option("--hours", "min_hours", type=float, default=None,
              help="Issue to members with at least these study hours in the programme's dates, instead of to those "
                   "who completed every mandatory lesson.")
@click.option("--print", "print_to", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also print the site's batch to this HTML file (A4 pages); each print is counted.")
@click.option("--lang", type=LANGUAGE, default="zh_CN", show_default=True, help="Language of the pages.")
def certificates_cmd(programme: str, site: Optional[str], min_hours: Optional[float], print_to: Optional[Path],
                     lang: str) -> None:
    """Issue training certificates of a programme to the members who completed it and have none, and optionally
    print a site's batch (the same service as POST /api/v1/certificates and .../certificates/print)."""
    from server.accounts.scope import COUNTY
    from server.training import certificates, hours, printing, trainings

    if print_to is not None and not site:
        raise click.UsageError("--print needs --site: a batch is printed per site.")
    services = load_services()
    initialised(services)
    with api_errors(), services.db.session() as session:
        if min_hours is not None:
            min_hours = trainings.check_hours(min_hours, "--hours")
        issued = certificates.issue(session, programme, services.rules, hours.hour_rules_from(services.settings),
                                    COUNTY, "cli", services.clock(), site=site, min_hours=min_hours)
        click.echo(f"{len(issued)} certificate(s) issued: {', '.join(c.number for c in issued) or '-'}.")
        if print_to is not None:
            certs = certificates.batch_for_print(session, COUNTY, programme, site, printed=True)
            page = printing.certificates_html(certs, services.settings.web_url, lang)
    if print_to is not None:
        print_to.write_text(page, encoding="utf-8")
        click.echo(f"Wrote {print_to}: {len(certs)} certificate(s) printed.")


@training.command("makeup-report")
@click.option("--period", default=None, help="Classes of this period (2026-Q4, 2026-11, 2026-11-01..2027-02-28); "
                                             "with it, the participation rate with and without make-ups.")
@click.option("--township", default=None, help="Only this township's sites and members.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="xlsx", show_default=True,
              help="File format.")
@click.option("--table", default=None, help="For CSV, which table: sites (default), owed, participation.")
@click.option("--lang", type=LANGUAGE, default="zh_CN", show_default=True,
              help="Language of headers: zh_CN or en.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (default: makeups[-<period>].<format> in the current folder; - for stdout).")
def makeup_report_cmd(period: Optional[str], township: Optional[str], fmt: str, table: Optional[str], lang: str,
                      output: Optional[Path]) -> None:
    """Make-ups owed, done, late and overdue per site, every owed make-up, and the participation with and without
    make-ups (the same tables as GET /api/v1/reports/makeups)."""
    from server.attendance import report_export, reports
    from server.training import makeup, makeup_export

    services = load_services()
    initialised(services)
    now = services.clock()
    with api_errors(), services.db.session() as session:
        resolved = reports.resolve_period(session, period, services.rules)[0] if period else None
        rows = makeup.owed(session, township=township, period=resolved, rules=services.rules)
        p = makeup.participation(session, resolved, services.rules, now, township=township) if resolved else None
    tables = makeup_export.tables(makeup.by_site(rows, now), rows, now, services.rules.zone,
                                  (resolved.label, p) if p else None)
    meta = makeup_export.meta(resolved.label if resolved else "", township, now)
    table = table or ("sites" if fmt == "csv" else None)
    try:
        data, _media = report_export.render(tables, meta, fmt, table=table, language=lang)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    stem = "makeups" + (f"-{resolved.label}" if resolved else "") + (f"-{township}" if township else "")
    _write(data, output, f"{stem}{'-' + table if fmt == 'csv' and table else ''}.{fmt}")


@training.command("makeups")
def makeups_cmd() -> None:
    """Record the make-ups of every class that is over and push them to absent members' radios."""
    from server.training import makeup

    services = load_services()
    initialised(services)
    with api_errors():
        published = makeup.sweep(services, services.clock(), "cli")
    click.echo(f"{len(published)} make-up programme(s) published: {', '.join(published) or '-'}.")
