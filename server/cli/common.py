"""What the server's commands share: loading the services, initialising the instance, and turning a service's
refusal into a CLI error (the one place that does)."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

import click

from server import settings as settings_mod
from server.errors import DomainError
from server.instance import initialise
from server.keyfiles import write_private
from server.services import Services


def load_services() -> Services:
    """The Services of this command, from the settings; a bad setting is a CLI error naming it."""
    try:
        return Services(settings_mod.load())
    except settings_mod.SettingsError as exc:
        raise click.ClickException(str(exc)) from None


SECRETS_FILE = "one-time-secrets.txt"


def initialised(services) -> None:
    """Initialise the instance (idempotent) and show the one-time secrets it created, if any."""
    result = initialise(services)
    secrets: list[str] = []
    if result.admin_password:
        secrets += ["First admin account created. Its password is shown only this once:",
                    f"    user: admin    password: {result.admin_password}"]
    if result.root_key and result.root_passphrase:
        secrets += [f"The passphrase of the root key {result.root_key} (shown only this once):",
                    f"    passphrase: {result.root_passphrase}"]
    if secrets:
        _tell_secrets(services, secrets)
    if result.root_key:
        click.secho("The county's signing keys were created. The root key signs only key changes and belongs OFFLINE:",
                    fg="yellow", err=True)
        click.secho(f"    root key: {result.root_key}", fg="yellow", bold=True, err=True)
        click.secho("    Copy it (and its passphrase) to a USB stick kept in the office safe, then delete it here. "
                    "You need it again only for 'lessoncast keys rotate-root'.", fg="yellow", err=True)


def _tell_secrets(services, lines: list[str]) -> None:
    """Show one-time secrets on the terminal only. Without one (a service, output sent to a log file) they go to a
    file only this account can read, and the output says where: a log file must never hold them."""
    if sys.stderr.isatty():
        for line in lines:
            click.secho(line, fg="yellow", bold=line.startswith("    "), err=True)
        return
    path = services.data / SECRETS_FILE
    before = path.read_text(encoding="utf-8") if path.exists() else ""
    write_private(path, before + "\n".join(lines) + "\n")
    click.secho(f"One-time secrets (the first admin's password, the root key's passphrase) were written to {path}, "
                "readable only by this account: read them, keep them safe, then delete the file.", fg="yellow",
                err=True)


@contextmanager
def api_errors() -> Iterator[None]:
    """Turn a service's refusal (any DomainError) into a CLI error that says what to do: the one place that does."""
    try:
        yield
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
