"""Benchmark: the XLSX participation report of a 100,000-member county, asked for over the API and built by the
worker, against building it in memory the way a web request used to.

It writes a county of 10 townships, 200 sites and --members members (bulk inserts: ``tests.attendance_data``), then:

- asks ``GET /api/v1/reports/participation?period=2026-Q4&format=xlsx`` through the Flask app in this process (after
  one large request that imports the export code) and measures what the request allocated (tracemalloc peak) and
  this process's RSS: the web side;
- runs the export job as the worker does (``server.jobs.runner.run_job``: a child process writes the XLSX in
openpyxl's
  write-only mode) and reads the child's peak RSS, which the job records on the export;
- as the reference, builds the same workbook in a child process with an ordinary in-memory openpyxl Workbook (what
  ``GET .../participation?format=xlsx`` did in the web process before) and measures that child's peak RSS.

    .venv/bin/python bench/export.py                    # 100,000 members
    .venv/bin/python bench/export.py --members 20000    # a quicker look
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import select  # noqa: E402

from server.attendance import report_export, reports  # noqa: E402
from server.attendance.models import Export
from server.jobs.models import Job  # noqa: E402

NOW = datetime(2027, 1, 5, tzinfo=timezone.utc)


def rss_mib() -> float:
    """This process's resident memory now."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def in_memory_xlsx(data_dir: str) -> None:
    """The reference, in a child: the report and an ordinary (in-memory) openpyxl workbook of it; prints JSON."""
    from openpyxl import Workbook

    from tests.conftest import make_services

    services = make_services(Path(data_dir))
    started = time.perf_counter()
    with services.db.session() as session:
        report = reports.participation(session, "2026-Q4", services.rules, now=NOW)
    book = Workbook()
    for table in report_export.tables(report):
        sheet = book.create_sheet(table.title)
        sheet.append([h for _k, h in table.columns])
        for row in table.rows:
            sheet.append([report_export._xlsx_cell(v) for v in row])
    buffer = io.BytesIO()
    book.save(buffer)
    print(json.dumps({"seconds": time.perf_counter() - started,
                      "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=100_000, help="members in the county (a multiple of 200)")
    parser.add_argument("--reference-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference_child:
        in_memory_xlsx(args.reference_child)
        return

    from server.accounts.auth import create_token
    from server.app import create_app
    from server.jobs.runner import run_job
    from tests.attendance_data import add_members, build_county
    from tests.conftest import make_services

    root = Path(tempfile.mkdtemp(prefix="lc-bench-export-"))
    try:
        services = make_services(root / "data")
        county = build_county(services, townships=10, sites_per_township=20, members_per_site=2, radios_per_site=2)
        add_members(services, county, args.members // 200 - 2)
        client = create_app(services=services).test_client()
        with services.db.session() as session:
            token = create_token(session, name="bench", role="admin", township=None, now=services.clock())
        headers = {"Authorization": f"Bearer {token}"}
        # A first large request imports the export code and opens the job queue, once per web process.
        warm = client.get("/api/v1/reports/participation?period=2026-Q4&format=csv", headers=headers)
        assert warm.status_code == 202, warm.data

        rss_before = rss_mib()
        tracemalloc.start()
        started = time.perf_counter()
        answer = client.get("/api/v1/reports/participation?period=2026-Q4&format=xlsx", headers=headers)
        web_s = time.perf_counter() - started
        web_peak_mib = tracemalloc.get_traced_memory()[1] / 1024**2
        tracemalloc.stop()
        rss_after = rss_mib()
        assert answer.status_code == 202, answer.data

        with services.db.session() as session:
            job_id = session.scalar(select(Job.id).where(Job.kind == "export").order_by(Job.id.desc()).limit(1))
        started = time.perf_counter()
        run_job(services, job_id)
        job_s = time.perf_counter() - started
        with services.db.session() as session:
            export = session.scalar(select(Export).where(Export.job_id == job_id))
            job = session.get(Job, job_id)
            assert job.state == "done", job.error
            job_peak_mib, rows, size = export.peak_rss_kb / 1024, export.rows, export.size_bytes

        child = subprocess.run([sys.executable, __file__, "--reference-child", str(root / "data")],
                               capture_output=True, text=True, check=True)
        reference = json.loads(child.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(root, ignore_errors=True)

    ratio = job_peak_mib / reference["peak_mib"]
    print(f"{args.members:,} members, {rows:,} rows, XLSX {size / 1024**2:.1f} MB")
    print(f"{'':38} {'seconds':>8} {'peak MiB':>9}")
    print(f"{'web request (answers 202)':38} {web_s:>8.2f} {web_peak_mib:>9.1f}  (tracemalloc; RSS "
          f"{rss_before:.0f} -> {rss_after:.0f} MiB)")
    print(f"{'export job (write-only, child process)':38} {job_s:>8.1f} {job_peak_mib:>9.0f}  (peak RSS)")
    print(f"{'reference: in-memory workbook':38} {reference['seconds']:>8.1f} {reference['peak_mib']:>9.0f}  "
          "(peak RSS)")
    print(f"job peak / reference peak: {ratio:.2f}")
    print(json.dumps({"members": args.members, "rows": rows, "xlsx_bytes": size, "web_s": round(web_s, 3),
                      "web_peak_mib": round(web_peak_mib, 2), "web_rss_before_mib": round(rss_before),
                      "web_rss_after_mib": round(rss_after), "job_s": round(job_s, 1),
                      "job_peak_rss_mib": round(job_peak_mib), "reference_s": round(reference["seconds"], 1),
                      "reference_peak_rss_mib": round(reference["peak_mib"]), "ratio": round(ratio, 3)}))


if __name__ == "__main__":
    main()
