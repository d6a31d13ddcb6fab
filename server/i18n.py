"""Translations: the console's catalogue (``server/translations``, gettext), also used outside a request.

Simplified Chinese is the default language and English the second. The console uses it through Flask-Babel; exports
made from the command line (report headers, sheet names) call ``translator`` with the same catalogue, so a header
reads the same on screen and in the file. Message ids are the English text.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

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


class LazyText(str):
    """A text to translate once its reader's language is known. It is the English text (a ``str``, so logs, the
    command line and code that reads it see English) and keeps the English template (the message id, with
    ``str.format`` fields) and the values for its fields. Services give refusals these (``_l``), and the one edge
    that answers them (``server.errors``) translates them into the request's language."""

    template: str
    params: dict[str, Any]

    def __new__(cls, template: str, **params: Any) -> "LazyText":
        text = super().__new__(cls, template.format(**params))
        text.template, text.params = template, params
        return text

    def translate(self, language: str | None = None) -> str:
        """The text in LANGUAGE (zh_CN or en), its fields filled in (lazy values translated too)."""
        values = {k: v.translate(language) if isinstance(v, LazyText) else v for k, v in self.params.items()}
        return translator(language)(self.template).format(**values)

    def __repr__(self) -> str:
        return f"_l({str(self)!r})"  # the English text with its values, as a log or a test failure wants it


class LazyList(LazyText):
    """Texts joined by SEPARATOR (``"; "``), each translated on its own: a list of problems in one refusal."""

    def __new__(cls, separator: str, items: Any) -> "LazyList":
        items = list(items)
        text = str.__new__(cls, separator.join(items))
        text.template, text.params, text.separator, text.items = str(text), {}, separator, items
        return text

    def translate(self, language: str | None = None) -> str:
        """Each text in LANGUAGE, joined."""
        return self.separator.join(i.translate(language) if isinstance(i, LazyText) else i for i in self.items)

    def __repr__(self) -> str:
        return f"LazyList({self.separator!r}, {self.items!r})"


def _l(template: str, **params: Any) -> LazyText:
    """A text translated later (``LazyText``): ``_l("There is no lesson {lesson_id}.", lesson_id=7)``."""
    return LazyText(template, **params)


def _(text: str) -> str:
    """Mark TEXT for translation (extraction only); callers translate it with ``translator`` or Flask-Babel."""
    return text
