"""Input checks at the edge of the API: body size caps, JSON that parses, paging, and typed fields.

Every refusal names the parameter or field and says what would be accepted, so a wrong type or a hostile size is
a 4xx the caller can act on, never a 500 from deep inside a service. Views call these helpers first and pass
plain, checked values on.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import date
from typing import Any, Mapping, Optional

from flask import Flask, request
from werkzeug.routing import IntegerConverter

from server.attendance.rules import FIRST_DAY, LAST_DAY
from server.errors import ApiError
from server.i18n import LazyText, _l

# JSON bodies are small: a programme with its items, a device's settings. An enrolment is one code.
JSON_LIMIT = 1024 * 1024
ENROL_LIMIT = 16 * 1024
# A county's members file is a few MB; anything far larger is not an organisation export.
CSV_LIMIT = 20 * 1024 * 1024
# Endpoints whose body is not a small JSON object, with the cap each one takes. None: the endpoint sets its own
# (multipart lesson uploads use the app's MAX_CONTENT_LENGTH; tus PATCH sets the upload size per request).
BODY_LIMITS: dict[str, Optional[int]] = {
    "devices_api.enrol": ENROL_LIMIT,
    "devices_api.import_devices": CSV_LIMIT + 64 * 1024,
    "org_api.import_csv": CSV_LIMIT + 64 * 1024,
    "attendance_api.import_roster": CSV_LIMIT + 64 * 1024,
    "lessons_api.create": None,
    "uploads_api.patch": None,
}
# Database ids and offsets are 64-bit at most; anything longer than this is no id of ours.
MAX_ID = 2**53


class BoundedIntConverter(IntegerConverter):
    """``<int:…>`` in routes: an id too large for the database matches no route (404), instead of overflowing."""

    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def register(app: Flask) -> None:
    """Bound route ids and cap every request body before a view reads it (call before blueprints register)."""
    app.url_map.converters["int"] = BoundedIntConverter
    app.before_request(_cap_body)
    app.before_request(_refuse_nul)


def body_limit(endpoint: Optional[str]) -> Optional[int]:
    """The most bytes a request to ENDPOINT may send: its own cap, the JSON cap for every other endpoint, or None
    for the endpoints that set their own."""
    return BODY_LIMITS.get(endpoint, JSON_LIMIT) if endpoint else JSON_LIMIT


def _cap_body() -> None:
    """Refuse with 413 on the declared length alone, before a byte is read; a chunked body stops at the cap."""
    limit = body_limit(request.endpoint)
    if limit is None:
        return
    request.max_content_length = limit
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "too_large", _l("The request body is {content_length} bytes; this endpoint takes at most "
                                            "{value}.",
                                            content_length=request.content_length, value=_size(limit)), limit=limit)
    if request.is_json:
        try:
            request.get_json(silent=True)  # parsed once here and cached for the view
        except RecursionError:
            raise ApiError(400, "json_too_deep", _l("The JSON body is nested too deeply; send a flat JSON object.")) \
                from None


def _refuse_nul() -> None:
    """A NUL character is in no name, code or date of ours, and PostgreSQL refuses it in text: 400, not a 500."""
    where = None
    if "\x00" in request.path:
        where = "the path"
    else:
        where = next((f"?{name}" for name, value in request.args.items(multi=True)
                      if "\x00" in name or "\x00" in value), None)
    if where is None and request.is_json:
        where = "the JSON body" if _has_nul(request.get_json(silent=True)) else None
    if where is not None:
        raise ApiError(400, "nul_character", _l("{where} holds a NUL character (\\u0000); remove it.", where=where))


def _has_nul(value: Any, depth: int = 0) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if depth > 64:  # nothing of ours nests this deep; the view refuses such a body anyway
        return False
    if isinstance(value, dict):
        return any(_has_nul(k, depth + 1) or _has_nul(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v, depth + 1) for v in value)
    return False


def _size(limit: int) -> str:
    return f"{limit // 1024**2} MB" if limit >= 1024**2 else f"{limit // 1024} KB"


def _bad(field: str, what: LazyText, status: int = 422, code: str = "field_invalid") -> ApiError:
    return ApiError(status, code, _l("{field}: {what}", field=field, what=what), field=field)


# ---- query parameters ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Page:
    """A checked page of a listing: how many rows, from which row, and the page number when asked by page."""

    limit: int
    offset: int
    page: int


def paging(default_limit: int, max_limit: int, *, max_offset: int = 10_000_000) -> Page:
    """?limit= and ?offset= (or ?page=, counted from 1), checked; a bad one is a 400 naming the parameter."""
    limit = query_int("limit", default_limit, 1, max_limit)
    if "page" in request.args and "offset" in request.args:
        raise ApiError(400, "bad_parameter", _l("Give ?page= or ?offset=, not both."), field="page")
    page = query_int("page", 1, 1, max_offset // limit + 1)
    offset = query_int("offset", (page - 1) * limit, 0, max_offset)
    return Page(limit, offset, page)


def query_int(name: str, default: int, low: int, high: int) -> int:
    """The whole-number query parameter NAME between LOW and HIGH, DEFAULT when absent; 400 naming it otherwise."""
    raw = request.args.get(name)
    if raw is None:
        return default
    raw = raw.strip()
    if not (raw.isascii() and raw.lstrip("-").isdigit() and len(raw) <= 20) or not low <= int(raw) <= high:
        raise ApiError(400, "bad_parameter", _l("?{name}={value!r}: give a whole number from {low} to {high}.",
                                                name=name, value=raw[:40], low=low, high=high),
                       field=name)
    return int(raw)


def query_flag(name: str) -> Optional[bool]:
    """?NAME=0|1|true|false as a bool, None when absent; 400 naming it otherwise."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("1", "true"):
        return True
    if raw.lower() in ("0", "false"):
        return False
    raise ApiError(400, "bad_parameter", _l("?{name}={value!r}: give 1 or 0.", name=name, value=raw[:40]), field=name)


