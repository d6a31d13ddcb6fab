"""M3U8 export of a channel manifest, for plain players (VLC, a phone) that know nothing of lessoncast."""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

from playlists.manifest import Manifest

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def _title(text: str) -> str:
    # A newline would end the #EXTINF line and turn the rest of the title into a bogus URL line; commas are legal
    # after the first but some players split on them, so they become the full-width comma Chinese titles use anyway.
    return " ".join(_CONTROL.sub(" ", text).replace(",", "，").split())


def to_m3u8(manifest: Manifest, base_url: str) -> str:
    """The manifest's items as an extended M3U playlist with absolute URLs under base_url."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"base_url: {base_url!r} is not an absolute http(s) URL without query or fragment")
    root = base_url.rstrip("/") + "/"
    lines = ["#EXTM3U"]
    for item in manifest.items:
        lines.append(f"#EXTINF:{round(item.duration)},{_title(item.title)}")
        lines.append(root + quote(item.path, safe="/"))
    return "\n".join(lines) + "\n"
