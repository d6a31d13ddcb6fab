"""Staged rollouts of an agent release: stages of N devices, a township or the county, with thresholds.

A stage's devices are chosen when it starts and told through the signed assignment files
(``playlists.agent_release``): starting a stage re-signs the targets metadata once. Counts come from what devices
report in their status (``agent_version`` and the ``update`` object): a device *succeeded* when it runs the release
and is past its trial, *failed* when it reports the release failed for this rollout's attempt.

``evaluate`` is the one rule that moves a rollout: it pauses a stage whose failures pass the error threshold or whose
time limit ran out, and when the success threshold is met it starts the next stage (``auto_advance``) or waits for
an admin. The ingest calls it when a device in a running rollout reports, the worker once a minute.
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from playlists import topics
from playlists.agent_release import (Assignment, assignment_path, descriptor_path, encode_assignments, version_key,
                                     wheel_path)
from playlists.manifest import format_utc
from server.agent_releases import releases
from server.agent_releases.models import STAGE_KINDS, AgentRelease, Rollout, RolloutStage
from server.audit import AuditEntry
from server.devices.models import Device
from server.errors import Conflict, Invalid, NotFound
from server.events.models import DeviceStatus
from server.file_lock import exclusive
from server.i18n import _l
from server.org.models import Site, Township
from server.programmes.trust import repository

log = logging.getLogger(__name__)
ACTIVE = ("running", "waiting", "paused")
MAX_STAGES = 10


# -- input ----------------------------------------------------------------------------------------------------------
def _pct(raw: dict, key: str, default: int, where: str) -> int:
    value = raw.get(key, default)
    if type(value) is not int or not 0 <= value <= 100:
        raise Invalid("bad_rollout", _l("{where}.{key}: a whole percentage from 0 to 100.", where=where, key=key),
                      field=f"{where}.{key}")
    return value


def parse_stages(session: Session, raw: Any) -> list[dict[str, Any]]:
    """The stages of a rollout request, checked; Invalid naming the stage and field otherwise."""
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_STAGES:
        raise Invalid("bad_rollout", _l("stages: a list of 1 to {n} stages.", n=MAX_STAGES), field="stages")
    stages = []
    for i, stage in enumerate(raw):
        where = f"stages[{i}]"
        if not isinstance(stage, dict) or stage.get("kind") not in STAGE_KINDS:
            raise Invalid("bad_rollout", _l("{where}.kind: one of {kinds}.", where=where,
                                            kinds=", ".join(STAGE_KINDS)), field=f"{where}.kind")
        kind, count, township = stage["kind"], stage.get("count"), stage.get("township")
        if kind == "devices" and not (type(count) is int and 1 <= count <= 100_000):
            raise Invalid("bad_rollout", _l("{where}.count: how many devices, a whole number from 1.", where=where),
                          field=f"{where}.count")
        if kind == "township" and (not isinstance(township, str) or session.scalar(
                select(Township.id).where(Township.code == township)) is None):
            raise Invalid("bad_rollout", _l("{where}.township: no township '{code}'.", where=where, code=township),
                          field=f"{where}.township")
        if kind == "county" and i != len(raw) - 1:
            raise Invalid("bad_rollout", _l("{where}: the county stage takes every device left, so it comes last.",
                                            where=where), field=f"{where}.kind")
        limit = stage.get("time_limit_min", 24 * 60)
        if type(limit) is not int or not 1 <= limit <= 60 * 24 * 60:
            raise Invalid("bad_rollout", _l("{where}.time_limit_min: minutes, from 1 to 86400.", where=where),
                          field=f"{where}.time_limit_min")
        stages.append({"kind": kind, "count": count if kind == "devices" else None,
                       "township": township if kind == "township" else None,
                       "success_pct": _pct(stage, "success_pct", 90, where),
                       "error_pct": _pct(stage, "error_pct", 10, where), "time_limit_min": limit})
    return stages


# -- counts -----------------------------------------------------------------------------------------------------------
def device_outcome(body: Optional[dict], agent_version: Optional[str], version: str, attempt: int) -> str:
    """"succeeded", "failed" or "pending" for one device of a stage, from its last status."""
    update = (body or {}).get("update") if isinstance((body or {}).get("update"), dict) else {}
    if agent_version == version and update.get("state") != "trial":
        return "succeeded"
    tried = update.get("attempt")
    if update.get("version") == version and update.get("state") in ("failed", "refused") and \
            type(tried) is int and tried >= attempt:
        return "failed"
    return "pending"


def stage_counts(session: Session, rollout: Rollout, stage: RolloutStage) -> dict[str, Any]:
    """How many of STAGE's devices succeeded, failed or are pending, and why the failed ones failed."""
    counts = {"devices": len(stage.devices), "succeeded": 0, "failed": 0, "pending": 0}
    reasons: dict[str, str] = {}
    uids = list(stage.devices)
    for start in range(0, len(uids), 500):
        rows = session.execute(select(DeviceStatus.device_uid, DeviceStatus.body, DeviceStatus.agent_version)
                               .where(DeviceStatus.device_uid.in_(uids[start:start + 500]))).all()
        for uid, body, version in rows:
            outcome = device_outcome(body, version, rollout.release.version, rollout.attempt)
            counts[outcome] += 1
            if outcome == "failed":
                reasons[uid] = str(((body or {}).get("update") or {}).get("reason", ""))[:300]
    counts["pending"] = counts["devices"] - counts["succeeded"] - counts["failed"]
    counts["failures"] = reasons
    return counts


