"""Retained MQTT messages as database rows: set them in a transaction, then flush what the broker lacks.

A publish or an enrolment writes rows and commits; ``flush`` sends every row whose version the broker has not
acknowledged. A broker that is down loses nothing: the worker flushes again until it succeeds.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Optional

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from server.messaging.models import RetainedMessage
from server.messaging.mqtt_link import BrokerAddress, BrokerUnavailable, ServerLink

log = logging.getLogger(__name__)


def put(session: Session, topic: str, payload: bytes, now: datetime, *, again: bool = False) -> bool:
    """Set the retained message of TOPIC; True if it changed (and so must be sent). AGAIN sends it even unchanged
    (the broker may have lost or reordered its copy)."""
    row = session.get(RetainedMessage, topic)
    if row is None:
        session.add(RetainedMessage(topic=topic, payload=payload, version=1, sent_version=0, updated_at=now))
        return True
    if row.payload == payload and not (again and row.sent_version >= row.version):
        return False
    row.payload, row.version, row.updated_at = payload, row.version + 1, now
    return True


def load(session: Session, topics) -> list[RetainedMessage]:
    """Read the rows of TOPICS into SESSION in one query, so ``put`` on each of them asks the database nothing while
    the caller keeps the list returned (the session holds its objects only weakly)."""
    names, rows = sorted(topics), []
    for start in range(0, len(names), 500):
        rows += session.scalars(select(RetainedMessage).where(RetainedMessage.topic.in_(names[start:start + 500])))
    return rows


def clear(session: Session, topic: str, now: datetime) -> None:
    """Remove TOPIC's retained message at the broker (an empty retained payload deletes it)."""
    put(session, topic, b"", now)


def pending(session: Session) -> int:
    """How many retained messages the broker has not acknowledged yet."""
    return len(session.scalars(select(RetainedMessage.topic)
                               .where(RetainedMessage.sent_version < RetainedMessage.version)).all())


FLUSH_CHUNK = 500


def _send_and_mark(session: Session, link, rows) -> None:
    """Publish ROWS all at once (one round trip, not one per ack), then mark the versions sent; a row that changed
    meanwhile keeps its newer version unsent, so the next pass sends that too."""
    link.publish_many([(topic, payload) for topic, payload, _v in rows], retain=True)
    _mark_sent(session, rows)


def _mark_sent(session: Session, rows) -> None:
    # One statement executed many times (a single executemany), not an ORM update per row: the ingest's ack
    # flusher marks up to a few hundred acks a pass, in the process whose store thread needs the CPU.
    table = RetainedMessage.__table__
    session.connection().execute(
        update(table).where(table.c.topic == bindparam("t"), table.c.version == bindparam("v"))
        .values(sent_version=bindparam("v")),
        [{"t": topic, "v": version} for topic, _payload, version in rows])


def flush(services, link=None) -> int:
    """Send every retained message the broker lacks; return how many were sent. Raises BrokerUnavailable."""
    own: Optional[ServerLink] = None
    if link is None:
        own = link = ServerLink(BrokerAddress.from_services(services), "publisher").connect()
    sent = 0
    try:
        while True:
            with services.db.session() as session:
                # On PostgreSQL whoever flushes holds the rows it sends until they are marked (others skip them), so
                # two processes never publish one topic's versions out of order. SQLite keeps no lock over the
                # network round trip (it would stall every writer); there an ack retained out of order is put right
                # by the device's next batch, or by its resend, which re-publishes the ack
                # (server.events.ingest.commit).
                locking = session.get_bind().dialect.name == "postgresql"
                query = (select(RetainedMessage.topic, RetainedMessage.payload, RetainedMessage.version)
                         .where(RetainedMessage.sent_version < RetainedMessage.version)
                         .order_by(RetainedMessage.topic).limit(FLUSH_CHUNK))
                rows = session.execute(query.with_for_update(skip_locked=True) if locking else query).all()
                if not rows:
                    return sent
                if locking:
                    _send_and_mark(session, link, rows)
            if not locking:
                with services.db.session() as session:
                    _send_and_mark(session, link, rows)
            sent += len(rows)
    finally:
        if own is not None:
            own.close()


def flush_quietly(services) -> bool:
    """Flush now if the broker is up; otherwise log and leave it to the worker's retry. True when all went out."""
    try:
        flush(services)
        return True
    except BrokerUnavailable as exc:
        log.warning("retained messages wait for the broker: %s", exc)
        return False
