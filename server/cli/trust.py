"""``lessoncast keys`` (the county's signing keys) and ``lessoncast pack`` (sideload packs for offline devices)."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from pathlib import Path

import click

from server.cli.common import load_services


def _passphrase(services, prompt: str = "Root key passphrase") -> str:
    from server.programmes.trust import root_passphrase

    return root_passphrase(services) or click.prompt(prompt, hide_input=True)


@click.group()
def keys() -> None:
    """The county's TUF signing keys: create them, check expiry, rotate the root."""


@keys.command("init")
def keys_init() -> None:
    """Create the root key (passphrase-protected, for offline storage) and the online keys."""
    from playlists.trust import TrustError
    from server.programmes import trust as trust_service

    services = load_services()
    passphrase = trust_service.root_passphrase(services) or click.prompt(
        "Passphrase for the new root key", hide_input=True, confirmation_prompt=True)
    try:
        trust_service.create_keys(services, passphrase)
    except TrustError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Keys created. The root key is {trust_service.root_key_path(services)}: copy it to offline storage "
               "(a USB stick in the office safe) and delete it here; you need it only to rotate keys.")


@keys.command("status")
def keys_status() -> None:
    """Show each role's version and expiry, and warn 30 days ahead."""
    from server.programmes import trust as trust_service

    services = load_services()
    if not trust_service.initialised(services):
        raise click.ClickException("No keys yet: run 'lessoncast keys init'.")
    repo = trust_service.repository(services)
    v = repo.current_versions()
    click.echo(f"root v{v.root}, targets v{v.targets}, snapshot v{v.snapshot}, timestamp v{v.timestamp}")
    root_key = trust_service.root_key_path(services)
    if root_key.exists():
        click.secho(f"The root key is still on this machine ({root_key}): move it offline.", fg="yellow")
    warnings = trust_service.warnings(services)
    for warning in warnings:
        click.secho(f"warning: {warning}", fg="yellow")
    if not warnings:
        click.echo("No key or metadata expires within 30 days.")


@keys.command("rotate-root")
@click.option("--keep-online-keys", is_flag=True, help="Rotate only the root key, not the online keys.")
def keys_rotate_root(keep_online_keys: bool) -> None:
    """Make a new root (signed by the old root key and the new one); devices follow it on their next refresh."""
    from playlists.trust import TrustError
    from server.programmes import trust as trust_service

    services = load_services()
    if not trust_service.root_key_path(services).exists():
        raise click.ClickException(f"Put the offline root key back at {trust_service.root_key_path(services)} "
                                   "first (it is needed to sign the new root).")
    passphrase = _passphrase(services)
    try:
        version = trust_service.repository(services).rotate_root(
            passphrase, now=services.clock(), rotate_online=not keep_online_keys)
    except TrustError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Root rotated to version {version}. Move the root key offline again.")


def channel_acks(services, channel: str, now) -> tuple[str, bytes]:
    """The signed-acks target of a channel: what the server has stored of each of its devices' events."""
    from sqlalchemy import select

    from playlists.manifest import canonical_json, format_utc
    from server.devices.models import Device
    from server.events.ingest import acks_for_devices

    with services.db.session() as session:
        uids = session.scalars(select(Device.uid).where(Device.channel == channel)).all()
        acks = acks_for_devices(session, uids)
    return f"channels/{channel}/acks.json", canonical_json({"channel": channel, "issued_at": format_utc(now),
                                                            "acks": acks})


def channel_agent_files(services, channel: str) -> list:
    """The agent release targets for the channel's devices that are in a started rollout stage."""
    from sqlalchemy import select

    from server.agent_releases.rollouts import pack_files
    from server.devices.models import Device

    with services.db.session() as session:
        uids = session.scalars(select(Device.uid).where(Device.channel == channel)).all()
    return pack_files(services, list(uids))


@click.command()
@click.option("--channel", required=True, help="The channel to pack (see GET /api/v1/channels).")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--tar", "as_tar", is_flag=True, help="Write one .tar file instead of a directory.")
def pack(channel: str, out: Path, as_tar: bool) -> None:
    """Write a sideload pack for CHANNEL to OUT: signed metadata, manifest and media, FAT32-safe.

    Its signatures stay valid until the end of the programmes' windows plus the attendance grace period, so a boat
    that loads it weeks before sailing can still verify it at sea.
    """
    from playlists.manifest import media_of, parse_manifest
    from playlists.packs import write_pack
    from playlists.trust import TrustError
    from server.programmes import trust as trust_service
    from server.programmes.models import Channel
    from server.programmes.publish import manifest_target

    services = load_services()
    with services.db.session() as session:
        row = session.get(Channel, channel)
        if row is None or not row.manifest:
            raise click.ClickException(f"Channel {channel} has no published manifest. Publish a programme first.")
        manifest_bytes = row.manifest
    manifest = parse_manifest(manifest_bytes)
    if not manifest.programmes:
        raise click.ClickException(f"Channel {channel} has nothing to play; there is nothing to pack.")
    last_day = max(p.valid_until for p in manifest.programmes)
    grace = services.settings.attendance_grace_days
    expires = datetime.combine(last_day + timedelta(days=grace + 1), time(), tzinfo=timezone.utc)
    media = []
    for item in media_of(manifest).values():
        sha, _, ext = item.path.rpartition("/")[2].partition(".")
        path = services.media.path(sha, ext)
        if path is None:
            raise click.ClickException(f"Media file {item.path} is missing from the store; the pack would not play.")
        media.append((item.path, path))
    repo = trust_service.repository(services)
    now = services.clock()
    acks_target, acks_bytes = channel_acks(services, channel, now)
    agent = channel_agent_files(services, channel)
    try:
        repo.add_files({acks_target: acks_bytes}, now=now)  # signed, so a forged stick cannot delete events
        metadata = repo.signed_versions_for_pack(now=now, expires=expires)
        written = write_pack(out, channel=channel, metadata=metadata, manifest_target=manifest_target(channel),
                             manifest_bytes=manifest_bytes, media=media, as_tar=as_tar,
                             acks=(acks_target, acks_bytes), agent=agent)
    except TrustError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        # The pack's long-lived versions must not stay the online ones: sign fresh short-lived versions on top,
        # so online devices keep their freeze protection (the pack's lower versions still verify offline).
        repo.resign_expiring(now=now, within=timedelta(days=36500))
    size = sum(p.stat().st_size for _, p in media)
    click.echo(f"Pack for {channel}: {len(media)} media files, {size / 1e6:.1f} MB, valid until {expires:%Y-%m-%d}, "
               f"written to {written}")
    if agent:
        click.echo(f"It carries {len(agent)} agent release files for the devices of {channel} in a rollout.")