def rollout_json(session: Session, rollout: Rollout) -> dict[str, Any]:
    """A rollout with each stage's live counts."""
    stages = []
    for stage in rollout.stages:
        item = {"position": stage.position, "kind": stage.kind, "count": stage.count, "township": stage.township,
                "success_pct": stage.success_pct, "error_pct": stage.error_pct,
                "time_limit_min": stage.time_limit_min, "state": stage.state,
                "started_at": stage.started_at.isoformat(timespec="seconds") if stage.started_at else None}
        item.update(stage_counts(session, rollout, stage) if stage.started_at else
                    {"devices": 0, "succeeded": 0, "failed": 0, "pending": 0, "failures": {}})
        stages.append(item)
    return {"id": rollout.id, "release": rollout.release.version, "state": rollout.state, "reason": rollout.reason,
            "auto_advance": rollout.auto_advance, "allow_downgrade": rollout.allow_downgrade,
            "attempt": rollout.attempt, "current_stage": rollout.current_stage, "stages": stages,
            "created_at": rollout.created_at.isoformat(timespec="seconds"), "created_by": rollout.created_by}


# -- assignments ------------------------------------------------------------------------------------------------------
def assignments(session: Session) -> dict[str, Assignment]:
    """What every device in a started stage of a rollout that was not cancelled should run (the newest wins)."""
    out: dict[str, Assignment] = {}
    for rollout in session.scalars(select(Rollout).where(Rollout.state != "cancelled").order_by(Rollout.id)):
        for stage in rollout.stages:
            if stage.started_at is not None:
                for uid in stage.devices:
                    out[uid] = Assignment(rollout.release.version, rollout.allow_downgrade, rollout.attempt)
    return out


def sign_assignments(services, session: Session) -> list[str]:
    """Re-sign the assignment files that changed (one targets version); return the paths written or removed."""
    buckets: dict[str, dict[str, Assignment]] = {}
    for uid, assignment in assignments(session).items():
        buckets.setdefault(assignment_path(uid), {})[uid] = assignment
    files = {path: encode_assignments(devices) for path, devices in buckets.items()}
    repo = repository(services)
    current = repo.target_paths("agent/assign/")
    changed = {path: data for path, data in files.items() if not repo.same_target(path, data)}
    removed = tuple(sorted(set(current) - set(files)))
    if changed or removed:
        repo.add_files(changed, now=services.clock(), remove=removed)
    return sorted(changed) + list(removed)


def _wake(services, uids: list[str]) -> None:
    """Ask the devices to look for their assignment now (inside their download window), not at their next sync."""
    from server.messaging.mqtt_link import BrokerAddress, BrokerUnavailable, ServerLink

    if not uids:
        return
    now = format_utc(services.clock())
    try:
        with ServerLink(BrokerAddress.from_services(services), "rollout") as link:
            for uid in uids:
                command = {"type": "check-update", "id": f"c-{secrets.token_hex(6)}", "issued_at": now}
                link.publish(topics.cmd(uid), json.dumps(command).encode(), expiry_s=86400)
    except BrokerUnavailable as exc:
        # Not lost: every device reads its assignment at its next sync.
        log.warning("could not tell %d devices to check for the agent update now: %s", len(uids), exc)


# -- stages -----------------------------------------------------------------------------------------------------------
def _candidates(session: Session, stage: RolloutStage, taken: set[str]) -> list[str]:
    query = select(Device.uid).where(Device.state == "enrolled").order_by(Device.uid)
    if stage.kind == "township":
        query = query.join(Site, Site.id == Device.site_id).join(Township, Township.id == Site.township_id) \
            .where(Township.code == stage.township)
    uids = [uid for uid in session.scalars(query) if uid not in taken]
    return uids[:stage.count] if stage.kind == "devices" else uids


def _start_stage(session: Session, rollout: Rollout, position: int, now) -> list[str]:
    stage = rollout.stages[position]
    taken = {uid for s in rollout.stages if s.started_at is not None for uid in s.devices}
    stage.devices, stage.state, stage.started_at = _candidates(session, stage, taken), "running", now
    rollout.current_stage, rollout.state, rollout.reason = position, "running", ""
    return list(stage.devices)


