"""Fixtures for the fault scenarios: the account recorder and a PostgreSQL database shared by a module's scenarios."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.faults.accounting import record


@pytest.fixture
def fault_account(request):
    """fault_account(Account): print the account, list it in the terminal summary, assert nothing lost."""
    return lambda account: record(request, account)


@pytest.fixture(scope="module")
def module_pg_url():
    """A new PostgreSQL database for one module's scenarios (they share one stack), dropped afterwards."""
    from sqlalchemy import create_engine, text

    from tests.conftest import PG_ADMIN

    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"lc_faults_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # PostgreSQL on 127.0.0.1:5432 is part of the test environment
        pytest.fail(f"these tests need PostgreSQL at {PG_ADMIN}: {exc}")
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
