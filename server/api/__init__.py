"""Blueprints of the web app: one module per area, and the two things every JSON view needs."""

from __future__ import annotations

from typing import Any

from flask import current_app, request

from server.errors import ApiError


def app_services():
    """The Services of the running app."""
    return current_app.extensions["lessoncast"]


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a 400 ApiError saying how to send one."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "json_required", "Send a JSON object (Content-Type: application/json).")
    return body
