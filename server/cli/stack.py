"""Server subcommands of ``lessoncast``: run, init, config, token, import, lesson, db, web, worker, broker."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from server import settings as settings_mod
from server.accounts.models import ROLES
from server.cli.common import initialised, load_services, remember_instance, running_worker, say
from server.i18n import _

MEDIA_EXTENSIONS = {".mp3", ".wav", ".flac", ".m4a", ".aac", ".ogg", ".oga", ".opus", ".wma", ".amr", ".mp4",
                    ".m4v", ".mov", ".mkv", ".avi", ".wmv", ".3gp", ".ts", ".webm", ".mpg", ".mpeg", ".flv"}


@click.command()
def init() -> None:
    """Create the data directory, migrate the database, and create the first admin account."""
    services = load_services(require_instance=False)
    initialised(services)
    record = remember_instance(services)
    click.echo(f"Instance ready in {services.data}")
    if record:
        click.echo(say(_("Recorded in %(record)s: lessoncast commands run from any folder use this instance."),
                       record=record), err=True)


@click.command()
def config() -> None:
    """Print every setting with its effective value (secrets masked) and where it came from."""
    from server import instance_location
    from server.cli.common import no_instance_message

    settings = load_services(require_instance=False).settings
    rows = settings.masked()
    width = max(len(row[0]) for row in rows)
    for name, value, source in rows:
        click.echo(f"{name:<{width}}  {value}    [{source}]")
    if not instance_location.exists(settings.data_path):
        raise click.ClickException(no_instance_message(settings))


@click.group()
def token() -> None:
    """Create, list and revoke API tokens."""


@token.command("create")
@click.option("--role", required=True, type=click.Choice(ROLES),
              help="What the token may do: admin; media (lessons, programmes, publish); operator; viewer.")
@click.option("--name", required=True, help="Who or what uses the token, e.g. 'county-media-pc'.")
@click.option("--township", default=None,
              help="The township an operator token covers, by code (qs) or name (青山镇); operators only.")
@click.option("--expires-in", "expires_in", type=click.IntRange(min=0), default=None, metavar="DAYS",
              help="Days until the token stops working (0: never). Default: LESSONCAST_OPERATOR_TOKEN_DAYS for "
                   "operator tokens, never for the other roles.")
def token_create(role: str, name: str, township: str | None, expires_in: int | None) -> None:
    """Create a token; it is printed once, as the last line."""
    from server.accounts.auth import create_token, token_expiry

    services = load_services()
    initialised(services)
    now = services.clock()
    try:
        expires_at = token_expiry(role, expires_in, services.settings.operator_token_days, now)
        with services.db.session() as session:
            value = create_token(session, name=name, role=role, township=township, now=now, expires_at=expires_at)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    until = f"until {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else "with no expiry"
    click.echo(f"Token for {name} ({role}), valid {until}; keep it secret, it is not shown again:", err=True)
    click.echo(value)


@token.command("list")
def token_list() -> None:
    """List tokens (never their values)."""
    from sqlalchemy import select

    from server.accounts.models import ApiToken

    services = load_services()
    with services.db.session() as session:
        for t in session.scalars(select(ApiToken).order_by(ApiToken.id)):
            expired = t.expires_at is not None and t.expires_at <= services.clock()
            state = "revoked" if t.revoked_at else "expired" if expired else "active"
            used = t.last_used_at.isoformat(timespec="seconds") if t.last_used_at else "never"
            until = t.expires_at.isoformat(timespec="seconds") if t.expires_at else "never"
            click.echo(f"{t.id:>4}  {t.name:<24} {t.role:<9} {t.township or '-':<12} {state:<8} "
                       f"expires {until}  last used {used}")


@token.command("revoke")
@click.argument("token_id", type=int)
def token_revoke(token_id: int) -> None:
    """Revoke the token with id TOKEN_ID (see 'lessoncast token list')."""
    from server.accounts.models import ApiToken

    services = load_services()
    with services.db.session() as session:
        row = session.get(ApiToken, token_id)
        if row is None:
            raise click.BadParameter(f"there is no token {token_id}; see 'lessoncast token list'")
        row.revoked_at = services.clock()
    click.echo(f"Token {token_id} revoked.")


@click.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--speaker", default="", help="Speaker to record on every imported lesson.")
@click.option("--series", default="", help="Series to record on every imported lesson.")
@click.option("--language", default="cmn", help="BCP 47 language tag of the lessons (cmn, bo, nan, cdo ...).")
@click.option("--wait", is_flag=True, help="Stay until the worker has made every rendition, with a progress bar.")
def import_media(paths: tuple[Path, ...], speaker: str, series: str, language: str, wait: bool) -> None:
    """Import every media file under PATHS (files or folders); each file's name becomes its lesson title."""
    from media.errors import MediaError
    from server.errors import DomainError
    from server.lessons import service as lessons
    from server.lessons.upload_stream import HashingFile

    services = load_services()
    initialised(services)
    files = sorted(_media_files(paths))
    if not files:
        raise click.ClickException("No media files found (looked for: " + " ".join(sorted(MEDIA_EXTENSIONS)) + ").")
    counts = {"imported": 0, "already there": 0, "refused": 0}
    imported: list[int] = []
    for n, path in enumerate(files, 1):
        staged = HashingFile(services.upload_dir)
        try:
            _copy_with_progress(path, staged, f"[{n}/{len(files)}] {path.name}")
            staged.close_file()
            meta = lessons.parse_meta({"title": path.stem, "speaker": speaker, "series": series,
                                       "language": language})
            lesson, created = lessons.ingest(services, lessons.StagedFile(staged.path, staged.sha256, staged.size),
                                             lessons.display_name(path.name), meta, "import")
        except (MediaError, DomainError) as exc:
            staged.discard()
            counts["refused"] += 1
            click.secho(f"[{n}/{len(files)}] {path}: refused: {exc.message}", fg="red")
            continue
        except OSError as exc:
            staged.discard()
            counts["refused"] += 1
            click.secho(f"[{n}/{len(files)}] {path}: cannot read it ({exc.strerror})", fg="red")
            continue
        counts["imported" if created else "already there"] += 1
        if created:
            imported.append(lesson.id)
        what = "imported as" if created else "already there as"
        click.echo(f"[{n}/{len(files)}] {path}: {what} lesson {lesson.id}")
    click.echo(", ".join(f"{v} {k}" for k, v in counts.items()))
    if wait and imported:
        _wait_for_renditions(services, imported)
    if counts["refused"]:
        sys.exit(1)


