"""The Flask application factory."""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

from flask import Flask, Response, request

from server import console, errors, settings as settings_mod, validation
from server.api import (API_PREFIX, attendance, devices, exports, fleet, health, lessons, media, openapi, org,
                        programmes, training, tuf, uploads)
from server.i18n import DEFAULT_LANGUAGE, LANGUAGES, TRANSLATIONS_DIR
from server.keyfiles import secret_key
from server.lessons.upload_stream import LessoncastRequest, discard_unclaimed
from server.services import Services


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

    validation.register(app)  # before the blueprints: their <int:…> routes take its bounded converter

    for blueprint in (lessons.bp, uploads.bp, devices.bp, org.bp, programmes.bp, attendance.bp, fleet.bp, exports.bp,
                      training.bp, openapi.bp):
        app.register_blueprint(blueprint, url_prefix=API_PREFIX + (blueprint.url_prefix or ""))
    for blueprint in (media.bp, health.bp, tuf.bp, training.verify_bp):  # /media/…, /healthz and /tuf/… are not the API
        app.register_blueprint(blueprint)
    console.register(app)
    errors.register(app)
    app.teardown_request(discard_unclaimed)
    app.after_request(security_headers)
    return app


# The console is server-rendered and loads only its own scripts, styles and fonts (DESIGN: nothing from outside the
# machine). htmx keeps working with it when its meta config sets includeIndicatorStyles false (its one injected
# <style>); ECharts draws on canvas and sets styles through the DOM, which style-src does not restrict.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                           "font-src 'self'; connect-src 'self'; media-src 'self'; object-src 'none'; "
                           "base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
# Member names, cards, attendance and device holders: never kept by a browser or a proxy.
PERSONAL_DATA = ("/api/v1/members", "/api/v1/reports", "/api/v1/sessions", "/api/v1/devices", "/api/v1/fleet",
                 "/org/members", "/attendance")  # the last two: the console's member pages, reports and exports


def security_headers(response: Response) -> Response:
    """Add the headers every answer carries; member, report and device data are never stored by a cache."""
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    path = request.path
    if path.startswith(PERSONAL_DATA):
        headers["Cache-Control"] = "no-store"
    elif path.startswith("/api/") and "Cache-Control" not in headers:
        headers["Cache-Control"] = "no-store"  # an API answer is for the caller, now; media and TUF say otherwise
    return response


def _babel(app: Flask) -> None:
    """Flask-Babel on the same catalogue exports use (server.i18n): ?lang=, the signed-in user's choice, the
    browser's Accept-Language, then zh_CN (server/console/session.py)."""
    from flask_babel import Babel, Domain, get_locale

    from server.console.session import locale
    from server.i18n import catalogue

    class SharedCatalogue(Domain):
        """Pages read server.i18n's catalogue by its language name. Flask-Babel would look for a folder named after
        Babel's parse of zh_CN, zh_Hans_CN, and find none."""

        def get_translations(self):
            return catalogue(str(get_locale() or DEFAULT_LANGUAGE))

    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LANGUAGE)
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS_DIR))
    app.config["LESSONCAST_LANGUAGES"] = LANGUAGES
    babel = Babel(app, locale_selector=locale)
    babel.domain_instance = SharedCatalogue()
