"""What every console page shares: refusals shown as a page (or a redirect to sign in), and the signed-in check.

A service's refusal (``server.errors``) keeps its HTTP status and its message, the same words the API sends, so
a page out of the user's scope answers 403 or 404 whether it was reached by a link or a typed URL.
"""

from __future__ import annotations

from functools import wraps
from typing import Callable

from flask import Blueprint, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_login import current_user

from media.errors import MediaError
from server.errors import DomainError, Unauthenticated, media_error_body


def to_login():
    """A redirect to the sign-in page that comes back here afterwards."""
    return redirect(url_for("console.login", next=request.full_path if request.method == "GET" else None))


def page_language() -> str:
    """The language the page is shown in (zh_CN unless the user chose English): refusals are shown in it."""
    return str(get_locale() or "zh_CN")


def page_errors(bp: Blueprint) -> None:
    """Render refusals raised in BP's views as an error page with the refusal's status."""

    @bp.errorhandler(DomainError)
    def _refused(exc: DomainError):
        if isinstance(exc, Unauthenticated):
            return to_login()
        return render_template("error.html", status=exc.status, message=exc.localised(page_language()),
                               code=exc.code), exc.status

    @bp.errorhandler(MediaError)
    def _media(exc: MediaError):
        return render_template("error.html", status=exc.http_status,
                               message=media_error_body(exc, page_language())["message"]), exc.http_status


def signed_in(view: Callable) -> Callable:
    """Decorate a view that any signed-in user may open."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        if not current_user.is_authenticated:
            return to_login()
        return view(*args, **kwargs)

    return wrapped
