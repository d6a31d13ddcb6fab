"""``lessoncast doctor``: check a deployment and say in plain words what is wrong.

Each check returns a ``Finding``: ok, warn or fail, and a message id with values, which the command translates
(the console's catalogue) and prints one to a line. A fail is something that stops lessoncast working now or at
its next start; a warn is something to act on soon.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from server import migrate, ports, run_lock
from server.i18n import _
from server.messaging import broker_gate, broker_probe
from server.programmes import trust as trust_service
from server.services import Services

OK, WARN, FAIL = "ok", "warn", "fail"
FFMPEG_ENCODERS = ("libmp3lame", "aac", "libx264")
FFMPEG_FILTERS = ("ebur128", "alimiter")


@dataclass(frozen=True)
class Finding:
    """The outcome of one check: its name, ok/warn/fail, and what to say (a msgid and its values)."""

    check: str
    status: str
    message: str
    values: dict[str, Any] = field(default_factory=dict)


def check_database(services: Services) -> Finding:
    """The database answers and is at the newest migration."""
    try:
        current, head = migrate.revisions(services.settings.db_url)
    except Exception as exc:  # reported: the reason is the finding
        return Finding("database", FAIL, _("The database cannot be reached: %(error)s"), {"error": _brief(exc)})
    if current != head:
        return Finding("database", FAIL, _("The database is at migration %(current)s, not the newest (%(head)s): "
                                           "run 'lessoncast db upgrade'."), {"current": current or "-", "head": head})
    return Finding("database", OK, _("The database answers and is at the newest migration (%(head)s)."),
                   {"head": head})


def check_redis(services: Services) -> Finding:
    """Redis answers, when the job queue uses it."""
    url = services.settings.redis_url
    if not url:
        return Finding("redis", OK, _("Redis is not used: the job queue is in the data directory."))
    try:
        import redis

        redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3).ping()
    except Exception as exc:  # reported
        return Finding("redis", FAIL, _("Redis (LESSONCAST_REDIS_URL) does not answer: %(error)s"),
                       {"error": _brief(exc)})
    return Finding("redis", OK, _("Redis answers."))


def check_broker(services: Services) -> list[Finding]:
    """Anonymous clients are refused; a device may not join ingest's shared subscription nor read others' topics."""
    if services.settings.mqtt_url:
        return [Finding("broker", WARN, _("The broker is external (LESSONCAST_MQTT_URL): check its authentication "
                                          "and ACLs yourself."))]
    anonymous = broker_probe.anonymous(services)
    if anonymous.accepted is None:
        running = run_lock.holder(services.data)
        return [Finding("broker", FAIL if running else WARN,
                        _("The broker does not answer on port %(port)s: %(error)s.") if running else
                        _("The broker is not running (start 'lessoncast run'); its authentication was not checked."),
                        {"port": services.settings.mqtt_port, "error": anonymous.reason})]
    found = []
    if anonymous.accepted:
        found.append(Finding("broker-auth", FAIL, _("The broker accepts clients without a password on port "
                                                     "%(port)s."), {"port": services.settings.mqtt_port}))
    else:
        found.append(Finding("broker-auth", OK, _("The broker refuses clients without a password.")))
    try:
        session, filters = broker_probe.as_device(services)
    except broker_gate.GateUnavailable as exc:
        return found + [Finding("broker-acl", FAIL, _("The broker's subscription gate cannot be checked: %(error)s"),
                                {"error": str(exc)})]
    if not session.accepted:
        return found + [Finding("broker-acl", FAIL, _("A test device could not connect to the broker (%(reason)s)."),
                                {"reason": session.reason})]
    granted = session.granted
    if not granted.get(filters["own"]):
        found.append(Finding("broker-acl", FAIL, _("A device may not subscribe to its own topics: devices get no "
                                                   "programmes. Restart 'lessoncast run' to rewrite the broker's "
                                                   "files.")))
    if granted.get(filters["share"]) or granted.get(filters["all"]):
        found.append(Finding("broker-acl", FAIL, _("A device may join the ingest's shared subscription: it would "
                                                   "be dealt other devices' events. The broker's subscription gate "
                                                   "is not working; restart 'lessoncast run'.")))
    if granted.get(filters["other"]):
        found.append(Finding("broker-acl", FAIL, _("A device may subscribe to another device's topics.")))
    if not any(f.check == "broker-acl" for f in found):
        found.append(Finding("broker-acl", OK, _("A device may subscribe to its own topics only: not to the "
                                                 "ingest's shared subscription, nor to other devices' topics.")))
    return found


def check_media_store(services: Services) -> Finding:
    """The media store takes a file, and its disk has room."""
    media = services.data / "media"
    probe = media / f".doctor-{uuid.uuid4().hex}"
    try:
        media.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"lessoncast doctor")
        probe.unlink()
    except OSError as exc:
        return Finding("media", FAIL, _("The media store %(path)s cannot be written: %(error)s"),
                       {"path": str(media), "error": exc.strerror or str(exc)})
    from server.settings import human_size

    free, margin = services.disk_free(media), services.settings.upload_free_margin
    values = {"path": str(media), "free": human_size(free), "margin": human_size(margin)}
    if free < margin:
        return Finding("media", FAIL, _("Only %(free)s free for the media store %(path)s: uploads are refused under "
                                        "%(margin)s (LESSONCAST_UPLOAD_FREE_MARGIN). Free some space."), values)
    if free < 3 * margin:
        return Finding("media", WARN, _("Only %(free)s free for the media store %(path)s; uploads stop under "
                                        "%(margin)s."), values)
    return Finding("media", OK, _("The media store %(path)s is writable, %(free)s free."), values)


def check_ffmpeg(run: Callable[[list[str]], str] = None) -> Finding:
    """ffmpeg and ffprobe are on PATH, with the encoders and filters the renditions need; their version."""
    run = run or _output
    missing = [name for name in ("ffmpeg", "ffprobe") if shutil.which(name) is None]
    if missing:
        return Finding("ffmpeg", FAIL, _("%(programs)s not found on PATH: lessoncast cannot transcode. Install "
                                         "ffmpeg (apt-get install ffmpeg)."), {"programs": ", ".join(missing)})
    try:
        version_line = run(["ffmpeg", "-hide_banner", "-version"]).splitlines()[0]
        encoders, filters = run(["ffmpeg", "-hide_banner", "-encoders"]), run(["ffmpeg", "-hide_banner", "-filters"])
    except (OSError, subprocess.SubprocessError, IndexError) as exc:
        return Finding("ffmpeg", FAIL, _("ffmpeg does not run: %(error)s"), {"error": _brief(exc)})
    match = re.search(r"version (\S+)", version_line)
    version = match.group(1) if match else version_line
    lacking = [e for e in FFMPEG_ENCODERS if not re.search(rf"\s{e}\s", encoders)]
    lacking += [f for f in FFMPEG_FILTERS if not re.search(rf"\s{f}\s", filters)]
    if lacking:
        return Finding("ffmpeg", FAIL, _("ffmpeg %(version)s lacks %(parts)s, which the renditions need."),
                       {"version": version, "parts": ", ".join(lacking)})
    return Finding("ffmpeg", OK, _("ffmpeg %(version)s, with the encoders and filters the renditions need."),
                   {"version": version})


def check_keys(services: Services) -> list[Finding]:
    """The county's signing keys exist, nothing signed expires soon, and the root key is offline."""
    if not trust_service.initialised(services):
        return [Finding("keys", FAIL, _("The county's signing keys do not exist: run 'lessoncast init'."))]
    try:
        warnings = trust_service.warnings(services)
    except Exception as exc:  # reported
        return [Finding("keys", FAIL, _("The signing keys cannot be read: %(error)s"), {"error": _brief(exc)})]
    found = [Finding("keys", FAIL if "expired" in w else WARN, "%(warning)s", {"warning": w}) for w in warnings]
    if not found:
        found.append(Finding("keys", OK, _("No signing key or signed metadata expires within 30 days.")))
    root_key = trust_service.root_key_path(services)
    if root_key.exists():
        found.append(Finding("root-key", WARN, _("The root key is still on this machine (%(path)s): copy it to "
                                                 "offline storage and delete it here."), {"path": str(root_key)}))
    return found


