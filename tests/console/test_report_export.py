"""The console's export buttons give the files `lessoncast report` writes: the same CSV bytes for every table, and
the same XLSX cells on every sheet but the first (which says when it was made)."""

from __future__ import annotations

import io
import re

from click.testing import CliRunner
from openpyxl import load_workbook

from lessoncast.cli import main
from tests.conftest import cli_env
from tests.console.conftest import PASSWORD
from tests.server.test_reports import make_county

TABLES = ("county", "townships", "sites", "members", "sites_without_class", "untrained")


def _cli(services, *args: str) -> bytes:
    result = CliRunner().invoke(main, ["report", "--period", "2026-Q4", *args, "-o", "-"], env=cli_env(services))
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


def _sheets(data: bytes) -> list[list[tuple]]:
    return [list(sheet.iter_rows(values_only=True)) for sheet in load_workbook(io.BytesIO(data)).worksheets[1:]]


def test_console_exports_equal_the_command_lines(services, app, staff):
    make_county(services)
    staff("dept", "viewer")
    client = app.test_client()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    assert client.post("/login", data={"username": "dept", "password": PASSWORD, "csrf_token": csrf}).status_code == 302
    for table in TABLES:
        page = client.get(f"/attendance/export?period=2026-Q4&format=csv&table={table}")
        assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
        assert page.data == _cli(services, "--format", "csv", "--table", table), table
    page = client.get("/attendance/export?period=2026-Q4&format=xlsx&township=t00")
    assert _sheets(page.data) == _sheets(_cli(services, "--format", "xlsx", "--township", "t00"))
    assert client.get("/attendance/export?period=2026-Q4&format=pdf").status_code == 422
