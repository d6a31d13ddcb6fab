"""``lessoncast programme`` and ``lessoncast publish``: make a quarter's programme and publish it to devices."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import click

from server.cli.common import api_errors, initialised, load_services, say
from server.i18n import _


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class SlotType(click.ParamType):
    """A --slot value: HH:MM, then /class or /broadcast, then @days, e.g. 07:00@mon-fri or 19:30/class@sat,sun.

    Only the shape is read here; the time, kind and day names are checked by the programme service, the same rule
    the API and the console apply. Days are comma-separated, and a range like mon-fri counts Monday first.
    """

    name = "slot"

    def convert(self, value, param, ctx):
        """The slot dict the service takes, from one --slot value."""
        if isinstance(value, dict):
            return value
        text, _at, days = str(value).partition("@")
        time_, _slash, kind = text.partition("/")
        slot = {"time": time_, "kind": kind or "broadcast"}
        if _at:
            slot["days"] = [d for part in days.split(",") if part for d in self._expand(part.strip().lower())]
        return slot

    def _expand(self, part: str) -> list[str]:
        from playlists.model import WEEKDAYS

        first, dash, last = part.partition("-")
        if not dash:
            return [part]
        if first not in WEEKDAYS or last not in WEEKDAYS or WEEKDAYS.index(first) > WEEKDAYS.index(last):
            self.fail(say(_("%(part)s is not a range of days such as mon-fri (Monday first)."), part=part))
        return list(WEEKDAYS[WEEKDAYS.index(first):WEEKDAYS.index(last) + 1])


@click.group()
def programme() -> None:
    """Create and look at programmes (quarters and campaigns)."""


@programme.command("create")
@click.option("--code", required=True, help="Short code, e.g. 2026-Q4 or 2026-winter.")
@click.option("--title", required=True, help="Title staff and devices show, e.g. '2026年第四季度党课'.")
@click.option("--from", "valid_from", required=True, help="First day, YYYY-MM-DD.")
@click.option("--until", "valid_until", required=True, help="Last day, YYYY-MM-DD.")
@click.option("--slot", "slots", multiple=True, type=SlotType(),
              help="Terminal slot HH:MM (a broadcast every day); HH:MM/class for a class; add @days for some days "
                   "only: 07:00@mon-fri, 19:30/class@sat,sun (repeatable).")
@click.option("--from-json", "json_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Also take fields (items, slots...) from this JSON file, as the API accepts.")
def programme_create(code: str, title: str, valid_from: str, valid_until: str, slots: tuple[dict, ...],
                     json_file: Optional[Path]) -> None:
    """Create a draft programme; add lessons with 'lessoncast programme add'."""
    from server.programmes import service as programmes

    services = load_services()
    initialised(services)
    data = json.loads(json_file.read_text(encoding="utf-8")) if json_file else {}
    data |= {"code": code, "title": title, "valid_from": valid_from, "valid_until": valid_until}
    if slots:
        data["slots"] = list(slots)
    with api_errors():
        pid = programmes.create(services, data, "cli")
    click.echo(f"Draft {code} created (id {pid}).")


@programme.command("add")
@click.argument("ref")
@click.argument("lesson", type=int)
@click.option("--optional", is_flag=True, help="An optional lesson (members choose it from the menu).")
@click.option("--group", "groups", multiple=True, help="Only for this group key (repeatable; default: everyone).")
@click.option("--variant", "variants", multiple=True, type=int, help="A lesson id in another language (repeatable).")
def programme_add(ref: str, lesson: int, optional: bool, groups: tuple[str, ...], variants: tuple[int, ...]) -> None:
    """Append LESSON to draft programme REF (its code or id)."""
    from server.programmes import service as programmes

    services = load_services()
    with api_errors():
        with services.db.session() as session:
            current = programmes.programme_json(programmes.get(session, ref))
        if current["state"] != "draft":
            raise click.ClickException(say(
                _("%(code)s v%(version)s is %(state)s and cannot change. Make a new draft with 'lessoncast programme "
                  "new-version %(code)s', add the lesson to it ('lessoncast programme add ID %(lesson)s' with the id "
                  "it prints), then publish it."),
                code=current["code"], version=current["version"], state=current["state"], lesson=lesson))
        items = [{"lesson": i["lesson"], "mandatory": i["mandatory"], "groups": i["groups"],
                  "variants": i["variants"]} for i in current["items"]]
        items.append({"lesson": lesson, "mandatory": not optional, "groups": list(groups),
                      "variants": list(variants)})
        programmes.update(services, current["id"], {"items": items}, "cli")
    click.echo(f"{current['code']}: item {len(items)} is lesson {lesson}.")


@programme.command("list")
def programme_list() -> None:
    """List programmes and their versions."""
    from sqlalchemy import select

    from server.programmes.models import Programme

    services = load_services()
    with services.db.session() as session:
        for p in session.scalars(select(Programme).order_by(Programme.code, Programme.version)):
            click.echo(f"{p.id:>4}  {p.code:<14} v{p.version:<3} {p.state:<11} {p.valid_from} – {p.valid_until}  "
                       f"{len(p.items)} items  {p.title}")


@programme.command("new-version")
@click.argument("ref")
def programme_new_version(ref: str) -> None:
    """Copy published programme REF into a new draft; publishing it supersedes the old one."""
    from server.programmes import service as programmes

    with api_errors():
        pid = programmes.new_version(load_services(), ref, "cli")
    click.echo(f"Draft created (id {pid}); edit it, then 'lessoncast publish {pid}'.")


def print_preview(preview: dict) -> None:
    """Print a publish preview for staff."""
    p = preview["programme"]
    if p:
        click.echo(f"Programme {p['code']} v{p['version']}")
    click.echo(f"  devices affected: {preview['devices_affected']} of {preview['devices_total']} enrolled")
    if preview.get("devices_awaiting_enrolment"):
        click.echo(f"  devices awaiting enrolment: {preview['devices_awaiting_enrolment']} "
                   "(they get it when they enrol)")
    if preview.get("old_agents"):
        click.echo(f"  devices with an agent older than 0.4.0: {preview['old_agents']} (they refuse slots set to "
                   "some days and keep their current programme until the agent is updated)")
    for d in preview.get("downloads", []):
        at = d["fetch_at"].replace("T", " ")[:16]
        if preview.get("urgent"):
            click.echo(f"  download now: {d['devices']} devices fetch it at once ({at} {d['timezone']}); "
                       "devices offline now fetch it when they reconnect")
        elif d["window"]:
            click.echo(f"  {d['devices']} devices fetch it in their download window {d['window'][0]}-"
                       f"{d['window'][1]} ({d['timezone']}), next at {at}; "
                       "for an urgent programme use --urgent")
        else:
            click.echo(f"  {d['devices']} devices (no download window) fetch it at once")
    click.echo(f"  channels changed: {preview['channels_changed']}")
    click.echo(f"  download: {_size(preview['download_bytes_total'])} in all, "
               f"at most {_size(preview['download_bytes_max'])} per device")
    for c in preview["channels"]:
        if not c["changed"]:
            continue
        click.echo(f"  {c['id']} ({c['kind']}, {c['language']}, {c['devices']} devices, "
                   f"{_size(c['download_bytes_per_device'])} each)")
        for item in c["added"]:
            click.secho(f"    + {item['programme']} #{item['position']} {item['title']}", fg="green")
        for item in c["removed"]:
            click.secho(f"    - {item['programme']} #{item['position']} {item['title']}", fg="red")
    for problem in preview["problems"]:
        click.secho(f"  ! {problem}", fg="red")


@click.command()
@click.argument("ref")
@click.option("--yes", is_flag=True, help="Publish without asking after the preview.")
@click.option("--urgent", is_flag=True,
              help="Download now: devices fetch it at once instead of in their download window (00:00-06:00 "
                   "by default).")
def publish(ref: str, yes: bool, urgent: bool) -> None:
    """Publish draft programme REF (code or id): show the preview, then sign and notify every device."""
    from server.programmes import publish as publish_service

    services = load_services()
    initialised(services)
    with api_errors():
        preview = publish_service.preview(services, ref, urgent=urgent)
    print_preview(preview)
    if preview["problems"]:
        raise click.ClickException("Some lessons are not ready; nothing was published.")
    if not yes:
        click.confirm("Publish now?", abort=True)
    with api_errors():
        result = publish_service.publish(services, ref, "cli", urgent=urgent)
    tuf = result["tuf"]
    click.echo(f"Published: {result['channels_changed']} channels signed (targets v{tuf['targets']}, "
               f"timestamp v{tuf['timestamp']}).")
    if not result["delivered"]:
        click.secho("The broker is not reachable now; the worker delivers the notifications when it is.",
                    fg="yellow")
