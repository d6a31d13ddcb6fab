"""Translations: the console's catalogue (``server/translations``, gettext), also used outside a request.

Simplified Chinese is the default language and English the second. The console uses it through Flask-Babel; exports
made from the command line (report headers, sheet names) call ``translator`` with the same catalogue, so a header
reads the same on screen and in the file. Message ids are the English text.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Callable

from babel.support import NullTranslations, Translations

TRANSLATIONS_DIR = Path(__file__).parent / "translations"
LANGUAGES = ("zh_CN", "en")
DEFAULT_LANGUAGE = "zh_CN"


def normalise(language: str | None) -> str:
    """zh_CN or en from what a user or browser gives (zh, zh-CN, zh_Hans, en-US...); ValueError otherwise."""
    text = (language or DEFAULT_LANGUAGE).replace("-", "_").lower()
    if text.startswith("zh"):
        return "zh_CN"
    if text.startswith("en"):
        return "en"
    raise ValueError(f"language {language!r}: lessoncast speaks zh_CN (简体中文) and en (English)")


@lru_cache(maxsize=None)
def _catalogue(language: str) -> NullTranslations:
    if language == "en":
        return NullTranslations()
    return Translations.load(str(TRANSLATIONS_DIR), [language])


def catalogue(language: str | None = None) -> NullTranslations:
    """The translations for LANGUAGE (zh_CN, zh_Hans_CN, en...), the same object the console and exports use."""
    return _catalogue(normalise(language))


def translator(language: str | None = None) -> Callable[[str], str]:
    """gettext for LANGUAGE (default zh_CN), outside any request."""
    return _catalogue(normalise(language)).gettext


def _(text: str) -> str:
    """Mark TEXT for translation (extraction only); callers translate it with ``translator`` or Flask-Babel."""
    return text
