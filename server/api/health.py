"""GET /healthz: 200 when web, worker, ingest, broker and database are up; 503 naming what is down."""

from __future__ import annotations

from flask import Blueprint, jsonify

from server.health.checks import report
from server.services import app_services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The health document."""
    body, ok = report(app_services())
    return jsonify(body), 200 if ok else 503
