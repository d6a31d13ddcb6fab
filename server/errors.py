"""API errors: one JSON shape with a stable code, for every refusal the server makes."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from media.errors import MediaError, MediaText
from server.i18n import LazyText, _l, normalise, translator


class DomainError(Exception):
    """A refusal by a service: a stable code and a message that says what to do, with any extra fields for the
    JSON. Services raise its kinds below; ``register`` maps them to the JSON error shape and an HTTP status (the
    one place that does), and the CLI maps them to a click error (``server.cli.common.api_errors``)."""

    def __init__(self, code: str, message: str | LazyText, **extra: Any):
        super().__init__(str(message))
        self.code = code
        self.text = message  # translated for the reader where the refusal is answered
        self.message = str(message)  # English: logs, tests, the command line
        self.extra = extra

    @property
    def status(self) -> int:
        """The HTTP status this refusal answers with."""
        return http_status(self)

    def localised(self, language: str | None) -> str:
        """The message in LANGUAGE (zh_CN or en); English for a plain string."""
        return self.text.translate(language) if isinstance(self.text, LazyText) else self.message

    def to_dict(self, language: str = "en") -> dict[str, Any]:
        """The JSON body: ``{"error": {"code", "message", ...}}``, its message (and any text in its extra fields,
        such as an import's row problems) in LANGUAGE."""
        extra = {key: localise(value, language) for key, value in self.extra.items()}
        return {"error": {"code": self.code, "message": self.localised(language), **extra}}


def localise(value: Any, language: str | None) -> Any:
    """VALUE with every LazyText in it (in lists and dicts too) translated into LANGUAGE."""
    if isinstance(value, LazyText):
        return value.translate(language)
    if isinstance(value, dict):
        return {key: localise(item, language) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [localise(item, language) for item in value]
    return value


class BadRequest(DomainError):
    """The request as a whole cannot be read (a missing part, a malformed header or file)."""


class Invalid(DomainError):
    """A value is wrong: the message names the field and what it must be."""


class Unauthenticated(DomainError):
    """No credentials, or unknown ones."""


class Forbidden(DomainError):
    """Known caller, not allowed: another township, a role without the permission, a used code."""


class NotFound(DomainError):
    """What was named does not exist (or is out of the caller's sight)."""


class Conflict(DomainError):
    """The request contradicts the current state (a published programme, a duplicate, a device not enrolled)."""


class Gone(DomainError):
    """It existed and has expired."""


class TooLarge(DomainError):
    """Over a size limit."""


class UnsupportedType(DomainError):
    """A body of a type this endpoint does not take."""


class TooMany(DomainError):
    """Over a rate limit; ``retry_after`` (seconds) says when to try again."""


class Unavailable(DomainError):
    """A part of the stack this needs is down for now (the broker, the signing keys)."""


class NoSpace(DomainError):
    """The disk is too full to store it."""


HTTP_STATUS: dict[type, int] = {BadRequest: 400, Invalid: 422, Unauthenticated: 401, Forbidden: 403, NotFound: 404,
                                Conflict: 409, Gone: 410, TooLarge: 413, UnsupportedType: 415, TooMany: 429,
                                Unavailable: 503, NoSpace: 507}


def http_status(exc: DomainError) -> int:
    """The HTTP status of a refusal: its kind's, or the one an ApiError was given."""
    if isinstance(exc, ApiError):
        return exc.http
    return next(HTTP_STATUS[kind] for kind in type(exc).__mro__ if kind in HTTP_STATUS)


class ApiError(DomainError):
    """A refusal made by the HTTP layer itself (views, request checks), with its status given there."""

    def __init__(self, status: int, code: str, message: str | LazyText, **extra: Any):
        super().__init__(code, message, **extra)
        self.http = status


def media_error_body(exc: MediaError, language: str = "en") -> dict[str, Any]:
    """The same JSON shape for a media refusal (upload time or job time), its message in LANGUAGE."""
    body = exc.to_dict()
    if isinstance(exc.text, MediaText):
        body["message"] = translator(language)(exc.text.template).format(**exc.text.params)
    return {"error": body}


def error_language() -> str:
    """The language of an error message: ``?lang=``, then the best of Accept-Language, then English.

    The codes never change with the language. Without either, the answer is English, unlike the console (which
    defaults to zh_CN): a request without Accept-Language comes from a script or curl, whose output lands in logs
    and issue reports; every browser (and so the console) sends Accept-Language.
    """
    try:
        if request.args.get("lang"):
            return normalise(request.args["lang"])
        best = request.accept_languages.best_match(["zh_CN", "zh", "en"])
        return normalise(best) if best else "en"
    except ValueError:
        return "en"


def register(app: Flask) -> None:
    """Make every error, including Flask's own 404/405/413, answer as JSON, in the caller's language."""

    @app.errorhandler(DomainError)
    def _refused(exc: DomainError):
        response = jsonify(exc.to_dict(error_language()))
        if "retry_after" in exc.extra:
            response.headers["Retry-After"] = str(exc.extra["retry_after"])
        return response, exc.status

    @app.errorhandler(MediaError)
    def _media(exc: MediaError):
        return jsonify(media_error_body(exc, error_language())), exc.http_status

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.code or 0, "http_error")
        message: str | LazyText = exc.description or exc.name
        default = exc.description == type(exc).description  # not a view's own description
        if exc.code == 404 and default:
            message = _l("Nothing is at {path}. The API is under /api/v1 (see /api/v1/openapi.json).",
                         path=request.path)
        elif exc.code == 405 and default:
            message = _l("{path} does not take {method}.", path=request.path, method=request.method)
        elif exc.code == 413:
            limit = request.max_content_length or app.config.get("MAX_CONTENT_LENGTH")
            message = _l("The request is larger than this endpoint's {kb} KB limit.", kb=limit // 1024)
            if limit == app.config.get("MAX_CONTENT_LENGTH"):
                message = _l("The request is larger than the {mb} MB limit. Use the resumable upload "
                             "(/api/v1/uploads) or raise LESSONCAST_MAX_UPLOAD_SIZE.", mb=limit // 1024**2)
        if isinstance(message, LazyText):
            message = message.translate(error_language())
        return jsonify({"error": {"code": code, "message": message}}), exc.code
