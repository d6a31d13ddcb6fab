"""``lessoncast simulate``: a fleet of simulated devices against a running lessoncast."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path

import click

from device_agent.fleet import enrolment, simulator
from device_agent.fleet.behaviour import Habits
from device_agent.fleet.mux import Mux


@click.command("simulate")
@click.option("--server", default=lambda: os.environ.get("LESSONCAST_URL", "http://127.0.0.1:8080"),
              show_default="$LESSONCAST_URL or http://127.0.0.1:8080", help="The lessoncast to enrol with.")
@click.option("--token", envvar="LESSONCAST_TOKEN", required=True,
              help="A staff API token that may add devices and read the organisation ($LESSONCAST_TOKEN); "
                   "create one with 'lessoncast token create --role admin --name simulator'.")
@click.option("--devices", "count", type=click.IntRange(min=0), default=100, show_default=True,
              help="How many new devices to add and enrol (on top of those already in --dir).")
@click.option("--terminal-share", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Share of the new devices that are village terminals (the rest are radios).")
@click.option("--existing", is_flag=True,
              help="Also enrol every device the county registered but nobody enrolled yet (a fresh code each).")
@click.option("--codes", "codes_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A JSON file of {device id: one-time enrolment code} to enrol (what 'lessoncast demo' writes).")
@click.option("--dir", "root", type=click.Path(file_okay=False, path_type=Path), default=Path("fleet"),
              show_default=True, help="Where the devices' stores live; a second run continues the same fleet.")
@click.option("--speed", type=click.FloatRange(min=0.01), default=1.0, show_default=True,
              help="Device clocks run this many times faster than real time (1: the real clock).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every behaviour's choices.")
@click.option("--duration", type=click.FloatRange(min=0), default=0.0,
              help="Stop after this many real seconds (0: run until Ctrl-C).")
@click.option("--sync-threads", type=click.IntRange(min=1), default=8, show_default=True,
              help="Downloads running at once across the fleet.")
@click.option("--plays-per-day", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="How often a member presses play, per device-clock day.")
@click.option("--report-every", type=click.FloatRange(min=0.5), default=10.0, show_default=True,
              help="Real seconds between two progress lines.")
@click.option("--json", "as_json", is_flag=True, help="End with the fleet's summary as one line of JSON.")
def simulate(server, token, count, terminal_share, existing, codes_file, root, speed, seed, duration, sync_threads,
             plays_per_day, report_every, as_json) -> None:
    """Run N simulated devices (the agent's own code, one event loop) against a running lessoncast."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    api = enrolment.StaffApi(server, token)
    root.mkdir(parents=True, exist_ok=True)
    try:
        sites = api.sites()
        stores = enrolment.existing_stores(root)
        codes: list[tuple[str, str]] = []
        if codes_file is not None:
            codes += [(uid, code) for uid, code in json.loads(codes_file.read_text()).items() if uid not in stores]
        if existing:
            codes += [(d["id"], api.new_code(d["id"])) for d in api.devices()
                      if d["state"] not in ("revoked",) and not d.get("enrolled_at") and d["id"] not in stores]
        if count:
            if not sites:
                raise click.ClickException("the county has no sites; import the organisation first "
                                           "('lessoncast org import').")
            terminals = round(count * terminal_share)
            added = enrolment.add_devices(api, count - terminals, terminals, [s["code"] for s in sites])
            codes += [(d["id"], d["enrol_code"]) for d in added]
        began = time.monotonic()
        stores.update(enrolment.enrol_all(root, server, codes, threads=sync_threads))
        click.echo(f"enrolled {len(codes)} devices in {time.monotonic() - began:.0f} s; "
                   f"running {len(stores)} at {speed:g}x")
        site_of = {d["id"]: d["site"] for d in api.devices()}
        members = {s["code"]: tuple(api.members(s["code"])) for s in sites if s.get("members")}
    except enrolment.ApiError as exc:
        raise click.ClickException(str(exc)) from None
    mux = Mux(speed=speed, sync_threads=sync_threads, tick_s=max(10.0, speed))
    signal.signal(signal.SIGTERM, lambda *_: mux.stop_event.set())
    devices = simulator.build(mux, stores.values(), seed=seed, habits=Habits(plays_per_day=plays_per_day),
                              members=members, site_of=site_of,
                              handover=lambda uid, member: mux.pool.submit(_hand_over, api, uid, member))
    started = time.monotonic()
    next_line = [started]

    def report() -> None:
        if time.monotonic() >= next_line[0]:
            next_line[0] += report_every
            click.echo(simulator.progress_line(simulator.summary(devices), time.monotonic() - started))

    try:
        mux.run(until=(lambda: time.monotonic() - started >= duration) if duration else None, on_round=report)
    except KeyboardInterrupt:
        pass
    final = simulator.summary(devices)
    click.echo(simulator.progress_line(final, time.monotonic() - started))
    mux.close()
    if as_json:
        click.echo(json.dumps(final, sort_keys=True))


def _hand_over(api: enrolment.StaffApi, uid: str, member: str) -> None:
    try:
        api.hand_over(uid, member)
    except enrolment.ApiError as exc:  # a left member, a revoked radio: the simulation goes on, the log says why
        logging.getLogger(__name__).warning("handing %s to %s was refused: %s", uid, member, exc)
