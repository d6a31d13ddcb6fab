"""Build one export's file: ``python -m server.attendance.export_build EXPORT_ID PATH``, run by the worker
(``server.attendance.exports``).

It reads the export's parameters and the scope of whoever asked, computes the report, and writes the file to PATH
(mode 0600) with openpyxl's write-only mode for XLSX. On stdout it prints ``progress <share>`` lines while it
writes, then ``done <rows> <peak RSS in KiB>``; errors go to stderr, which the worker keeps on the failed job.
"""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path
from typing import Optional

from server import settings as settings_mod
from server.attendance import report_export, reports
from server.attendance.models import Export
from server.services import Services

REPORT_SHARE = 0.3  # of the progress bar: computing the report, before the first row is written


def _progress(share: float) -> None:
    print(f"progress {share:.3f}", flush=True)


def scope_of(export: Export) -> Optional[str]:
    """The township the report covers: an operator's own, whatever the parameters say (checked again here, at
    build time, from who asked); staff get what they asked for."""
    return export.township if export.role == "operator" else export.params.get("township")


def build(services: Services, export_id: int, out: Path) -> int:
    """Write the export's file to OUT; return the rows written."""
    with services.db.session() as session:
        export = session.get(Export, export_id)
        params = dict(export.params)
        _progress(0.0)
        report = reports.participation(session, params["period"], services.rules, township=scope_of(export),
                                       now=export.requested_at, programme=bool(params["programme"]))
    _progress(REPORT_SHARE)
    tables, meta = report_export.tables(report), report_export.report_meta(report)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        if params["format"] == "xlsx":
            rows = report_export.write_xlsx(tables, meta, fh, params.get("language"),
                                            on_progress=lambda s: _progress(REPORT_SHARE + (1 - REPORT_SHARE) * s))
        else:
            data, _media_type = report_export.render(tables, meta, params["format"], table=params.get("table"),
                                                     language=params.get("language"))
            fh.write(data)
            rows = sum(len(t.rows) for t in tables)
        fh.flush()
        os.fsync(fh.fileno())
    return rows


def main(argv: list[str]) -> int:
    """Entry point; the exit status tells the worker whether the file is complete."""
    export_id, out = int(argv[0]), Path(argv[1])
    services = Services(settings_mod.load())
    try:
        rows = build(services, export_id, out)
    finally:
        services.db.dispose()
    print(f"done {rows} {peak_rss_kib()}", flush=True)
    return 0


def peak_rss_kib() -> int:
    """This process's own peak resident memory in KiB.

    ``ru_maxrss`` survives execve, so a child started from a large parent reports the parent's size; the kernel's
    VmHWM belongs to the new address space and does not, so it is read first."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass  # not Linux: fall back to getrusage, which is right when the parent was small
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
