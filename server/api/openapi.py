"""GET /api/v1/openapi.json: the API's OpenAPI 3.1 description (public, like the API's error messages)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from server.api import openapi_doc as openapi

bp = Blueprint("openapi_api", __name__)


@bp.get("/openapi.json")
def document():
    """The OpenAPI document of /api/v1."""
    return jsonify(openapi.document())
