"""The Flask application factory."""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

from flask import Flask

from server import errors, settings as settings_mod
from server.instance import secret_key
from server.services import Services
from server.upload_stream import LessoncastRequest, discard_unclaimed


def create_app(overrides: Optional[Mapping[str, Any]] = None, services: Optional[Services] = None,
               behind_nginx: bool = False) -> Flask:
    """Build the web app on the given services, or on services from the effective settings.

    BEHIND_NGINX is true only in the gunicorn that ``lessoncast run`` starts on a loopback port behind its nginx
    (server/nginx.py): then the app trusts one more hop of X-Forwarded-For/-Proto and lets nginx send media files.
    """
    if services is None:
        services = Services(settings_mod.load(overrides=overrides))
    app = Flask(__name__)
    app.config["LESSONCAST_BEHIND_NGINX"] = behind_nginx
    hops = services.settings.trusted_proxies + (1 if behind_nginx else 0)
    if hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # request.remote_addr and request.scheme are then the client's as the outermost trusted proxy saw it;
        # anything a client wrote into these headers itself stays to the left and is ignored.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
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

    from server.views import attendance, devices, fleet, health, lessons, media, org, programmes, tuf, uploads

    for blueprint in (lessons.bp, uploads.bp, media.bp, health.bp, devices.bp, tuf.bp, org.bp,
                      programmes.bp, attendance.bp, fleet.bp):
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
