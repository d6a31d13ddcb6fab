"""Print layouts (HTML with print CSS for A4) of certificates and the public verification page, rendered with the
templates in ``server/training/templates`` and the console's translation catalogue (zh_CN first). The stylesheet is
served from ``/training/print.css``: the Content-Security-Policy allows no inline styles."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

import segno
from jinja2 import Environment, FileSystemLoader, select_autoescape

from server.i18n import normalise, translator
from server.training.certificates import Verified, display_code
from server.training.models import Certificate

TEMPLATES = Path(__file__).parent / "templates"


def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]))


def stylesheet() -> str:
    """The print stylesheet."""
    return (TEMPLATES / "print.css").read_text(encoding="utf-8")


def qr_svg(url: str) -> str:
    """An inline SVG QR code of URL (no style attributes, so the CSP's style-src holds)."""
    return segno.make(url, error="m").svg_inline(scale=3)


def local_date(day, lang: str) -> str:
    """DAY as a Chinese document writes it (2026年10月10日), or ISO 8601 in English."""
    return f"{day.year}年{day.month}月{day.day}日" if lang == "zh_CN" else day.isoformat()


def certificates_html(certificates: Iterable[Certificate], base_url: str, language: Optional[str] = None) -> str:
    """A4 pages, one per certificate, each with its number, holder, programme, hours, date, code and QR code."""
    lang = normalise(language)
    rows = []
    for c in certificates:
        url = f"{base_url.rstrip('/')}/verify/{display_code(c.code)}"
        rows.append({"number": c.number, "name": c.name, "programme_title": c.programme_title, "hours": c.hours,
                     "completed_on": c.completed_on, "display_code": display_code(c.code), "verify_url": url,
                     "qr": qr_svg(url), "date_text": local_date(c.completed_on, lang)})
    return _environment().get_template("certificates.html").render(certificates=rows, t=translator(lang), lang=lang)


def verify_html(found: Optional[Verified], language: Optional[str] = None) -> str:
    """The public verification page: genuine with name, programme and date, or a refusal of the same shape."""
    lang = normalise(language)
    return _environment().get_template("verify.html").render(found=found, t=translator(lang), lang=lang)


def logbook_html(tables, meta: dict, language: Optional[str] = None) -> str:
    """The five books of a site's month as A4 pages with headers and signature lines for operator and inspector."""
    lang = normalise(language)
    gettext = translator(lang)
    return _environment().get_template("logbook.html").render(tables=tables, meta=meta, t=gettext, lang=lang)
