"""Report exports built by the job worker, so a large report never grows a web process.

A request records an ``Export``: who asked, the township scope they had, the report's parameters, and a job of kind
"export". The worker claims the job under a lease like any transcoding job (``server.jobs.leases``): it is retried when
its worker dies, reports progress, and is finished only by the lease holder. The file itself is built by a child process
(``server.attendance.export_build``), so the worker never holds a 100,000-member report, memory goes back to the system
when it ends, and the child's peak memory is recorded on the export. Files go to ``<data>/exports/`` with mode 0600;
only the token that asked (or an admin) may download one, until it expires.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional

from sqlalchemy import delete, func, select

from server.accounts.auth import Actor
from server.attendance import reports
from server.attendance.models import Export
from server.attendance.report_export import FORMATS
from server.errors import BadRequest, NotFound
from server.i18n import _l
from server.jobs import leases as jobs
from server.jobs.models import Job
from server.org.models import Member, Site, Township
from server.services import Services
from server.settings import SETTINGS

log = logging.getLogger(__name__)
KIND = "export"
REPORTS = ("participation",)
TABLES = ("county", "townships", "sites", "members", "sites_without_class", "untrained")
MEDIA_TYPES = {"xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
               "csv": "text/csv; charset=utf-8", "json": "application/json"}


@dataclass(frozen=True)
class ReportRequest:
    """What to build: a participation report of a period or programme, for a township or the county, in a format."""

    period: str
    programme: bool
    township: Optional[str]
    format: str
    table: Optional[str]
    language: str

    def filename(self) -> str:
        """The download name, as the inline report would name it."""
        stem = f"report-{self.period}" + (f"-{self.township}" if self.township else "")
        return f"{stem}{'-' + self.table if self.format == 'csv' and self.table else ''}.{self.format}"


def exports_dir(services: Services) -> Path:
    """Where finished export files are kept (0700: they hold members' names)."""
    path = services.data / "exports"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def members_in_scope(services: Services, township: Optional[str]) -> int:
    """How many members a report of TOWNSHIP (None: the county) covers: what its cost follows."""
    query = select(func.count(Member.id))
    if township:
        query = query.join(Site, Member.site_id == Site.id).join(Township).where(Township.code == township)
    with services.db.session() as session:
        return session.scalar(query) or 0


def is_large(services: Services, township: Optional[str]) -> bool:
    """Whether a report of TOWNSHIP is built by the worker rather than in the request."""
    return members_in_scope(services, township) > services.settings.report_inline_members


def validate(services: Services, req: ReportRequest) -> None:
    """Refuse now what the job would refuse later: an unknown format, table, period, programme or township."""
    if req.format not in FORMATS:
        raise BadRequest("bad_format", _l("format {format!r}: use one of {choices}.",
                                          format=req.format, choices=', '.join(FORMATS)))
    if req.table is not None and req.table not in TABLES:
        raise BadRequest("bad_format", _l("table {table!r}: a CSV holds one of {choices}.",
                                          table=req.table, choices=', '.join(TABLES)))
    with services.db.session() as session:
        reports.resolve_period(session, req.period, services.rules, programme=req.programme)
        if req.township and not session.scalar(
                select(func.count(Site.id)).join(Township).where(Township.code == req.township)):
            raise NotFound("unknown_township", _l("There is no township {township!r} with sites.",
                                                  township=req.township))


def request_export(services: Services, actor: Actor, req: ReportRequest) -> int:
    """Record an export for ACTOR and queue the job that builds it; return the export id.

    The same request again while its export is still being built returns that export, so a client that asks
    again and again (a reloaded page) queues one build, not one per request.
    """
    validate(services, req)
    params = {"period": req.period, "programme": req.programme, "township": req.township, "format": req.format,
              "table": req.table if req.format == "csv" else None, "language": req.language}
    now = services.clock()
    with services.db.session() as session:
        building = session.execute(
            select(Export.id, Export.params).join(Job, Job.id == Export.job_id)
            .where(Export.token_id == actor.token_id, Export.requested_by == actor.name,
                   Job.state.in_(("queued", "running")))).all()
        same = next((export_id for export_id, p in building if p == params), None)
        if same is not None:
            return same
        job = jobs.new_job(session, kind=KIND, lesson_id=None, rendition_id=None, now=now)
        session.flush()
        export = Export(job_id=job.id, report="participation", params=params,
            token_id=actor.token_id, requested_by=actor.name, role=actor.role, township=actor.township,
            requested_at=now, expires_at=now + timedelta(seconds=services.settings.export_expiry),
            filename=req.filename())
        session.add(export)
        session.flush()
        export_id, job_id = export.id, job.id
    services.queue.enqueue(job_id)
    return export_id


def may_read(actor: Actor, export: Export) -> bool:
    """Only the token that asked for an export reads it, and admins: it holds what that token's scope showed."""
    return actor.role == "admin" or (actor.token_id is not None and actor.token_id == export.token_id)


def get_for(services: Services, export_id: int, actor: Actor) -> tuple[Export, Job]:
    """The export and its job, or 404 when it does not exist, expired, or is not the actor's to read."""
    with services.db.session() as session:
        export = session.get(Export, export_id)
        job = session.get(Job, export.job_id) if export is not None else None
    if export is None or job is None or not may_read(actor, export) or export.expires_at < services.clock():
        raise NotFound("export_not_found", _l("There is no export {export_id} for this token; it may have expired. "
                                              "Ask for the report again.",
                                              export_id=export_id))
    return export, job


def export_json(export: Export, job: Job) -> dict[str, Any]:
    """What the API shows of an export: its state, progress in percent, and the download link when done."""
    done = job.state == "done" and export.stored_as is not None
    return {"id": export.id, "report": export.report, **export.params, "state": job.state,
            "progress": round(100 * (1.0 if done else job.progress), 1), "requested_by": export.requested_by,
            "requested_at": export.requested_at.isoformat(), "expires_at": export.expires_at.isoformat(),
            "url": f"/api/v1/exports/{export.id}",
            "download_url": f"/api/v1/exports/{export.id}/file" if done else None,
            "filename": export.filename, "size_bytes": export.size_bytes, "rows": export.rows,
            "error": job.error}


def file_path(services: Services, export: Export) -> Optional[Path]:
    """The finished file of an export, or None while it is being built."""
    if export.stored_as is None:
        return None
    path = exports_dir(services) / export.stored_as
    return path if path.is_file() else None


def run(services: Services, claim: jobs.Claim) -> None:
    """Build an export's file in a child process under the job's lease, then record it (the worker's side)."""
    try:
        _run(services, claim)
    except Exception as exc:
        # Ours, not the report's (the database, a full disk): fail the job with the reason rather than leave it
        # running until its lease runs out.
        log.exception("export job %s failed", claim.job_id)
        _fail(services, claim, {"code": "internal_error",
                                "message": f"{type(exc).__name__}: {exc}. Fix the cause, then ask again."})


def _run(services: Services, claim: jobs.Claim) -> None:
    with services.db.session() as session:
        export = session.scalar(select(Export).where(Export.job_id == claim.job_id))
    if export is None:
        _fail(services, claim, {"code": "export_gone", "message": "The export was deleted before it was built."})
        return
    directory = exports_dir(services)
    stored_as = f"{export.id}-{secrets.token_hex(8)}.{export.params['format']}"
    partial = directory / f"{stored_as}.part"
    errors = directory / f"{stored_as}.log"
    ticker = jobs.Ticker(services, claim)
    try:
        with ticker.running(), os.fdopen(os.open(errors, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600), "w+",
                                         encoding="utf-8") as stderr:
            result = _build_in_child(services, export.id, partial, stderr, ticker)
            stderr.seek(0)
            tail = stderr.read()[-2000:]
        if ticker.lost:
            log.warning("export job %s lost its lease; its file is discarded", claim.job_id)
            return
        if result is None:
            _fail(services, claim, {"code": "export_failed",
                                    "message": "Building the report failed; the reason is in 'log'. Fix the cause, "
                                               "then ask for the report again.", "log": tail.splitlines()[-20:]})
            return
        os.replace(partial, directory / stored_as)
        now = services.clock()
        with services.db.session() as session:
            if not jobs.finish(session, claim, now):
                (directory / stored_as).unlink(missing_ok=True)
                return
            row = session.get(Export, export.id)
            row.stored_as, row.size_bytes = stored_as, (directory / stored_as).stat().st_size
            row.rows, row.peak_rss_kb = result
            row.expires_at = now + timedelta(seconds=services.settings.export_expiry)
        log.info("export %s built: %s rows, child peak %.0f MB", export.id, result[0], result[1] / 1024)
    finally:
        partial.unlink(missing_ok=True)
        errors.unlink(missing_ok=True)


def _build_in_child(services: Services, export_id: int, partial: Path, stderr, ticker) -> Optional[tuple[int, int]]:
    """Run ``server.attendance.export_build``; relay its progress lines; (rows, peak RSS in KiB), or None when it
    failed."""
    argv = [sys.executable, "-m", "server.attendance.export_build", str(export_id), str(partial)]
    result = None
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True,
                          env=child_env(services)) as child:
        for line in child.stdout:
            word, *values = line.split()
            if word == "progress":
                ticker(float(values[0]))
            elif word == "done":
                result = (int(values[0]), int(values[1]))
            if ticker.lost:
                child.send_signal(signal.SIGKILL)
        code = child.wait()
    if code != 0:
        log.warning("export %s: builder exited with %s", export_id, code)
        return None
    return result


