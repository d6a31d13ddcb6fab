"""GET /healthz: 200 when web, worker, ingest, broker and database are up; 503 naming what is down.
GET /metrics: the stack's figures in the Prometheus text format, for a token with the monitor (or admin) role."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from server.accounts.auth import require
from server.health.checks import report
from server.health.metrics import CONTENT_TYPE, exposition
from server.services import app_services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The health document."""
    body, ok = report(app_services())
    return jsonify(body), 200 if ok else 503


@bp.get("/metrics")
@require("read.metrics")
def metrics():
    """Jobs by state, ingest rate and lag, devices online, ack lag, job and export durations (Prometheus text)."""
    return Response(exposition(app_services()), mimetype=None, content_type=CONTENT_TYPE)
