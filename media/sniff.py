"""Content sniffing before ffprobe: refuse playlists, manifests and text files by what they contain.

A playlist or manifest (HLS, DASH, concat scripts, SDP, ...) makes ffmpeg open other files or URLs, which turns an
upload into a way to read the server's files or reach its network. The demuxer whitelist already keeps ffmpeg away
from those demuxers; refusing them here as well gives the uploader a clear message and guards against a whitelist
mistake. The extension is never trusted: `lesson.mp4` may well be an HLS playlist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

HEAD_BYTES = 4096
# A container can carry a playlist inside it (the classic ffmpeg SSRF/LFI file is an AVI whose GAB2 subtitle chunk
# holds an #EXTM3U playlist), so the first few MB are scanned for markers long enough never to occur by chance.
EMBEDDED_SCAN_BYTES = 8 * 1024 * 1024
EMBEDDED_MARKERS: tuple[tuple[bytes, str], ...] = (
    (b"#EXTM3U", "an HLS/M3U playlist"),
    (b"#EXT-X-", "an HLS playlist"),
    (b"ffconcat version", "an ffmpeg concat script"),
    (b"urn:mpeg:dash:schema", "a DASH manifest"),
)

# (pattern on the decoded, lower-cased head of a text file, what it is)
TEXT_MANIFESTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"#extm3u|#ext-x-|#extinf"), "an HLS/M3U playlist"),
    (re.compile(r"ffconcat\s+version"), "an ffmpeg concat script"),
    (re.compile(r"^\s*file\s+\S", re.MULTILINE), "an ffmpeg concat script"),
    (re.compile(r"<mpd[\s>]|urn:mpeg:dash"), "a DASH manifest"),
    (re.compile(r"^\s*v=0\s*$", re.MULTILINE), "an SDP session description"),
    (re.compile(r"^\s*m=(audio|video|application)\s", re.MULTILINE), "an SDP session description"),
    (re.compile(r"<smoothstreamingmedia"), "a Smooth Streaming manifest"),
    (re.compile(r"<smil[\s>]"), "a SMIL playlist"),
    (re.compile(r"<asx[\s>]"), "an ASX playlist"),
    (re.compile(r"^\s*\[playlist\]", re.MULTILINE), "a PLS playlist"),
    (re.compile(r"<playlist[\s>]"), "an XSPF playlist"),
    (re.compile(r"^\s*(https?|rtsp|rtmp|rtp|udp|tcp|file|ftp|srt)://", re.MULTILINE), "a list of URLs"),
)

_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


@dataclass(frozen=True)
class SniffResult:
    """What the bytes say a file is: ok, a manifest of some kind, or plain text."""

    verdict: str  # "ok" | "manifest" | "text" | "empty"
    what: str = ""  # e.g. "an HLS/M3U playlist"
    offset: int | None = None  # where an embedded marker was found


def sniff(path: str | Path) -> SniffResult:
    """Return what the content of `path` says it is, ignoring its name."""
    with open(path, "rb") as handle:
        head = handle.read(HEAD_BYTES)
        if not head:
            return SniffResult("empty")
        text = decode_text(head)
        if text is not None:
            lowered = text.lower()
            for pattern, what in TEXT_MANIFESTS:
                if pattern.search(lowered):
                    return SniffResult("manifest", what, 0)
            return SniffResult("text", "a text file")
        return _scan_embedded(handle, head)


def _scan_embedded(handle, head: bytes) -> SniffResult:
    """Scan the file's first EMBEDDED_SCAN_BYTES for manifest markers, across chunk borders."""
    overlap = max(len(marker) for marker, _ in EMBEDDED_MARKERS) - 1
    window = head
    consumed = 0  # bytes of the file before `window`
    read_total = len(head)
    while True:
        for marker, what in EMBEDDED_MARKERS:
            at = window.find(marker)
            if at >= 0:
                return SniffResult("manifest", what, consumed + at)
        if read_total >= EMBEDDED_SCAN_BYTES:
            return SniffResult("ok")
        chunk = handle.read(min(1024 * 1024, EMBEDDED_SCAN_BYTES - read_total))
        if not chunk:
            return SniffResult("ok")
        read_total += len(chunk)
        keep = window[-overlap:]
        consumed += len(window) - len(keep)
        window = keep + chunk


def decode_text(head: bytes) -> str | None:
    """Return `head` as text if it reads as UTF-8 or BOM-marked UTF-16 text, else None (binary)."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    else:
        if b"\x00" in head:
            return None
        encoding = "utf-8"
        if head.startswith(_BOMS[0]):
            head = head[3:]
    try:
        text = head.decode(encoding)
    except UnicodeDecodeError as exc:
        # The head may end inside a multi-byte character; anything earlier is a real decoding failure.
        if exc.start < len(head) - 4:
            return None
        text = head[: exc.start].decode(encoding)
    if not text:
        return None
    printable = sum(1 for ch in text if ch.isprintable() or ch in "\r\n\t\f")
    return text if printable >= 0.95 * len(text) else None
