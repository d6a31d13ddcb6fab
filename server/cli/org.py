"""``lessoncast org``: import townships, sites, groups and members from staff CSVs, and list them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import click

from server.cli.common import api_errors, initialised, load_services
from server.org.csv_rows import IMPORT_KINDS


@click.group()
def org() -> None:
    """Import and list townships, sites, groups and members (CSV from Excel, GBK or UTF-8)."""


@org.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--kind", type=click.Choice(IMPORT_KINDS), default=None,
              help="What the file holds; detected from its header when not given.")
def org_import(file: Path, kind: Optional[str]) -> None:
    """Import FILE; every bad row is reported as FILE:LINE and nothing is written unless all rows are good."""
    from server.org import service as org_service

    services = load_services()
    initialised(services)
    data = file.read_bytes()
    try:
        if kind is None:
            kind = org_service.detect_kind(org_service.decode_csv(data))
            click.echo(f"{file}: detected a {kind} file from its header.", err=True)
        result = org_service.import_file(services, data, kind, "cli", file.name)
    except org_service.OrgImportError as exc:
        for error in exc.errors:
            click.echo(f"{file}:{error.line}: {error.field}: {error.message}", err=True)
        click.secho(exc.summary(str(file)), fg="red", err=True)
        sys.exit(1)
    click.echo(f"{kind}: {result.created} created, {result.updated} updated, {result.unchanged} unchanged")


def _table(rows: list[list[str]], headers: list[str]) -> None:
    """Print rows in aligned columns (widths count a Chinese character as two)."""
    import unicodedata

    def width(text: str) -> int:
        return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)

    widths = [max([width(h)] + [width(r[i]) for r in rows]) for i, h in enumerate(headers)]
    for row in [headers] + rows:
        click.echo("  ".join(cell + " " * (w - width(cell)) for cell, w in zip(row, widths)).rstrip())


@org.command("list")
@click.argument("what", type=click.Choice(["townships", "sites", "groups", "members"]), default="sites")
@click.option("--township", default=None, help="Only this township's sites or members (its code).")
@click.option("--site", default=None, help="Only this site's members (its code).")
@click.option("--kind", default=None, help="Only groups of this kind: township, village, branch or special.")
@click.option("--limit", default=200, show_default=True, help="Show at most this many members.")
def org_list(what: str, township: Optional[str], site: Optional[str], kind: Optional[str], limit: int) -> None:
    """List townships, sites (default), groups or members as a table."""
    from server.org import service as org_service

    services = load_services()
    initialised(services)
    with api_errors():
        if what == "townships":
            items = org_service.list_townships(services)
            _table([[t["code"], t["name"], str(t["sites"])] for t in items], ["CODE", "NAME", "SITES"])
        elif what == "sites":
            items = org_service.list_sites(services, township)
            _table([[s["code"], s["name"], s["township"], str(s["members"])] for s in items],
                   ["CODE", "NAME", "TOWNSHIP", "MEMBERS"])
        elif what == "groups":
            items = org_service.list_groups(services, kind)
            _table([[g["key"], g["name"], g["kind"], g["township"] or "-", str(g["sites"]), str(g["members"])]
                    for g in items], ["KEY", "NAME", "KIND", "TOWNSHIP", "SITES", "MEMBERS"])
        else:
            page = org_service.list_members(services, site=site, township=township,
                                            limit=max(1, min(limit, org_service.MEMBER_PAGE_LIMIT)))
            items = page["members"]
            _table([[m["member_id"], m["name"], m["site"], m["branch"] or "-", ";".join(m["flags"]) or "-"]
                    for m in items], ["MEMBER", "NAME", "SITE", "BRANCH", "FLAGS"])
            if page["total"] > len(items):
                click.echo(f"... {page['total'] - len(items)} more; use --site, --township or --limit", err=True)
    if not items:
        click.echo(f"No {what} yet; import them with 'lessoncast org import FILE'.", err=True)
