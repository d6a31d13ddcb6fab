"""A read request writes nothing: a token's last use is noted in memory and written by a background thread at most
once a minute, so reads never wait for SQLite's write lock (held by ingest, jobs or a long import)."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from server.accounts.models import ApiToken

T0 = datetime(2026, 10, 3, 12, 0, 0, tzinfo=timezone.utc)


def _last_used(services):
    with services.db.session() as session:
        return session.scalar(select(ApiToken.last_used_at))


def test_a_read_answers_while_another_connection_holds_the_write_lock(client, services, token):
    services.clock = lambda: T0
    headers = {"Authorization": f"Bearer {token('viewer')}"}
    holder = sqlite3.connect(services.data / "lessoncast.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # what ingest's commits or a long import do to every other writer
    try:
        # Before, the request wrote last_used_at, waited for the lock (15 s busy timeout) and answered 500.
        response = client.get("/api/v1/lessons", headers=headers)
        assert response.status_code == 200, response.get_json()
        assert client.get("/api/v1/lessons", headers=headers).status_code == 200
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert _last_used(services) is None
    assert services.token_use.flush() == 1
    assert _last_used(services) == T0


def test_last_use_is_written_at_most_once_a_minute(client, services, token):
    now = [T0]
    services.clock = lambda: now[0]
    headers = {"Authorization": f"Bearer {token('viewer')}"}
    assert client.get("/api/v1/lessons", headers=headers).status_code == 200
    assert services.token_use.flush() == 1
    now[0] = T0 + timedelta(seconds=30)
    assert client.get("/api/v1/lessons", headers=headers).status_code == 200
    assert services.token_use.flush() == 0  # written 30 s ago: nothing to write
    now[0] = T0 + timedelta(seconds=61)
    assert client.get("/api/v1/lessons", headers=headers).status_code == 200
    assert services.token_use.flush() == 1
    assert _last_used(services) == T0 + timedelta(seconds=61)


def test_the_background_thread_writes_the_notes(client, services, token):
    from tests.e2e.stack import wait_for

    services.clock = lambda: T0
    services.token_use.every_s = 0.05
    assert client.get("/api/v1/lessons", headers={"Authorization": f"Bearer {token('viewer')}"}).status_code == 200
    wait_for(lambda: _last_used(services) == T0, 10, "the token's last use to be written")
