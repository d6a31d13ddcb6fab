"""Blueprints of the web app: one module per area, registered under API_PREFIX, and what every JSON view needs."""

from __future__ import annotations

from typing import Any

from flask import request

from server.errors import ApiError
from server.i18n import _l

# Every API blueprint is registered under this prefix (server/app.py); each names only its own part.
API_PREFIX = "/api/v1"


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a 400 ApiError saying how to send one."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "json_required", _l("Send a JSON object (Content-Type: application/json)."))
    return body