# ---- JSON body fields ------------------------------------------------------------------------------------------

def text(body: Mapping[str, Any], name: str, *, max_length: int = 200, default: Optional[str] = None,
         required: bool = False) -> Optional[str]:
    """The string field NAME (at most MAX_LENGTH characters), DEFAULT when absent or null."""
    value = body.get(name)
    if value is None:
        if required:
            raise _bad(name, _l("is required."))
        return default
    if not isinstance(value, str):
        raise _bad(name, _l("must be a string, not {value}.", value=_kind(value)))
    if len(value) > max_length:
        raise _bad(name, _l("is {count} characters; at most {max_length}.", count=len(value), max_length=max_length))
    return value


def integer(body: Mapping[str, Any], name: str, low: int, high: int, *, default: Optional[int] = None,
            required: bool = False, field: Optional[str] = None) -> Optional[int]:
    """The whole-number field NAME from LOW to HIGH (true and false are not numbers), DEFAULT when absent."""
    field = field or name
    value = body.get(name)
    if value is None:
        if required:
            raise _bad(field, _l("is required: a whole number from {low} to {high}.", low=low, high=high))
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(field, _l("must be a whole number from {low} to {high}, not {value}.",
                             low=low, high=high, value=_show(value)))
    return value


def strings(body: Mapping[str, Any], name: str, *, max_items: int = 200, max_length: int = 100) -> Optional[list[str]]:
    """The field NAME as a list of strings (null or absent: None)."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and len(v) <= max_length for v in value):
        raise _bad(name, _l("must be a list of strings (e.g. [\"branch-1\"]), not {value}.", value=_show(value)))
    if len(value) > max_items:
        raise _bad(name, _l("has {count} entries; at most {max_items}.", count=len(value), max_items=max_items))
    return value


def mapping(body: Mapping[str, Any], name: str) -> Optional[dict[str, Any]]:
    """The field NAME as a JSON object (null or absent: None)."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad(name, _l("must be a JSON object, not {value}.", value=_show(value)))
    return value


def day(value: Any, field: str) -> date:
    """An ISO date (YYYY-MM-DD) between 2000 and 2099."""
    try:
        parsed = date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise _bad(field, _l("must be a date like 2026-11-20, not {value}.", value=_show(value)), code="bad_date")
    if not FIRST_DAY <= parsed <= LAST_DAY:
        raise _bad(field, _l("{parsed} is outside {first_day}..{last_day}; check the year.",
                             parsed=parsed, first_day=FIRST_DAY, last_day=LAST_DAY), code="bad_date")
    return parsed


def time_zone(value: Any, field: str) -> str:
    """An IANA time zone name the system's zoneinfo knows, e.g. Asia/Shanghai."""
    if not isinstance(value, str) or value not in zoneinfo.available_timezones():
        raise _bad(field, _l("{value} is not a time zone name like Asia/Shanghai or Asia/Urumqi.", value=_show(value)))
    return value


def _kind(value: Any) -> str:
    return {bool: "true/false", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."