def _copy_with_progress(path: Path, staged, label: str) -> None:
    """Copy a file into the upload area, with a progress bar for files big enough to take a while."""
    size = path.stat().st_size
    with open(path, "rb") as src, click.progressbar(length=size, label=label, file=sys.stderr,
                                                    show_pos=False, hidden=size < 50 * 1024**2) as bar:
        while chunk := src.read(1024 * 1024):
            staged.write(chunk)
            bar.update(len(chunk))


def _wait_for_renditions(services, lesson_ids: list[int]) -> None:
    """Show one progress bar over every rendition of the imported lessons until none is queued or running."""
    import time

    from sqlalchemy import select

    from server.lessons.models import Lesson, Rendition

    worker = running_worker(services)
    if not worker["up"]:
        raise click.ClickException(f"No worker is running ({worker['error']}). Start 'lessoncast run', "
                                   "and the renditions will be made.")
    with click.progressbar(length=1000, label="Making renditions", file=sys.stderr) as bar:
        done = 0
        while True:
            with services.db.session() as session:
                rows = session.execute(select(Rendition.state, Rendition.progress)
                                       .where(Rendition.lesson_id.in_(lesson_ids))).all()
            finished = all(state in ("ready", "failed") for state, _ in rows)
            total = sum(1.0 if state in ("ready", "failed") else progress for state, progress in rows)
            now = int(1000 * total / max(1, len(rows)))
            bar.update(max(0, now - done))
            done = max(done, now)
            if finished:
                break
            time.sleep(1)
    with services.db.session() as session:
        for lesson in session.scalars(select(Lesson).where(Lesson.id.in_(lesson_ids)).order_by(Lesson.id)):
            click.echo(f"lesson {lesson.id} {lesson.title}: {lesson.state}"
                       + (f" ({lesson.error['message']})" if lesson.error else ""))


def _media_files(paths):
    for root in paths:
        if root.is_file():
            yield root
            continue
        for path in root.rglob("*"):
            hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
            if path.is_file() and not hidden and path.suffix.lower() in MEDIA_EXTENSIONS:
                yield path