def child_env(services: Services) -> dict[str, str]:
    """The environment of a builder: this process's, with every effective setting spelled out, so the child sees
    the same instance whichever way these settings were given (environment, config file, arguments)."""
    env = dict(os.environ)
    for setting in SETTINGS:
        value = services.settings[setting.name]
        env[setting.env] = str(services.settings.data_path) if setting.name == "data_dir" else str(value)
    return env


def _fail(services: Services, claim: jobs.Claim, error: dict) -> None:
    with services.db.session() as session:
        jobs.finish(session, claim, services.clock(), state="failed", error=error)
    log.warning("export job %s failed: %s", claim.job_id, error.get("message"))


def expire(services: Services) -> int:
    """Delete exports past their expiry with their files and jobs, and files of builds that stopped; return how
    many exports."""
    now = services.clock()
    with services.db.session() as session:
        stale = session.execute(select(Export.id, Export.job_id, Export.stored_as)
                                .where(Export.expires_at < now)).all()
        running = set(session.scalars(select(Export.id).join(Job, Job.id == Export.job_id)
                                      .where(Job.state.in_(("queued", "running")))))
        for _id, job_id, _stored in stale:
            session.execute(delete(Export).where(Export.job_id == job_id))
            session.execute(delete(Job).where(Job.id == job_id))
    directory = exports_dir(services)
    for _id, _job, stored_as in stale:
        if stored_as:
            (directory / stored_as).unlink(missing_ok=True)
    for path in directory.iterdir():
        # A build whose worker died leaves a .part (and its .log); the next attempt writes under a new name.
        head = path.name.split("-", 1)[0]
        if path.suffix in (".part", ".log") and head.isdigit() and int(head) not in running:
            path.unlink(missing_ok=True)
    return len(stale)
