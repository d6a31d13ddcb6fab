"""``lessoncast agent``: enrol a device, run it, look at its state, and exchange packs and events on a USB stick."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

import click

DEFAULT_DIR = "/var/lib/lessoncast-agent"


def _store(data_dir: str):
    from device_agent.store import AgentStore

    return AgentStore(Path(data_dir))


data_option = click.option("--data", "data_dir", envvar="LESSONCAST_AGENT_DIR", default=DEFAULT_DIR,
                           show_default=True, help="The agent's data directory (credentials, media, outbox).")


@click.group()
def agent() -> None:
    """The device agent: enrol, run, status, sideload packs."""


hal_option = click.option("--hal", type=click.Choice(["sim", "linux"]), default="linux", show_default=True,
                          help="Real hardware (linux) or the simulated one (sim: tests and demos on a laptop).")


@agent.command("enrol")
@click.option("--server", default=None,
              help="The county server, e.g. http://192.168.1.10:8750. Not needed when --code is a scanned label, "
                   "which names its server.")
@click.option("--code", required=True,
              help="The one-time enrolment code printed for this device (K7QX-M3TD-WA9F), or the text scanned from "
                   "its label's QR code (lessoncast:enrol?server=...&code=...).")
@click.option("--hal", type=click.Choice(["sim", "linux"]), default="linux", show_default=True,
              help="The hardware the agent will run with (sim on a laptop); the start command printed names it.")
@data_option
def enrol_cmd(server: str | None, code: str, hal: str, data_dir: str) -> None:
    """Exchange the enrolment code for this device's credentials and the county's trusted root."""
    from device_agent.enrol import EnrolError, enrol
    from playlists.enrol_label import read_label

    try:
        label = read_label(code)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--code") from None
    server = server or label.server
    if not server:
        raise click.UsageError("Give --server (the county server's address), or scan the label's QR code, "
                               "which names it.")
    try:
        answer = enrol(_store(data_dir), server, label.code)
    except EnrolError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Enrolled as {answer['device']} ({answer['kind']}), channel {answer['channel']}. "
               f"Start it with: {start_command(hal, data_dir)}")


def start_command(hal: str, data_dir: str) -> str:
    """The command that starts the agent just enrolled: with --hal sim when it runs on simulated hardware."""
    return "lessoncast agent run " + ("--hal sim " if hal == "sim" else "") + f"--data {data_dir}"


def _hardware(hal: str, kind: str, store, speed: float, checkin_device=None):
    if hal == "sim":
        from datetime import datetime, timezone

        from firmware_stub.sim import SimClock, sim_hardware

        from firmware_stub.linux import ConsoleDisplay

        hw = sim_hardware(kind, store.media_dir, clock=SimClock(datetime.now(timezone.utc), speed=speed))
        hw.display = ConsoleDisplay()  # the simulated device's status line goes to the log, where you can see it
        return hw
    from firmware_stub.linux import linux_hardware

    return linux_hardware(kind, store.media_dir, checkin_device=checkin_device)


@agent.command("run")
@hal_option
@click.option("--speed", type=float, default=1.0, help="Simulated clock speed (sim only).")
@click.option("--checkin-device", default=None, envvar="LESSONCAST_AGENT_CHECKIN_DEVICE",
              help="Input device of a card or QR reader (linux only), e.g. /dev/input/by-id/usb-reader-event-kbd.")
@data_option
def run_cmd(hal: str, speed: float, checkin_device, data_dir: str) -> None:
    """Run the agent until SIGTERM or Ctrl-C."""
    from device_agent.agent import Agent, AgentOptions

    logging.basicConfig(level=os.environ.get("LESSONCAST_LOG_LEVEL", "INFO"),
                        format="%(asctime)s agent %(levelname)s %(message)s")
    store = _store(data_dir)
    if not store.enrolled():
        raise click.ClickException(f"No credentials in {data_dir}: run 'lessoncast agent enrol' first.")
    hw = _hardware(hal, store.credentials()["kind"], store, speed, checkin_device)
    stop = threading.Event()
    reboot = (lambda: os.system("systemctl reboot")) if hal == "linux" else (lambda: None)
    options = AgentOptions()
    if os.environ.get("LESSONCAST_AGENT_TEST_FAST"):  # the end-to-end tests shorten every timer
        from device_agent.link import LinkOptions

        options = AgentOptions(tick_s=float(os.environ.get("LESSONCAST_AGENT_TICK", "1.0")),
                               progress_interval_s=float(os.environ.get("LESSONCAST_AGENT_PROGRESS", "60")),
                               resend_after_s=float(os.environ.get("LESSONCAST_AGENT_RESEND", "30")),
                               link=LinkOptions(backoff_base_s=0.2, backoff_cap_s=2.0))
    lock = _single_agent_lock(store)
    updates = None
    if os.environ.get(INSTALL_DIR_ENV):
        from device_agent.update import InstallDir, SelfUpdate, running_version

        updates = SelfUpdate(store, InstallDir(Path(os.environ[INSTALL_DIR_ENV])), running_version())
    device = Agent(store, hw, options, reboot=reboot, updates=updates)

    def shutdown(*_args) -> None:
        stop.set()
        device.wake.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, shutdown)
    if hal == "sim":
        _keypad(device, keypad_source(sys.stdin))
    device.run(stop)
    lock.close()
    sys.exit(device.exit_code)


INSTALL_DIR_ENV = "LESSONCAST_AGENT_INSTALL_DIR"


def _single_agent_lock(store):
    """Hold the data directory's lock for this process's life: a second agent on the same data refuses to start."""
    import fcntl

    store.root.mkdir(parents=True, exist_ok=True)
    handle = open(store.root / "agent.lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise click.ClickException(f"Another agent is running on {store.root}: a device runs one agent at a time "
                                   "(stop it, or use its launcher).") from None
    return handle


@agent.command("launch", context_settings={"ignore_unknown_options": True})
@click.option("--install", "install_dir", envvar=INSTALL_DIR_ENV, required=True,
              help="The install directory holding releases/ and the 'current' symlink.")
@click.option("--trial-s", type=float, default=300.0, show_default=True,
              help="Seconds a new release has to connect and sync before it is rolled back.")
@click.option("--restart-s", type=float, default=5.0, show_default=True,
              help="Seconds to wait before starting an agent that crashed again.")
@data_option
@click.argument("run_args", nargs=-1, type=click.UNPROCESSED)
def launch_cmd(install_dir: str, trial_s: float, restart_s: float, data_dir: str, run_args) -> None:
    """Run current/bin/lessoncast agent run RUN_ARGS, into new releases, rolling back one that fails its trial."""
    from device_agent.launcher import launch

    logging.basicConfig(level=os.environ.get("LESSONCAST_LOG_LEVEL", "INFO"),
                        format="%(asctime)s launcher %(levelname)s %(message)s")
    launch(Path(install_dir), Path(data_dir), [*run_args, "--data", data_dir], trial_s, restart_s)


SIM_KEYS = {"p": "play_pause", "n": "next", "b": "previous", "m": "menu", "+": "volume_up", "-": "volume_down"}


def keypad_source(stdin) -> str:
    """Where simulated key presses come from: "terminal", "pipe" (a script feeding stdin), or "none" (stdin is
    /dev/null or a file, as under systemd: nothing will ever be typed)."""
    import stat

    try:
        if stdin.isatty():
            return "terminal"
        mode = os.fstat(stdin.fileno()).st_mode
    except (OSError, ValueError, AttributeError):
        return "none"
    return "pipe" if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) else "none"


KEYPAD_HINTS = {
    "terminal": "Simulated keys: p play/pause, n next, b back, m menu, + and - volume (then Enter).",
    "pipe": "Simulated keys are read from the pipe on stdin: p play/pause, n next, b back, m menu, + and - volume, "
            "one line at a time.",
    "none": "stdin is not a terminal or a pipe, so the simulated keypad gets no keys. Run this in a terminal and "
            "type p + Enter to play, or pipe keys in (printf 'p\\n' | lessoncast agent run --hal sim ...).",
}


def _keypad(device, source: str) -> None:
    """With simulated hardware, the terminal (or a pipe) is the keypad: p, n, b, m, + and - then Enter."""
    click.echo(KEYPAD_HINTS[source], err=True)
    if source == "none":
        return

    def read() -> None:
        for line in sys.stdin:
            for char in line.strip():
                if char in SIM_KEYS:
                    device.hw.keys.press(SIM_KEYS[char])
                    device.wake.set()

    threading.Thread(target=read, name="sim-keypad", daemon=True).start()


@agent.command("unit")
def unit_cmd() -> None:
    """Print the systemd unit (lessoncast agent unit | sudo tee /etc/systemd/system/lessoncast-agent.service)."""
    from importlib.resources import files

    click.echo(files("device_agent").joinpath("systemd/lessoncast-agent.service").read_text(encoding="utf-8"),
               nl=False)


@agent.command("status")
@data_option
def status_cmd(data_dir: str) -> None:
    """Print the local state: programme, files, outbox depth, last sync."""
    from playlists.manifest import media_of, parse_manifest

    from device_agent.outbox import Outbox
    from device_agent.sync import metadata_expiry

    store = _store(data_dir)
    if not store.enrolled():
        raise click.ClickException(f"No credentials in {data_dir}: this device is not enrolled.")
    creds = store.credentials()
    click.echo(f"device    {creds['device']} ({creds.get('kind')})")
    config = store.read_json("config.json") or {}
    click.echo(f"channel   {config.get('channel')}")
    data = store.current_manifest()
    if data is None:
        click.echo("programme none verified yet")
    else:
        manifest = parse_manifest(data)
        files = media_of(manifest)
        present = sum(1 for item in files.values() if store.has_media(item.path))
        codes = ", ".join(p.code for p in manifest.programmes)
        click.echo(f"programme manifest v{manifest.version} ({codes}), {len(manifest.items)} items, "
                   f"{present}/{len(files)} files present")
    expiry = metadata_expiry(store)
    click.echo(f"metadata  expires {expiry.isoformat() if expiry else 'unknown'}")
    outbox = Outbox(store.outbox_path)
    click.echo(f"outbox    {outbox.depth()} events waiting (epoch {outbox.epoch})")
    outbox.close()
    usage = store.read_json("data_usage.json") or {}
    for month, count in usage.items():
        click.echo(f"data      {count / 1e6:.1f} MB downloaded in {month}")


@agent.command("import-pack")
@click.argument("pack", type=click.Path(exists=True, path_type=Path))
@data_option
def import_pack_cmd(pack: Path, data_dir: str) -> None:
    """Load a sideload pack (directory or .tar) after full verification, and write pending events beside it.

    With LESSONCAST_AGENT_INSTALL_DIR set, an agent release the pack carries for this device is installed too; the
    agent switches to it at its next start.
    """
    from device_agent.sideload import import_pack

    store = _store(data_dir)
    updates = None
    if os.environ.get(INSTALL_DIR_ENV):
        from device_agent.update import InstallDir, SelfUpdate, running_version

        updates = SelfUpdate(store, InstallDir(Path(os.environ[INSTALL_DIR_ENV])), running_version())
    try:
        result = import_pack(store, pack, updates=updates)
    except Exception as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(result, ensure_ascii=False))
