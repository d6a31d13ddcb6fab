"""The Flask application factory."""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

from flask import Flask

from server import errors, settings as settings_mod, validation
from server.instance import secret_key
from server.services import Services
from server.upload_stream import LessoncastRequest, discard_unclaimed


def create_app(overrides: Optional[Mapping[str, Any]] = None, services: Optional[Services] = None) -> Flask:
    """Build the web app on the given services, or on services from the effective settings."""
    if services is None:
        services = Services(settings_mod.load(overrides=overrides))
    app = Flask(__name__)
    app.request_class = LessoncastRequest
    app.json.ensure_ascii = False  # Chinese titles readable in API answers
    app.config.update(
        SECRET_KEY=services.settings.secret_key or secret_key(services.data),
        # Slack above the media limit for the multipart envelope and metadata fields.
        MAX_CONTENT_LENGTH=services.settings.max_upload_size + 1024 * 1024,
    )
    app.extensions["lessoncast"] = services
    _babel(app)
    logging.basicConfig(level=services.settings.log_level)

    validation.register(app)  # before the blueprints: their <int:…> routes take its bounded converter
    from server.views import attendance, devices, fleet, health, lessons, media, openapi, org, programmes, tuf, uploads

    for blueprint in (lessons.bp, uploads.bp, media.bp, health.bp, devices.bp, tuf.bp, org.bp,
                      programmes.bp, attendance.bp, fleet.bp, openapi.bp):
        app.register_blueprint(blueprint)
    errors.register(app)
    app.teardown_request(discard_unclaimed)
    return app


def _babel(app: Flask) -> None:
    """Flask-Babel on the same catalogue exports use (server.i18n): ?lang=, then Accept-Language, then zh_CN."""
    from flask import request
    from flask_babel import Babel

    from server.i18n import DEFAULT_LANGUAGE, LANGUAGES, TRANSLATIONS_DIR, normalise

    def locale() -> str:
        try:
            return normalise(request.args.get("lang")) if request.args.get("lang") else \
                normalise(request.accept_languages.best_match(["zh_CN", "zh", "en"]) or DEFAULT_LANGUAGE)
        except ValueError:
            return DEFAULT_LANGUAGE

    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LANGUAGE)
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS_DIR))
    app.config["LESSONCAST_LANGUAGES"] = LANGUAGES
    Babel(app, locale_selector=locale)