def _step(session: Session, rollout: Rollout, now) -> list[str]:
    """Apply the thresholds to ROLLOUT once; return the devices of a stage that started."""
    stage = rollout.stages[rollout.current_stage]
    counts = stage_counts(session, rollout, stage)
    n = max(1, counts["devices"])
    failed = counts["failed"] - stage.accepted_failures
    if failed > 0 and failed * 100 > stage.error_pct * n:
        rollout.state, stage.state = "paused", "stopped"
        rollout.reason = (f"stage {stage.position + 1}: {counts['failed']} of {counts['devices']} devices failed, over "
                          f"the {stage.error_pct}% error threshold")
        return []
    if counts["succeeded"] * 100 >= stage.success_pct * counts["devices"]:
        stage.state, stage.finished_at = "passed", now
        if rollout.current_stage + 1 >= len(rollout.stages):
            rollout.state, rollout.reason = "done", ""
            return []
        if not rollout.auto_advance:
            rollout.state = "waiting"
            rollout.reason = f"stage {stage.position + 1} passed; an admin starts stage {stage.position + 2}"
            return []
        return _start_stage(session, rollout, rollout.current_stage + 1, now)
    if now - stage.started_at > timedelta(minutes=stage.time_limit_min):
        rollout.state, stage.state = "paused", "stopped"
        rollout.reason = (f"stage {stage.position + 1}: {counts['succeeded']} of {counts['devices']} devices succeeded "
                          f"within {stage.time_limit_min} min, short of {stage.success_pct}%")
    return []


def _lock(services):
    return exclusive(services.data / "rollouts.lock")


def evaluate(services, device: Optional[str] = None) -> list[int]:
    """Move every running rollout (or only those holding DEVICE) by its thresholds; return the ids that changed."""
    with services.db.session() as session:  # the common case, no rollout running, takes no lock
        if session.scalar(select(Rollout.id).where(Rollout.state == "running").limit(1)) is None:
            return []
    now = services.clock()
    changed, woken = [], []
    with _lock(services), services.db.session() as session:
        for rollout in session.scalars(select(Rollout).where(Rollout.state == "running").order_by(Rollout.id)):
            if device is not None and not any(device in s.devices for s in rollout.stages):
                continue
            before = (rollout.state, rollout.current_stage)
            while rollout.state == "running":
                started = _step(session, rollout, now)
                woken += started
                if rollout.state != "running" or not started:
                    break
            if (rollout.state, rollout.current_stage) != before:
                rollout.updated_at = now
                changed.append(rollout.id)
                session.add(AuditEntry(at=now, actor="rollout", action="agent_rollout." + rollout.state,
                                       subject=str(rollout.id), details={"stage": rollout.current_stage + 1,
                                                                         "reason": rollout.reason}))
        if woken:
            sign_assignments(services, session)
    _wake(services, woken)
    return changed


def create(services, body: dict[str, Any], actor: str) -> dict[str, Any]:
    """Start a rollout of a release (body: release, stages, auto_advance, allow_downgrade); return it."""
    if not isinstance(body.get("release"), str):
        raise Invalid("bad_rollout", _l("release: the version of a registered agent release."), field="release")
    auto, downgrade = body.get("auto_advance", True), body.get("allow_downgrade", False)
    if type(auto) is not bool or type(downgrade) is not bool:
        raise Invalid("bad_rollout", _l("auto_advance and allow_downgrade: true or false."), field="auto_advance")
    now = services.clock()
    with _lock(services), services.db.session() as session:
        release = releases.get(session, body["release"])
        stages = parse_stages(session, body.get("stages"))
        active = session.scalar(select(Rollout).where(Rollout.state.in_(ACTIVE)))
        if active is not None:
            raise Conflict("rollout_active", _l("Rollout {id} of {version} is still {state}: finish or cancel it "
                                                "first.", id=active.id, version=active.release.version,
                                                state=active.state))
        newest = max((version_key(v) for v in session.scalars(
            select(DeviceStatus.agent_version).where(DeviceStatus.agent_version.is_not(None))) if _plain(v)),
            default=None)
        if newest is not None and version_key(release.version) < newest and not downgrade:
            raise Conflict("downgrade", _l("{version} is older than agent versions devices run: devices refuse it "
                                           "unless you pin the rollback (allow_downgrade).", version=release.version))
        rollout = Rollout(release=release, state="running", auto_advance=auto, allow_downgrade=downgrade,
                          attempt=1, current_stage=0, created_at=now, created_by=actor, updated_at=now,
                          stages=[RolloutStage(position=i, state="pending", devices=[], accepted_failures=0, **s)
                                  for i, s in enumerate(stages)])
        session.add(rollout)
        started = _start_stage(session, rollout, 0, now)
        session.flush()
        session.add(AuditEntry(at=now, actor=actor, action="agent_rollout.create", subject=str(rollout.id),
                               details={"release": release.version, "stages": stages}))
        sign_assignments(services, session)
        result_id = rollout.id
    _wake(services, started)
    evaluate(services)
    return show(services, result_id)


