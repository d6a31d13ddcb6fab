"""The staff console: server-rendered pages (Jinja, htmx for what updates live) over the same services as the API.

Every page and action asks ``server.accounts.auth.require`` and the services' township scope, exactly as the API
does: a signed-in user is an ``Actor`` of their role, like a token. The console adds only sessions, CSRF, pages
and forms.
"""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Add the console to APP: sign-in, CSRF for every cookie-authenticated write, its pages and their filters."""
    from server.attendance.summary import ReportCache
    from server.console import admin, attendance, devices, fleet_words, formats, home, lessons, org, programmes, rollouts, session

    # the dashboard's reports, kept in the data directory with the fingerprint of their data (the worker refreshes)
    app.extensions["lessoncast_reports"] = ReportCache(app.extensions["lessoncast"].data / "reports")
    session.register(app)
    formats.register(app)
    fleet_words.register(app)
    for module in (session, home, lessons, programmes, devices, admin, org, attendance, rollouts):
        app.register_blueprint(module.bp)
