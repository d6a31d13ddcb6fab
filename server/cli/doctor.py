"""``lessoncast doctor``: run the deployment checks and print one plain line per finding."""

from __future__ import annotations

import json
import sys

import click

from server.cli.common import LANGUAGE, cli_language, load_services
from server.i18n import translator


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the findings as one JSON document instead of lines.")
@click.option("--lang", "language", type=LANGUAGE, default=None,
              help="Language of the messages: zh_CN (the default) or en. Default: from the locale (LANG).")
def doctor(as_json: bool, language: str | None) -> None:
    """Check this deployment (database, Redis, broker, media store, ffmpeg, keys, permissions, ports) in plain words."""
    from server.health.doctor import FAIL, run_all

    gettext = translator(language or cli_language())
    services = load_services()
    findings = run_all(services)
    rows = []
    for finding in findings:
        values = {k: gettext(v) if k == "what" else v for k, v in finding.values.items()}
        rows.append({"check": finding.check, "status": finding.status,
                     "message": gettext(finding.message) % values if values else gettext(finding.message)})
    failed = any(f.status == FAIL for f in findings)
    if as_json:
        click.echo(json.dumps({"ok": not failed, "instance": str(services.data), "checks": rows},
                              ensure_ascii=False, indent=1))
    else:
        colours = {"ok": "green", "warn": "yellow", "fail": "red"}
        for row in rows:
            click.echo(click.style(f"{row['status']:<4}", fg=colours[row["status"]]) + f"  {row['check']:<12} "
                       + row["message"])
    sys.exit(1 if failed else 0)
