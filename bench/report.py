"""Benchmark: the participation report, the study-hours report and the site logbooks over the same county at
50,000 and at 5,000,000 events.

A report reads only the attendance aggregates that ingest keeps up to date, so its cost should follow the number of
members and sites, not the number of events. This builds two databases with the same county (townships, sites,
members, radios, terminals, lessons, a published 2026-Q4 programme) and the same calendar of class sessions and
broadcasts, then stores 50,000 and 5,000,000 events with bench/county_data.py (ingest's own parsing, attribution and
attendance folding, a device's events at a time; ``tests/server/test_county_data.py`` checks it stores what
``server.events.ingest.store_in`` stores batch by batch). With more events, radios listen more (longer sittings,
replays, more lessons) and the terminals' plays are reported in finer progress steps; the county stays the same.

It times ``server.attendance.reports.participation`` for 2026-Q4 (every table: county, townships, sites, members, sites
without a class, the untrained list of the year) plus its JSON rendering, best of --repeat runs, on each database,
and prints the ratio. It does the same for the study-hours report of 2026 (``server.training.hours.collect``, every
member against quota, sites and townships, as JSON) and for the logbooks of every site for November 2026
(``server.training.logbooks.logbook`` for each site, as XLSX, plus the month's site-rules check). Target for each:
large ≤ 2 × small.

    .venv/bin/python bench/report.py                      # 50k vs 5M events (building the 5M takes minutes)
    .venv/bin/python bench/report.py --large 500000       # a quicker look
    .venv/bin/python bench/report.py --keep /tmp/lc-bench # keep (and reuse) the databases
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import county_data  # noqa: E402
from server.attendance import report_export, reports  # noqa: E402
from sqlalchemy import select  # noqa: E402

from server.accounts.scope import COUNTY  # noqa: E402
from server.org.models import Site  # noqa: E402
from server.training import hours, hours_export, logbooks  # noqa: E402
from tests.conftest import make_services  # noqa: E402

RECEIVED = county_data.RECEIVED


def build(path: Path, args, total: int) -> object:
    """An instance in PATH holding the county of ARGS and TOTAL events (bench/county_data.py), reused when PATH
    already holds it."""
    marker = path / "built.json"
    spec = county_data.CountySpec(townships=args.townships, sites_per_township=args.sites,
                                  members_per_site=args.members, radios_per_site=args.radios)
    wanted = {"events": total, "spec": repr(spec)}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return make_services(path)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    services = make_services(path)
    started = time.perf_counter()
    county = county_data.build(services, spec, total, progress=lambda done, of: print(
        f"  {path.name}: {done:,} of {of:,} events stored ({done / (time.perf_counter() - started):,.0f}/s)",
        file=sys.stderr))
    assert county.events == total, (county.events, total)
    marker.write_text(json.dumps(wanted))
    print(f"  {path.name}: {total:,} events stored in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return services


def time_report(services, repeat: int) -> tuple[float, dict]:
    best, summary = float("inf"), {}
    for _ in range(repeat):
        with services.db.session() as session:
            t0 = time.perf_counter()
            report = reports.participation(session, "2026-Q4", services.rules, now=RECEIVED)
            report_export.render(report_export.tables(report), report_export.report_meta(report), "json")
            best = min(best, time.perf_counter() - t0)
        summary = {"members": len(report.members), "sites": len(report.sites), "rate": report.county.rate,
                   "classes": report.county.classes, "untrained": len(report.untrained_this_year)}
    return best, summary


def time_hours(services, repeat: int) -> tuple[float, dict]:
    """Best time of the study-hours report of 2026 with its JSON rendering."""
    best, report = float("inf"), None
    hrules = hours.hour_rules_from(services.settings)
    for _ in range(repeat):
        with services.db.session() as session:
            t0 = time.perf_counter()
            report = hours.collect(session, 2026, services.rules, hrules, now=RECEIVED)
            report_export.render(hours_export.tables(report), hours_export.meta(report), "json")
            best = min(best, time.perf_counter() - t0)
    return best, {"members": len(report.members), "hours": report.county.hours,
                  "below_quota": report.county.below_quota}


def time_logbooks(services, repeat: int) -> tuple[float, dict]:
    """Best time of every site's November logbooks as XLSX, plus the month's site-rules check."""
    best, rows, short = float("inf"), 0, 0
    hrules = hours.hour_rules_from(services.settings)
    site_rules = logbooks.site_rules_from(services.settings)
    report_export.render([], {}, "xlsx")  # openpyxl's first import (a second) belongs to neither size
    for _ in range(max(2, repeat // 2)):
        with services.db.session() as session:
            codes = list(session.scalars(select(Site.code).order_by(Site.code)))
            t0 = time.perf_counter()
            rows = 0
            for code in codes:
                tables, meta = logbooks.logbook(session, code, "2026-11", services.rules, hrules, COUNTY)
                report_export.render(tables, meta, "xlsx")
                rows += sum(len(t.rows) for t in tables)
            short = sum(1 for s in logbooks.shortfalls(session, "2026-11", services.rules, site_rules) if s.short)
            best = min(best, time.perf_counter() - t0)
    return best, {"sites": len(codes), "rows": rows, "short": short}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=50_000)
    parser.add_argument("--large", type=int, default=5_000_000)
    parser.add_argument("--townships", type=int, default=10)
    parser.add_argument("--sites", type=int, default=20, help="sites per township")
    parser.add_argument("--members", type=int, default=50, help="members per site")
    parser.add_argument("--radios", type=int, default=20, help="radios per site")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", default="", help="time only these, e.g. hours,logbooks (default: all three)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the databases here (and reuse them)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="lc-bench-report-"))
    try:
        small = build(root / "small", args, args.small)
        large = build(root / "large", args, args.large)
        skip = (float("nan"), {})
        wanted = set(args.only.split(",")) if args.only else {"participation", "hours", "logbooks"}
        small_s, small_summary = time_report(small, args.repeat) if "participation" in wanted else skip
        large_s, large_summary = time_report(large, args.repeat) if "participation" in wanted else skip
        small_h, small_hs = time_hours(small, args.repeat) if "hours" in wanted else skip
        large_h, large_hs = time_hours(large, args.repeat) if "hours" in wanted else skip
        small_l, small_ls = time_logbooks(small, args.repeat) if "logbooks" in wanted else skip
        large_l, large_ls = time_logbooks(large, args.repeat) if "logbooks" in wanted else skip
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    ratio = large_s / small_s
    print(f"{'events':>12} {'report (s)':>11}  summary")
    print(f"{args.small:>12,} {small_s:>11.3f}  {small_summary}")
    print(f"{args.large:>12,} {large_s:>11.3f}  {large_summary}")
    print(f"ratio {ratio:.2f} (target <= 2.0)")
    hours_ratio, logbook_ratio = large_h / small_h, large_l / small_l
    print(f"{'events':>12} {'hours (s)':>11}  summary")
    print(f"{args.small:>12,} {small_h:>11.3f}  {small_hs}")
    print(f"{args.large:>12,} {large_h:>11.3f}  {large_hs}")
    print(f"study-hours ratio {hours_ratio:.2f} (target <= 2.0)")
    print(f"{'events':>12} {'logbooks (s)':>12}  summary")
    print(f"{args.small:>12,} {small_l:>12.3f}  {small_ls}")
    print(f"{args.large:>12,} {large_l:>12.3f}  {large_ls}")
    print(f"logbooks ratio {logbook_ratio:.2f} (target <= 2.0)")
    print(json.dumps({"small_events": args.small, "large_events": args.large, "small_s": round(small_s, 4),
                      "large_s": round(large_s, 4), "ratio": round(ratio, 3),
                      "hours_small_s": round(small_h, 4), "hours_large_s": round(large_h, 4),
                      "hours_ratio": round(hours_ratio, 3), "logbooks_small_s": round(small_l, 4),
                      "logbooks_large_s": round(large_l, 4), "logbooks_ratio": round(logbook_ratio, 3),
                      "members": args.townships * args.sites * args.members, "sites": args.townships * args.sites}))


if __name__ == "__main__":
    main()
