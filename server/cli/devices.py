"""``lessoncast device``: add devices (singly or from CSV) with their one-time enrolment codes, list, revoke."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Optional

import click

from server.cli.common import api_errors, initialised, load_services
from server.devices.models import DEVICE_KINDS, DEVICE_STATES
from server.devices.registry import COMMAND_TYPES


@click.group()
def device() -> None:
    """Add, import, list and revoke devices; print enrolment codes."""


@device.command("add")
@click.option("--kind", required=True, type=click.Choice(DEVICE_KINDS), help="What the device is.")
@click.option("--name", required=True, help="A name staff recognise, e.g. '王大爷的收音机' or '东村村部终端'.")
@click.option("--site", default=None, help="Site code; without it the device goes to the county's default site.")
@click.option("--language", default="cmn", show_default=True, help="BCP 47 language tag (cmn, bo, nan, cdo ...).")
@click.option("--group", "groups", multiple=True, help="Group key the device belongs to (repeatable).")
@click.option("--member", default=None, help="Member id holding this radio from today.")
@click.option("--id", "uid", default=None, help="Device id to use (default: generated, e.g. r-3f9a1c2b7d).")
def device_add(kind: str, name: str, site: Optional[str], language: str, groups: tuple[str, ...],
               member: Optional[str], uid: Optional[str]) -> None:
    """Add a device. The last line printed is its one-time enrolment code."""
    from server.devices import registry as devices

    services = load_services()
    initialised(services)
    with api_errors(), services.db.session() as session:
        new = devices.add(services, session, kind=kind, name=name, site_code=site, language=language,
                          groups=groups, member_no=member, uid=uid, actor="cli")
    click.echo(f"Added {new.kind} {new.uid} ({new.name}) at site {new.site}. Enrolment code:", err=True)
    click.echo(new.code)


@device.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--codes", "codes_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the enrolment codes to this CSV (default: print them).")
def device_import(file: Path, codes_out: Optional[Path]) -> None:
    """Add devices from a CSV (kind,name,site,language,groups,member,id); all or nothing."""
    from server.devices import registry as devices
    from server.org.service import decode_csv

    services = load_services()
    initialised(services)
    with api_errors():
        added = devices.import_csv(services, decode_csv(file.read_bytes()), "cli")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "kind", "name", "site", "enrol_code"])
    for new in added:
        writer.writerow([new.uid, new.kind, new.name, new.site, new.code])
    if codes_out:
        from server.keyfiles import write_private

        write_private(codes_out, out.getvalue())
        click.echo(f"{len(added)} devices added; codes in {codes_out} (keep it safe: each code enrols a device).")
    else:
        click.echo(out.getvalue(), nl=False)


@device.command("list")
@click.option("--site", default=None, help="Only this site's devices.")
@click.option("--state", type=click.Choice(DEVICE_STATES), default=None, help="Only this state.")
def device_list(site: Optional[str], state: Optional[str]) -> None:
    """List devices with their site, state and channel."""
    from sqlalchemy import select

    from server.devices.models import Device
    from server.org.models import Site

    services = load_services()
    with services.db.session() as session:
        query = select(Device).join(Site).order_by(Device.uid)
        if site:
            query = query.where(Site.code == site)
        if state:
            query = query.where(Device.state == state)
        for d in session.scalars(query):
            click.echo(f"{d.uid:<14} {d.kind:<9} {d.state:<9} {d.site.code:<12} {d.language:<6} "
                       f"{d.channel or '-':<20} {d.name}")


@device.command("code")
@click.argument("uid")
def device_code(uid: str) -> None:
    """Issue a new one-time enrolment code for device UID (the old one stops working)."""
    from server.devices import registry as devices

    with api_errors():
        click.echo(devices.reissue_code(load_services(), uid, "cli"))


@device.command("command")
@click.argument("uid")
@click.argument("kind", type=click.Choice(COMMAND_TYPES))
@click.option("--volume", type=click.IntRange(0, 100), default=None, help="For set-volume: 0 to 100.")
@click.option("--programme", default=None, help="For play-now: the programme code.")
@click.option("--position", type=int, default=None, help="For play-now: the item number in the programme.")
def device_command(uid: str, kind: str, volume, programme, position) -> None:
    """Send a command to device UID (it expires after 24 hours if the device stays offline)."""
    from server.devices import registry as devices

    body = {"type": kind, "volume": volume, "programme": programme, "position": position}
    with api_errors():
        sent = devices.send_command(load_services(), uid, {k: v for k, v in body.items() if v is not None}, "cli")
    click.echo(f"Sent {kind} to {uid} as command {sent['id']}.")


@device.command("revoke")
@click.argument("uid")
@click.option("--reason", default="", help="Why (kept in the audit log), e.g. 'lost at sea'.")
def device_revoke(uid: str, reason: str) -> None:
    """Revoke device UID: the broker drops it and refuses its credentials from now on."""
    from server.devices import registry as devices

    with api_errors():
        devices.revoke(load_services(), uid, "cli", reason)
    click.echo(f"{uid} revoked.")
    sys.exit(0)