def private_files(services: Services) -> list[Path]:
    """The files only the instance's account may read: secrets, keys, the SQLite database and the job queue."""
    data = services.data
    names = ["secret_key", "one-time-secrets.txt", "queue.db"]
    files = [data / n for n in names]
    files += [p for p in data.glob("lessoncast.db*")]
    for folder in ("keys", "broker"):
        files += [p for p in (data / folder).glob("*") if p.is_file() and p.suffix not in (".conf", ".pid", ".log",
                                                                                           ".lock")]
    url = services.settings.db_url
    if url.startswith("sqlite:///"):
        db = Path(url.removeprefix("sqlite:///"))
        files += list(db.parent.glob(db.name + "*"))
    return sorted({p for p in files if p.is_file()})


def check_permissions(services: Services) -> list[Finding]:
    """The data directory is 0700 and the secrets and database 0600, owned by this account."""
    data = services.data
    found = []
    mode = stat.S_IMODE(data.stat().st_mode)
    if mode & 0o077 or data.stat().st_uid != os.getuid():
        found.append(Finding("permissions", FAIL, _("The data directory %(path)s is mode %(mode)s: others can reach "
                                                    "members' data and keys. Run: chmod 700 %(path)s"),
                             {"path": str(data), "mode": f"{mode:04o}"}))
    open_files = [p for p in private_files(services) if stat.S_IMODE(p.stat().st_mode) & 0o077]
    for path in open_files:
        found.append(Finding("permissions", FAIL, _("%(path)s is mode %(mode)s: only its owner may read it. Run: "
                                                    "chmod 600 %(path)s"),
                             {"path": str(path), "mode": f"{stat.S_IMODE(path.stat().st_mode):04o}"}))
    if not found:
        found.append(Finding("permissions", OK, _("The data directory is 0700; secrets, keys and the database are "
                                                  "0600.")))
    return found


