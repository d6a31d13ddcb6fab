"""What the server's commands share: loading the services, initialising the instance, and turning a service's
refusal into a CLI error (the one place that does)."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator, Mapping, Optional

import click

from server import instance_location
from server import settings as settings_mod
from server.errors import DomainError
from server.i18n import _, normalise, translator
from server.instance import initialise
from server.keyfiles import write_private
from server.services import Services


def cli_language(environ: Optional[Mapping[str, str]] = None) -> str:
    """The language of a command's words: English when the locale says so (LANG=en_US.UTF-8), else zh_CN, the
    default."""
    environ = os.environ if environ is None else environ
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        if environ.get(name):
            return "en" if environ[name].lower().startswith("en") else "zh_CN"
    return "zh_CN"


def say(msgid: str, **values) -> str:
    """MSGID in the command's language (the console's catalogue), with %(name)s VALUES filled in."""
    text = translator(cli_language())(msgid)
    return text % values if values else text


# How long a command that needs the worker waits for the first heartbeat of one that 'lessoncast run' has just
# started (it beats within seconds of starting, more on a loaded machine).
WORKER_START_S = 60.0


def running_worker(services: Services, start_wait_s: float = WORKER_START_S) -> dict:
    """The worker's health (``check_worker``). When no worker is up but a ``lessoncast run`` holds the instance, its
    worker may have been started a moment ago: wait up to START_WAIT_S for its first heartbeat, saying so, rather
    than telling the user to start what they just started."""
    import time

    from server import run_lock
    from server.health.checks import check_worker

    worker = check_worker(services)
    if worker["up"] or run_lock.holder(services.data) is None:
        return worker
    click.echo(say(_("Waiting up to %(seconds)d s for the worker that 'lessoncast run' started…"),
                   seconds=int(start_wait_s)), err=True)
    deadline = time.monotonic() + start_wait_s
    while not worker["up"] and time.monotonic() < deadline:
        time.sleep(0.5)
        worker = check_worker(services)
    return worker


def load_services(require_instance: bool = True) -> Services:
    """The Services of this command, from the settings; a bad setting is a CLI error naming it. A missing instance
    is an error that says where it looked and how to point it, unless REQUIRE_INSTANCE is false (``init`` and
    ``run``, which create it, and ``config``)."""
    try:
        services = Services(settings_mod.load())
    except settings_mod.SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    if require_instance and not instance_location.exists(services.data):
        raise click.ClickException(no_instance_message(services.settings))
    return services


def no_instance_message(settings) -> str:
    """Where a command looked for the instance, and how to point it at one."""
    source = settings.sources["data_dir"]
    hint = say(_("Commands other than 'lessoncast init' and 'lessoncast run' never create an instance. Point this "
                 "command at yours with %(setting)s=/path/to/instance, or create one with 'lessoncast init'."),
               setting=instance_location.SETTING)
    if source in ("environment", "arguments") or not (source == "default" or source.startswith("recorded")):
        return say(_("No lessoncast instance in %(path)s, where %(setting)s points."), path=settings.data_path,
                   setting=instance_location.SETTING) + " " + hint
    recorded = instance_location.recorded(os.environ)
    return say(_("No lessoncast instance in %(path)s. Looked at: %(setting)s (not set), %(record)s (%(recorded)s), "
                 "then the default %(default)s."),
               path=settings.data_path, setting=instance_location.SETTING,
               record=instance_location.record_path(os.environ),
               recorded=str(recorded) if recorded else say(_("nothing recorded")),
               default=instance_location.default_data_dir(os.environ)) + " " + hint


def remember_instance(services: Services):
    """Record this instance for later commands run from any folder (``init`` and ``run``); the record's path, or
    None when it cannot be written (an account without a home folder: its commands set LESSONCAST_DATA_DIR)."""
    try:
        return instance_location.record(services.data)
    except OSError as exc:
        click.secho(say(_("Could not record this instance in %(record)s (%(error)s): other commands find it only "
                          "with %(setting)s=%(path)s."),
                        record=instance_location.record_path(os.environ), error=exc.strerror or str(exc),
                        setting=instance_location.SETTING, path=services.data), fg="yellow", err=True)
        return None


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


class Language(click.ParamType):
    """A --lang value as lessoncast names it (zh_CN or en), from what a user types (zh, zh-CN, en-US...)."""

    name = "language"

    def convert(self, value, param, ctx) -> str:
        try:
            return normalise(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


LANGUAGE = Language()
