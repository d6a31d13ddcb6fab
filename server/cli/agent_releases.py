"""``lessoncast agent-release`` (register agent wheels as signed targets) and ``lessoncast rollout`` (stages)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import click

from server.cli.common import api_errors, load_services


@click.group("agent-release")
def agent_release() -> None:
    """Agent releases: the device agent's wheel and its dependencies, signed as TUF targets."""


@agent_release.command("add")
@click.argument("wheel", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--deps", "deps_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A directory of the dependencies' wheels (pip wheel -w DIR 'lessoncast[agent]').")
@click.option("--reads-state-from", type=click.IntRange(1), default=1, show_default=True,
              help="The oldest outbox/state format this release reads; devices with older state refuse it.")
def release_add(wheel: Path, deps_dir: Optional[Path], reads_state_from: int) -> None:
    """Register WHEEL (lessoncast, built with 'pip wheel --no-deps .') and sign it with its dependencies."""
    from server.agent_releases import releases

    with api_errors():
        release = releases.add(load_services(), wheel, deps_dir, "cli", reads_state_from)
    click.echo(f"Agent release {release['version']} signed: {1 + len(release['dependencies'])} wheels, "
               f"{release['bytes'] / 1e6:.1f} MB (agent wheel {release['agent_wheel']['length'] / 1e3:.0f} KB).")


@agent_release.command("list")
def release_list() -> None:
    """Every registered release, newest first."""
    from server.agent_releases import releases

    with api_errors():
        rows = releases.list_all(load_services())
    for r in rows:
        click.echo(f"{r['version']:<12} {1 + len(r['dependencies']):>3} wheels  {r['bytes'] / 1e6:7.1f} MB  "
                   f"{r['created_at']}  {r['created_by']}")


@click.group()
def rollout() -> None:
    """Roll an agent release out in stages, with success and error thresholds."""


def _stage(text: str) -> dict:
    """'10', 'township:qs' or 'county', each optionally followed by ',success=90,error=10,limit=60' (minutes)."""
    head, *opts = text.split(",")
    if head == "county":
        stage: dict = {"kind": "county"}
    elif head.startswith("township:"):
        stage = {"kind": "township", "township": head.split(":", 1)[1]}
    elif head.isdigit():
        stage = {"kind": "devices", "count": int(head)}
    else:
        raise click.BadParameter(f"{head!r}: a number of devices, township:CODE or county")
    names = {"success": "success_pct", "error": "error_pct", "limit": "time_limit_min"}
    for opt in opts:
        key, _, value = opt.partition("=")
        if key not in names or not value.isdigit():
            raise click.BadParameter(f"{opt!r}: success=PCT, error=PCT or limit=MINUTES")
        stage[names[key]] = int(value)
    return stage


def _show(r: dict) -> None:
    click.echo(f"rollout {r['id']}: agent {r['release']}, {r['state']}"
               + (f" ({r['reason']})" if r["reason"] else "") + f", attempt {r['attempt']}")
    for s in r["stages"]:
        target = {"devices": f"{s['count']} devices", "township": f"township {s['township']}",
                  "county": "county"}[s["kind"]]
        click.echo(f"  {s['position'] + 1}. {target:<20} {s['state']:<8} {s['succeeded']}/{s['devices']} succeeded, "
                   f"{s['failed']} failed, {s['pending']} pending (success {s['success_pct']}%, "
                   f"error {s['error_pct']}%, {s['time_limit_min']} min)")
        for uid, why in s["failures"].items():
            click.echo(f"       {uid}: {why}")


@rollout.command("create")
@click.argument("release")
@click.option("--stage", "stages", multiple=True, required=True,
              help="In order: N (devices), township:CODE or county, then ,success=PCT,error=PCT,limit=MIN.")
@click.option("--manual", is_flag=True, help="Wait for an admin ('rollout resume') before each next stage.")
@click.option("--allow-downgrade", is_flag=True, help="Pin a rollback: devices install this older release.")
def rollout_create(release: str, stages: tuple[str, ...], manual: bool, allow_downgrade: bool) -> None:
    """Start rolling RELEASE out, stage by stage."""
    from server.agent_releases import rollouts

    body = {"release": release, "stages": [_stage(s) for s in stages], "auto_advance": not manual,
            "allow_downgrade": allow_downgrade}
    with api_errors():
        _show(rollouts.create(load_services(), body, "cli"))


@rollout.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def rollout_list(as_json: bool) -> None:
    """Every rollout with its stages' counts."""
    from server.agent_releases import rollouts

    with api_errors():
        rows = rollouts.list_all(load_services())
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=1))
    for r in [] if as_json else rows:
        _show(r)


for _action in ("pause", "resume", "retry-failed", "cancel"):
    def _make(action: str):
        @rollout.command(action, help=f"{action.capitalize().replace('-', ' ')} rollout ID.")
        @click.argument("rollout_id", type=int)
        def command(rollout_id: int) -> None:
            from server.agent_releases import rollouts

            with api_errors():
                _show(rollouts.act(load_services(), rollout_id, action, "cli"))
        return command
    _make(_action)