@click.group()
def lesson() -> None:
    """Look at lessons and their renditions."""


@lesson.command("list")
def lesson_list() -> None:
    """List lessons with their state and renditions."""
    from sqlalchemy import select

    from server.lessons.models import Lesson

    services = load_services()
    with services.db.session() as session:
        for item in session.scalars(select(Lesson).order_by(Lesson.id)):
            parts = ", ".join(f"{r.profile} {r.state}" for r in item.renditions)
            click.echo(f"{item.id:>5}  {item.state:<10} {item.title}  [{parts}]")


@click.group()
def db() -> None:
    """Database migrations."""


@db.command("upgrade")
@click.option("--revision", default="head", help="Revision to migrate to (default: the newest).")
def db_upgrade(revision: str) -> None:
    """Migrate the database up."""
    from server import migrate

    services = load_services()
    migrate.upgrade(services.settings.db_url, revision, card_key=services.card_key)
    click.echo("Database migrated.")


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Migrate the database down to REVISION ('base' empties it)."""
    from server import migrate

    migrate.downgrade(load_services().settings.db_url, revision)
    click.echo(f"Database at {revision}.")


def _child_env(settings) -> dict[str, str]:
    env = dict(os.environ)
    env[settings_mod.BY_NAME["data_dir"].env] = str(settings.data_path)
    return env


def _ingest_children(settings, env: dict[str, str]) -> list:
    """The ingest processes ``lessoncast run`` supervises; with several, each has its own stable client id."""
    import socket

    from server.supervisor import Child

    count = settings.ingest_processes
    if count == 1:
        return [Child("ingest", [sys.executable, "-m", "lessoncast", "ingest"], env)]
    host = socket.gethostname()
    return [Child(f"ingest-{n}", [sys.executable, "-m", "lessoncast", "ingest", "--client-id",
                                  f"lessoncast-ingest-{host}-{n}"], env) for n in range(1, count + 1)]


def _web_argv(settings, behind_nginx: bool = False) -> list[str]:
    """gunicorn on HOST:PORT, or behind nginx on a loopback port."""
    from server import nginx

    bind = nginx.backend_bind(settings) if behind_nginx else f"{settings.host}:{settings.port}"
    return [sys.executable, "-m", "gunicorn", "--worker-class", "gthread",
            "--workers", str(settings.web_workers), "--threads", str(settings.web_threads),
            "--bind", bind, "--graceful-timeout", "10", "--timeout", "120",
            *(["--access-logfile", "-"] if settings.access_log else []), "--log-level", settings.log_level.lower(),
            # gunicorn's control socket defaults to one path per user, which two stacks on one machine would share.
            "--no-control-socket",
            f"server.app:create_app(behind_nginx={behind_nginx})"]


def _web_children(services, env: dict[str, str]) -> list:
    """The web server ``lessoncast run`` supervises: gunicorn behind nginx, or gunicorn alone (LESSONCAST_NGINX)."""
    from server import nginx
    from server.supervisor import Child

    settings = services.settings
    if not settings.nginx:
        return [Child("web", _web_argv(settings), env)]
    executable = nginx.nginx_executable(services)
    if executable is None:
        raise click.ClickException(
            f"nginx ('{settings.nginx_bin}') is not installed. Install it (apt-get install nginx, or run 'make', "
            "which installs what lessoncast needs), or set LESSONCAST_NGINX=false when a reverse proxy of your own "
            "buffers requests in front of lessoncast.")
    try:
        conf = nginx.write_config(services)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    return [Child("web", _web_argv(settings, behind_nginx=True), env),
            Child("nginx", nginx.argv(executable, conf), env)]


@click.command()
def web() -> None:
    """Run the web server in the foreground (gunicorn, gthread workers, on HOST:PORT without nginx)."""
    settings = load_services().settings
    os.execve(sys.executable, _web_argv(settings), _child_env(settings))


@click.command()
def worker() -> None:
    """Run the job worker in the foreground (huey consumer plus lease reaper)."""
    from server.jobs import worker as worker_mod

    services = load_services()
    logging.basicConfig(level=services.settings.log_level, format="%(asctime)s worker %(levelname)s %(message)s")
    worker_mod.run(services)


@click.command()
@click.option("--write-only", is_flag=True, help="Only write the config files, then exit.")
def broker(write_only: bool) -> None:
    """Write the Mosquitto config into the data directory and run Mosquitto in the foreground."""
    from server.messaging.broker import mosquitto_executable, write_config

    services = load_services()
    conf = write_config(services)
    click.echo(f"Broker config: {conf}", err=True)
    if not write_only:
        executable = mosquitto_executable(services)
        if executable is None:
            raise click.ClickException("Mosquitto is not installed: apt-get install mosquitto")
        os.execv(executable, [executable, "-c", str(conf)])


def _quiet_logging(settings) -> None:
    """The supervisor's log: its own lines at LOG_LEVEL; Alembic's per-migration chatter only when debugging."""
    logging.basicConfig(level=settings.log_level, format="%(asctime)s run %(levelname)s %(message)s")
    if settings.log_level.upper() != "DEBUG":
        logging.getLogger("alembic").setLevel(logging.WARNING)


def _claim_instance(services):
    """Take the instance's run lock and check every port the stack binds; a CLI error naming what is in the way.
    Returns the lock, held until this process exits."""
    from server import ports
    from server.run_lock import AlreadyRunning, RunLock

    try:
        lock = RunLock(services.data).acquire()
    except AlreadyRunning as exc:
        raise click.ClickException(say(
            _("lessoncast is already running on the instance in %(path)s (pid %(pid)s). Stop it first (Ctrl-C in "
              "its terminal, or: kill %(pid)s), or give this one its own %(setting)s."),
            path=services.data, pid=exc.pid if exc.pid else "?", setting="LESSONCAST_DATA_DIR")) from None
    clashes = ports.check(ports.stack_ports(services.settings))
    if clashes:
        lock.release()
        raise click.ClickException("\n".join(_clash_line(clash) for clash in clashes))
    return lock


def _clash_line(clash) -> str:
    """One port the stack cannot bind, in words: the port, what would listen there, the setting, the holder."""
    port = clash.port
    where = say(_("Port %(port)s (%(what)s, %(host)s)"), port=port.port, what=say(port.what), host=port.host)
    if clash.reason == "twice":
        return where + " " + say(_("is given to two listeners of this stack: set %(setting)s to another port."),
                                 setting=port.setting)
    if clash.reason == "denied":
        problem = say(_("cannot be opened by this account (a port below 1024 needs root)."))
    elif clash.holder_pid:
        problem = say(_("is in use by pid %(pid)s: %(command)s."), pid=clash.holder_pid, command=clash.holder)
    else:
        problem = say(_("is in use by another program (this account cannot see which)."))
    if port.derived_from:
        fix = say(_("Stop that program, or set %(setting)s (it is %(base)s + 1 unless set), or move this stack with "
                    "%(base)s."), setting=port.setting, base=port.derived_from)
    else:
        fix = say(_("Stop that program, or move this stack with %(setting)s."), setting=port.setting)
    return f"{where} {problem} {fix}"


@click.command()
def run() -> None:
    """Start the whole stack: broker, worker, ingest and web (nginx and gunicorn), supervised until Ctrl-C."""
    from server.messaging.broker import mosquitto_executable, write_config
    from server.supervisor import Child, Supervisor

    services = load_services(require_instance=False)
    settings = services.settings
    _quiet_logging(settings)
    lock = _claim_instance(services)
    initialised(services)
    remember_instance(services)
    env = _child_env(settings)
    children = []
    if not settings.mqtt_url:
        executable = mosquitto_executable(services)
        if executable is None:
            raise click.ClickException(
                f"Mosquitto ('{settings.mosquitto_bin}') is not installed. Install it (apt-get install mosquitto) "
                "or point LESSONCAST_MQTT_URL at an external broker.")
        conf = write_config(services)
        children.append(Child("broker", [executable, "-c", str(conf)], env))
    children.append(Child("worker", [sys.executable, "-m", "lessoncast", "worker"], env))
    children += _ingest_children(settings, env)
    children += _web_children(services, env)

    def ready() -> None:
        click.secho(f"lessoncast is running: {settings.web_url}  (data in {services.data}). Ctrl-C stops it.",
                    fg="green", err=True)

    try:
        status = Supervisor(children, on_ready=ready).run()
    finally:
        lock.release()
    sys.exit(status)
