"""Registering an agent release: its wheel and its dependencies' wheels become targets signed by the targets key.

The descriptor (``agent/releases/<v>/release.json``) names every wheel with its length and sha256; each wheel is a
target of its own (``agent/wheels/<file name>``), so a dependency that did not change between releases keeps its
path and hash and devices that hold it download nothing for it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Optional

from sqlalchemy import select

from playlists.agent_release import (ReleaseError, Release, Wheel, descriptor_path, encode_release, version_key,
                                     wheel_name)
from server.agent_releases.models import AgentRelease
from server.audit import AuditEntry
from server.errors import Conflict, Invalid, NotFound
from server.i18n import _l
from server.programmes.trust import repository


def _wheel(path: Path) -> tuple[Wheel, bytes]:
    data = path.read_bytes()
    return Wheel(path.name, len(data), hashlib.sha256(data).hexdigest()), data


def release_json(row: AgentRelease) -> dict[str, Any]:
    """A release as the API and CLI show it."""
    deps = row.dependencies or []
    return {"id": row.id, "version": row.version, "agent_wheel": row.agent_wheel, "dependencies": deps,
            "reads_state_from": row.reads_state_from,
            "bytes": row.agent_wheel["length"] + sum(d["length"] for d in deps),
            "created_at": row.created_at.isoformat(timespec="seconds"), "created_by": row.created_by}


def add(services, wheel: Path, deps_dir: Optional[Path], actor: str, reads_state_from: int = 1) -> dict[str, Any]:
    """Sign WHEEL (lessoncast's, with the agent extra) and every wheel in DEPS_DIR as release targets; return it."""
    wheel, deps_dir = Path(wheel), Path(deps_dir) if deps_dir else None
    try:
        name, version = wheel_name(wheel.name)
        version_key(version)
    except ReleaseError as exc:
        raise Invalid("bad_release", _l("{file} is not a wheel with a plain release version, such as "
                                        "lessoncast-1.4.2-py3-none-any.whl ({problem}).", file=wheel.name,
                                        problem=str(exc)), field="wheel") from None
    if name != "lessoncast":
        raise Invalid("bad_release", _l("{file} is a wheel of {name}, not of lessoncast: build the agent with "
                                        "'pip wheel --no-deps .' in the lessoncast source.", file=wheel.name,
                                        name=name), field="wheel")
    if not wheel.is_file():
        raise NotFound("no_wheel", _l("{file} does not exist.", file=str(wheel)))
    if type(reads_state_from) is not int or reads_state_from < 1:
        raise Invalid("bad_release", _l("reads_state_from: a state format number from 1."), field="reads_state_from")
    dep_files = sorted(p for p in deps_dir.glob("*.whl") if not p.name.startswith("lessoncast-")) if deps_dir else []
    agent, agent_bytes = _wheel(wheel)
    files = {agent.path: agent_bytes}
    deps = []
    for path in dep_files:
        try:
            dep, data = _wheel(path)
            files[dep.path] = data
        except ReleaseError as exc:
            raise Invalid("bad_release", _l("{file} in the dependencies directory is not a wheel ({problem}).",
                                            file=path.name, problem=str(exc)), field="deps") from None
        deps.append(dep)
    release = Release(version, agent, tuple(deps), reads_state_from)
    files[descriptor_path(version)] = encode_release(release)
    now = services.clock()
    with services.db.session() as session:
        if session.scalar(select(AgentRelease.id).where(AgentRelease.version == version)) is not None:
            raise Conflict("release_exists", _l("Agent release {version} is already registered: build a new "
                                                "version to change it.", version=version))
        repository(services).add_files(files, now=now)
        row = AgentRelease(version=version, agent_wheel=_plain(agent), dependencies=[_plain(d) for d in deps],
                           reads_state_from=reads_state_from, created_at=now, created_by=actor)
        session.add(row)
        session.add(AuditEntry(at=now, actor=actor, action="agent_release.add", subject=version,
                               details={"wheels": len(files) - 1, "bytes": sum(len(b) for b in files.values())}))
        session.flush()
        return release_json(row)


def _plain(w: Wheel) -> dict[str, Any]:
    return {"filename": w.filename, "length": w.length, "sha256": w.sha256}


def get(session, version: str) -> AgentRelease:
    """The release VERSION, or NotFound."""
    row = session.scalar(select(AgentRelease).where(AgentRelease.version == str(version)))
    if row is None:
        raise NotFound("no_release", _l("No agent release {version}: see 'lessoncast agent-release list'.",
                                        version=version))
    return row


def list_all(services) -> list[dict[str, Any]]:
    """Every release, newest version first."""
    with services.db.session() as session:
        rows = session.scalars(select(AgentRelease)).all()
        rows = sorted(rows, key=lambda r: version_key(r.version), reverse=True)
        return [release_json(r) for r in rows]
