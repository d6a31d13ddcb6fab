"""``lessoncast ingest`` (the MQTT event ingest) and ``lessoncast import-events`` (events from a USB stick)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from server.cli.common import initialised, load_services


@click.command()
@click.option("--client-id", default=None, metavar="ID",
              help="MQTT client id of this ingest process (default: lessoncast-ingest-HOSTNAME). Keep it the same "
                   "across restarts, so the broker resumes the process's session and what it queued meanwhile; "
                   "give each ingest process on one host its own id, so they share the subscription instead of "
                   "taking over each other's session.")
def ingest(client_id: str | None) -> None:
    """Run the event ingest in the foreground: store device events and status, and acknowledge them."""
    from server.events.ingest_loop import Ingest

    services = load_services()
    logging.basicConfig(level=services.settings.log_level, format="%(asctime)s ingest %(levelname)s %(message)s")
    Ingest(services, client_id=client_id).run()


@click.command("import-events")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def import_events(paths: tuple[Path, ...]) -> None:
    """Import device events a radio wrote onto a USB stick or SD card.

    Import the events radios wrote under PATHS (files, or folders holding *.events.jsonl or
    lessoncast-events/*.jsonl). Importing a file twice stores nothing new."""
    from server.events.batches import EventFileError, find_events_files
    from server.events.ingest import import_events_file

    services = load_services()
    initialised(services)
    files = sorted({f for root in paths for f in find_events_files(root)})
    if not files:
        raise click.ClickException("No events files found (looked for *.events.jsonl and lessoncast-events/*.jsonl).")
    failed = 0
    for path in files:
        try:
            result = import_events_file(services, path)
        except EventFileError as exc:
            failed += 1
            click.secho(str(exc), fg="red", err=True)
            continue
        line = (f"{path}: device {result.device}, stored {result.stored}, duplicates {result.duplicates}, "
                f"acked {result.acked} (epoch {result.epoch})")
        if result.quarantined:
            line += f", quarantined {result.quarantined} (the device is not enrolled)"
        click.echo(line)
    if failed:
        click.secho(f"{failed} of {len(files)} files refused; nothing from them was stored.", fg="red", err=True)
        sys.exit(1)
