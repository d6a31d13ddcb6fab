"""``lessoncast demo``: a living county on a running lessoncast within two minutes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import click
from sqlalchemy import func, select

from server.accounts.auth import create_token
from server.attendance.models import LessonCoverage, SessionAttendee
from server.cli.common import initialised, load_services, running_worker
from server.demo import county as demo
from server.errors import DomainError
from server.events.models import DeviceEvent, DeviceStatus
from server.i18n import _, translator
from server.keyfiles import write_private
from server.org.csv_rows import OrgImportError

SIZES = {"county": demo.CountySize(),
         "small": demo.CountySize(townships=2, sites=4, members=40, radios=8, terminals=2, lessons=2)}


@click.command("demo")
@click.option("--size", type=click.Choice(sorted(SIZES)), default="county", show_default=True,
              help="county: 3 townships, 20 sites, 300 members, 200 radios, 20 terminals, 6 lessons; "
                   "small: a quick one for tests.")
@click.option("--speed", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="The devices' clocks run this many times faster than real time.")
@click.option("--duration", type=click.FloatRange(min=0), default=0.0,
              help="Stop the simulated fleet after this many real seconds (0: run until Ctrl-C).")
@click.option("--report-every", type=click.FloatRange(min=1), default=10.0, show_default=True,
              help="Real seconds between two progress lines.")
def demo_command(size: str, speed: float, duration: float, report_every: float) -> None:
    """Build a demo county (organisation, devices, spoken lessons, a published quarter) and run it with a
    simulated fleet."""
    services = load_services()
    initialised(services)
    worker = running_worker(services)
    if not worker["up"]:
        raise click.ClickException(_say(_("No worker is running (%(error)s). Start 'lessoncast run' in another "
                                          "terminal first, then run 'lessoncast demo' again."),
                                        error=worker["error"]))
    shape = SIZES[size]
    county = demo.DemoCounty()
    try:
        demo.build_org(services, shape, county)
        click.echo(_say(_("organisation: %(sites)d sites, %(members)d members"), sites=len(county.sites),
                     members=sum(len(m) for m in county.members.values())))
        demo.build_devices(services, shape, county)
        click.echo(_say(_("devices: %(radios)d radios and %(terminals)d terminals registered"), radios=shape.radios,
                     terminals=shape.terminals))
        demo.build_lessons(services, shape, county, services.data / "demo" / "speech")
        click.echo(_say(_("lessons: %(n)d imported (%(how)s); waiting for their renditions"), n=len(county.lessons),
                        how=_say(_("Mandarin speech by espeak-ng") if county.speech else _("tone sequences"))))
        demo.wait_ready(services, county.lessons)
        demo.publish_quarter(services, county)
        click.echo(_say(_("programme %(code)s published"), code=county.programme))
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    except OrgImportError as exc:
        raise click.ClickException(exc.summary("demo")) from None
    with services.db.session() as session:
        token = create_token(session, name="demo-simulator", role="admin", township=None, now=services.clock())
    server = f"http://127.0.0.1:{services.settings.port}"
    codes = services.data / "demo" / "codes.json"
    write_private(codes, json.dumps(county.codes))
    argv = [sys.executable, "-m", "lessoncast", "simulate", "--server", server, "--codes", str(codes), "--devices", "0",
            "--dir", str(services.data / "demo" / "fleet"), "--speed", str(speed), "--duration", str(duration),
            "--report-every", str(report_every), "--plays-per-day", "8"]
    env = dict(os.environ, LESSONCAST_TOKEN=token)
    fleet = subprocess.Popen(argv, env=env)
    started = time.monotonic()
    try:
        while fleet.poll() is None:
            time.sleep(min(report_every, 1.0))
            if time.monotonic() - started >= report_every:
                started += report_every
                click.echo(_county_line(services))
    except KeyboardInterrupt:
        fleet.terminate()
    fleet.wait()
    click.echo(_county_line(services))


def _say(message: str, **values) -> str:
    """MESSAGE in the instance's language (zh_CN unless $LESSONCAST_LANGUAGE says en), with VALUES filled in."""
    text = translator(os.environ.get("LESSONCAST_LANGUAGE"))(message)
    return text % values if values else text


def _county_line(services) -> str:
    """What the server sees: devices online, plays stored, members credited, class attendance."""
    with services.db.session() as session:
        online = session.scalar(select(func.count()).select_from(DeviceStatus).where(DeviceStatus.online.is_(True)))
        events = session.scalar(select(func.count()).select_from(DeviceEvent))
        members = session.scalar(select(func.count(func.distinct(LessonCoverage.member_id))))
        attendees = session.scalar(select(func.count()).select_from(SessionAttendee))
    return _say(_("county: %(online)d devices online, %(events)d events stored, %(members)d members credited "
                  "with lessons, %(attendees)d class attendances"), online=online or 0, events=events or 0,
             members=members or 0, attendees=attendees or 0)
