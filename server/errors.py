"""API errors: one JSON shape with a stable code, for every refusal the server makes."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from media.errors import MediaError


class ApiError(Exception):
    """A refusal to show the caller: HTTP status, stable code, and a message that says what to do."""

    def __init__(self, status: int, code: str, message: str, **extra: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        """The JSON body: ``{"error": {"code", "message", ...}}``."""
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


def media_error_body(exc: MediaError) -> dict[str, Any]:
    """The same JSON shape for a media refusal (upload time or job time)."""
    return {"error": exc.to_dict()}


def register(app: Flask) -> None:
    """Make every error, including Flask's own 404/405/413, answer as JSON."""

    @app.errorhandler(ApiError)
    def _api(exc: ApiError):
        response = jsonify(exc.to_dict())
        if "retry_after" in exc.extra:
            response.headers["Retry-After"] = str(exc.extra["retry_after"])
        return response, exc.status

    @app.errorhandler(MediaError)
    def _media(exc: MediaError):
        return jsonify(media_error_body(exc)), exc.http_status

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.code or 0, "http_error")
        message = exc.description or exc.name
        if exc.code == 413:
            limit = request.max_content_length or app.config.get("MAX_CONTENT_LENGTH")
            message = f"The request is larger than this endpoint's {limit // 1024} KB limit."
            if limit == app.config.get("MAX_CONTENT_LENGTH"):
                message = f"The request is larger than the {limit // 1024**2} MB limit. " \
                          "Use the resumable upload (/api/v1/uploads) or raise LESSONCAST_MAX_UPLOAD_SIZE."
        return jsonify({"error": {"code": code, "message": message}}), exc.code
