"""Fixtures for the fault scenarios: the account recorder and a PostgreSQL database shared by a module's scenarios."""

from __future__ import annotations

import pytest

from tests.conftest import new_pg_database
from tests.e2e.faults.accounting import record


@pytest.fixture
def fault_account(request):
    """fault_account(Account): print the account, list it in the terminal summary, assert nothing lost."""
    return lambda account: record(request, account)


@pytest.fixture(scope="module")
def module_pg_url():
    """A new PostgreSQL database for one module's scenarios (they share one stack), dropped afterwards."""
    with new_pg_database("lc_faults") as url:
        yield url


@pytest.fixture
def small_fs(tmp_path):
    """small_fs('8m') -> a directory on a tmpfs of that size, so a filling disk gives real ENOSPC; unmounted after.

    Needs the right to mount (root, as in the project's test machines); skipped where it is missing.
    """
    import subprocess

    mounted = []

    def make(size: str):
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")
        mounted.append(where)
        return where

    yield make
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(directory, leave: int) -> int:
    """Fill DIRECTORY's filesystem with a file until LEAVE bytes are free; return the filler's size."""
    import os

    free = os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize
    size = max(0, free - leave)
    with open(directory / "filler", "wb") as out:
        out.write(b"\0" * size)  # tmpfs counts written pages, so zeroes take real room
    return size
