"""Retained MQTT messages as database rows: set them in a transaction, then flush what the broker lacks.

A publish or an enrolment writes rows and commits; ``flush`` sends every row whose version the broker has not
acknowledged. A broker that is down loses nothing: the worker flushes again until it succeeds.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Optional

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from server.org_models import RetainedMessage

log = logging.getLogger(__name__)


def put(session: Session, topic: str, payload: bytes, now: datetime) -> bool:
    """Set the retained message of TOPIC; True if it changed (and so must be sent)."""
    row = session.get(RetainedMessage, topic)
    if row is None:
        session.add(RetainedMessage(topic=topic, payload=payload, version=1, sent_version=0, updated_at=now))
        return True
    if row.payload == payload:
        return False
    row.payload, row.version, row.updated_at = payload, row.version + 1, now
    return True


def clear(session: Session, topic: str, now: datetime) -> None:
    """Remove TOPIC's retained message at the broker (an empty retained payload deletes it)."""
    put(session, topic, b"", now)


def pending(session: Session) -> int:
    """How many retained messages the broker has not acknowledged yet."""
    return len(session.scalars(select(RetainedMessage.topic)
                               .where(RetainedMessage.sent_version < RetainedMessage.version)).all())


def flush(services, link=None) -> int:
    """Send every retained message the broker lacks; return how many were sent. Raises BrokerUnavailable."""
    from server.mqtt_link import BrokerAddress, ServerLink

    own: Optional[ServerLink] = None
    if link is None:
        own = link = ServerLink(BrokerAddress.from_services(services), "publisher").connect()
    sent = 0
    try:
        while True:
            with services.db.session() as session:
                rows = session.execute(
                    select(RetainedMessage.topic, RetainedMessage.payload, RetainedMessage.version)
                    .where(RetainedMessage.sent_version < RetainedMessage.version)
                    .order_by(RetainedMessage.topic)).all()
            if not rows:
                return sent
            for topic, payload, version in rows:
                link.publish(topic, payload, retain=True)
                sent += 1
                with services.db.session() as session:
                    # Only mark the version we sent. If the row changed meanwhile, the loop sends it again,
                    # so the broker's last retained copy is always the newest.
                    session.execute(update(RetainedMessage)
                                    .where(RetainedMessage.topic == topic, RetainedMessage.version == version)
                                    .values(sent_version=version))
    finally:
        if own is not None:
            own.close()


def flush_quietly(services) -> bool:
    """Flush now if the broker is up; otherwise log and leave it to the worker's retry. True when all went out."""
    from server.mqtt_link import BrokerUnavailable

    try:
        flush(services)
        return True
    except BrokerUnavailable as exc:
        log.warning("retained messages wait for the broker: %s", exc)
        return False
