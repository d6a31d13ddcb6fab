"""The ``lessoncast`` command. Subcommands are imported only when called, so a device that installed
``lessoncast[agent]`` runs ``lessoncast agent ...`` without Flask or the media stack."""

from __future__ import annotations

import importlib
import os

import click

from lessoncast import __version__

# name -> (module, attribute, one-line help). Help is here so `lessoncast --help` imports nothing else.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "agent": ("device_agent.cli", "agent", "The device agent: enrol, run, status, sideload packs."),
    "run": ("server.cli.stack", "run",
            "Start the whole stack: broker, worker, ingest and web (nginx and gunicorn), supervised until Ctrl-C."),
    "init": ("server.cli.stack", "init",
             "Create the data directory, migrate the database, and create the first admin account."),
    "config": ("server.cli.stack", "config",
               "Print every setting with its effective value (secrets masked) and where it came from."),
    "doctor": ("server.cli.doctor", "doctor",
               "Check this deployment (database, Redis, broker, media store, ffmpeg, keys, permissions, ports) in "
               "plain words."),
    "token": ("server.cli.stack", "token", "Create, list and revoke API tokens."),
    "import": ("server.cli.stack", "import_media",
               "Import every media file under PATHS (files or folders); each file's name becomes its lesson title."),
    "lesson": ("server.cli.stack", "lesson", "Look at lessons and their renditions."),
    "db": ("server.cli.stack", "db", "Database migrations."),
    "web": ("server.cli.stack", "web",
            "Run the web server in the foreground (gunicorn, gthread workers, on HOST:PORT without nginx)."),
    "worker": ("server.cli.stack", "worker", "Run the job worker in the foreground (huey consumer plus lease reaper)."),
    "broker": ("server.cli.stack", "broker",
               "Write the Mosquitto config into the data directory and run Mosquitto in the foreground."),
    "ingest": ("server.cli.ingest", "ingest",
               "Run the event ingest in the foreground: store device events and status, and acknowledge them."),
    "import-events": ("server.cli.ingest", "import_events",
                      "Import device events a radio wrote onto a USB stick or SD card."),
    "org": ("server.cli.org", "org",
            "Import and list townships, sites, groups and members (CSV from Excel, GBK or UTF-8)."),
    "device": ("server.cli.devices", "device", "Add, import, list and revoke devices; print enrolment codes."),
    "agent-release": ("server.cli.agent_releases", "agent_release",
                      "Agent releases: the device agent's wheel and its dependencies, signed as TUF targets."),
    "rollout": ("server.cli.agent_releases", "rollout",
                "Roll an agent release out in stages, with success and error thresholds."),
    "keys": ("server.cli.trust", "keys", "The county's TUF signing keys: create them, check expiry, rotate the root."),
    "programme": ("server.cli.programmes", "programme", "Create and look at programmes (quarters and campaigns)."),
    "publish": ("server.cli.programmes", "publish",
                "Publish draft programme REF (code or id): show the preview, then sign and notify every device."),
    "pack": ("server.cli.trust", "pack",
             "Write a sideload pack for CHANNEL to OUT: signed metadata, manifest and media, FAT32-safe."),
    "attendance": ("server.cli.attendance", "attendance",
                   "Rebuild attendance from the stored events, import class rosters, list class sessions."),
    "demo": ("server.cli.demo", "demo_command",
             "Build a demo county (organisation, devices, spoken lessons, a published quarter) and run it with a "
             "simulated fleet."),
    "simulate": ("device_agent.fleet.cli", "simulate",
                 "Run N simulated devices (the agent's own code, one event loop) against a running lessoncast."),
    "report": ("server.cli.attendance", "report",
               "Participation report of a programme or period, or a member's record (XLSX, CSV, JSON)."),
    "training": ("server.cli.training", "training",
                 "Study hours against quotas, off-system training rosters, certificates."),
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when that subcommand runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str):
        if name not in COMMANDS:
            return None
        module_name, attr, _help = COMMANDS[name]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            extra = "agent" if module_name.startswith("device_agent") else "server"
            raise click.ClickException(
                f"'lessoncast {name}' needs {exc.name}, which is not installed. "
                f"Install it with: pip install 'lessoncast[{extra}]'") from None
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Listing the commands must not import them all: the help text lives in COMMANDS.
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][2]) for name in self.list_commands(ctx)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lessoncast")
def main() -> None:
    """lessoncast: party lessons to radios and village terminals, and attendance from what they played.

    Settings come from LESSONCAST_* environment variables or the instance config file; see 'lessoncast config'.
    """
    if click.get_current_context().invoked_subcommand != "agent":
        # The server's data holds members' names, secrets and keys: every file a server process (and the broker,
        # web server and workers it starts) creates is its owner's only - the database and its -wal/-shm, the job
        # queue, logs, broker persistence. The device agent keeps its own rules.
        os.umask(0o077)
