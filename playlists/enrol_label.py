"""The text of an enrolment label's QR code: the county server's address and the device's one-time code, so a
technician scans the label instead of typing both.

    lessoncast:enrol?server=http%3A%2F%2F192.168.1.10%3A8750&code=K7QX-M3TD-WA9F

The console prints it on the label (docs/PROTOCOL.md, §3); ``lessoncast agent enrol`` reads it, or a bare code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional
from urllib.parse import parse_qs, quote, urlsplit

SCHEME = "lessoncast"


@dataclass(frozen=True)
class EnrolLabel:
    """What a scanned label or a typed code says: the code, and the server when the label names one."""

    code: str
    server: Optional[str] = None


def label_text(server: str, code: str) -> str:
    """The QR payload for CODE on SERVER (its public URL)."""
    return f"{SCHEME}:enrol?server={quote(server, safe='')}&code={quote(code, safe='-')}"


def read_label(text: str) -> EnrolLabel:
    """A scanned payload or a typed code as an EnrolLabel; ValueError when a payload lacks its code or names a
    server that is not http(s)."""
    text = text.strip()
    if not text.lower().startswith(SCHEME + ":"):
        return EnrolLabel(code=text)
    parts = urlsplit(text)
    if parts.path != "enrol":
        raise ValueError(f"{text!r}: a lessoncast label says lessoncast:enrol?server=...&code=...")
    query = parse_qs(parts.query)
    code = (query.get("code") or [""])[0].strip()
    server = (query.get("server") or [""])[0].strip() or None
    if not code:
        raise ValueError(f"{text!r}: the label has no code")
    if server is not None and urlsplit(server).scheme not in ("http", "https"):
        raise ValueError(f"{text!r}: the label's server {server!r} is not an http:// or https:// address")
    return EnrolLabel(code=code, server=server)