def check_ports(services: Services) -> list[Finding]:
    """With no stack running, every port it binds is free; with one running, nothing else holds them."""
    running = run_lock.holder(services.data)
    found = []
    for port in ports.stack_ports(services.settings):
        clashes = ports.check([port])
        values = {"port": port.port, "what": port.what, "setting": port.setting}
        if not clashes:
            if running:
                found.append(Finding("ports", WARN, _("Nothing listens on port %(port)s (%(what)s) although "
                                                      "lessoncast run is running: is that part down?"), values))
            continue
        clash = clashes[0]
        ours = running and (clash.holder_pid is None or _descends_from(clash.holder_pid, running))
        if ours:
            continue
        values.update(pid=clash.holder_pid or "?", command=clash.holder or "?")
        found.append(Finding("ports", FAIL, _("Port %(port)s (%(what)s) is held by pid %(pid)s (%(command)s), not by "
                                              "lessoncast run: stop that program or set %(setting)s."), values))
    if not found:
        found.append(Finding("ports", OK, _("The stack's ports are held by its lessoncast run (pid %(pid)s).")
                             if running else _("The stack's ports are free for lessoncast run."),
                             {"pid": running}))
    return found


def run_all(services: Services) -> list[Finding]:
    """Every check, in the order a person fixes them."""
    found = [check_permissions(services), check_database(services), check_redis(services),
             check_media_store(services), check_ffmpeg(), check_keys(services), check_ports(services),
             check_broker(services)]
    return [f for item in found for f in (item if isinstance(item, list) else [item])]


def _descends_from(pid: int, ancestor: int) -> bool:
    """Whether PID is ANCESTOR or one of its descendants (from /proc)."""
    for _step in range(64):
        if pid == ancestor:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
        if pid <= 1:
            return False
    return False


def _output(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout


def _brief(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