def _plain(version: str) -> bool:
    try:
        version_key(version)
        return True
    except ValueError:
        return False


def _get(session: Session, rollout_id: int) -> Rollout:
    rollout = session.get(Rollout, rollout_id) if type(rollout_id) is int else None
    if rollout is None:
        raise NotFound("no_rollout", _l("No rollout {id}: see 'lessoncast rollout list'.", id=rollout_id))
    return rollout


def show(services, rollout_id: int) -> dict[str, Any]:
    """One rollout with its stages' live counts."""
    with services.db.session() as session:
        return rollout_json(session, _get(session, rollout_id))


def list_all(services) -> list[dict[str, Any]]:
    """Every rollout, newest first."""
    with services.db.session() as session:
        return [rollout_json(session, r) for r in session.scalars(select(Rollout).order_by(Rollout.id.desc()))]


ACTIONS = ("pause", "resume", "retry-failed", "cancel")
# The states each action applies to (the console offers an action only where it applies).
ALLOWED_FROM: dict[str, tuple[str, ...]] = {"pause": ("running", "waiting"), "resume": ("paused", "waiting"),
                                            "retry-failed": ("running", "paused", "waiting"), "cancel": ACTIVE}


def check_action(action: str) -> None:
    """Invalid unless ACTION is one of ACTIONS."""
    if action not in ACTIONS:
        raise Invalid("bad_action", _l("action: one of {actions}.", actions=", ".join(ACTIONS)), field="action")


def act(services, rollout_id: int, action: str, actor: str) -> dict[str, Any]:
    """Pause, resume (also: start the next stage of a waiting rollout), retry the failed devices, or cancel."""
    check_action(action)
    now = services.clock()
    woken: list[str] = []
    with _lock(services), services.db.session() as session:
        rollout = _get(session, rollout_id)
        if rollout.state not in ALLOWED_FROM[action]:
            raise Conflict("rollout_state", _l("Rollout {id} is {state}: it cannot {action}.", id=rollout.id,
                                               state=rollout.state, action=action))
        stage = rollout.stages[rollout.current_stage]
        if action == "pause":
            rollout.state, rollout.reason = "paused", f"paused by {actor}"
        elif action == "cancel":
            rollout.state, rollout.reason = "cancelled", f"cancelled by {actor}"
            sign_assignments(services, session)
        elif action == "retry-failed":
            stage.accepted_failures, stage.state = 0, "running"
            rollout.attempt += 1
            rollout.state, rollout.reason = "running", ""
            sign_assignments(services, session)
            woken = list(stage.devices)
        elif rollout.state == "waiting":
            woken = _start_stage(session, rollout, rollout.current_stage + 1, now)
            sign_assignments(services, session)
        else:
            # Resuming past the error threshold accepts the failures so far; new ones still count.
            stage.accepted_failures = stage_counts(session, rollout, stage)["failed"]
            stage.state, rollout.state, rollout.reason = "running", "running", ""
        rollout.updated_at = now
        session.add(AuditEntry(at=now, actor=actor, action=f"agent_rollout.{action}", subject=str(rollout.id)))
    _wake(services, woken)
    evaluate(services)
    return show(services, rollout_id)


def pack_files(services, uids: list[str]) -> list[tuple[str, Path]]:
    """The signed agent targets a sideload pack carries for UIDS: their assignment files, and the descriptor and
    wheels of every release assigned to them, as (target path, file in the repository)."""
    with services.db.session() as session:
        assigned = {uid: a for uid, a in assignments(session).items() if uid in set(uids)}
        versions = sorted({a.version for a in assigned.values()})
        rows = {r.version: r for r in session.scalars(select(AgentRelease).where(AgentRelease.version.in_(versions)))}
        targets = sorted({assignment_path(uid) for uid in assigned})
        for version in versions:
            row = rows[version]
            targets.append(descriptor_path(version))
            targets += [wheel_path(w["filename"]) for w in [row.agent_wheel, *(row.dependencies or [])]]
    repo = repository(services)
    out = []
    for target in dict.fromkeys(targets):
        info = repo.target_info(target)
        if info is None:
            raise NotFound("no_target", _l("{target} is not signed: register the release again.", target=target))
        head, _, base = target.rpartition("/")
        out.append((target, repo.targets_dir / head / f"{info.hashes['sha256']}.{base}"))
    return out
