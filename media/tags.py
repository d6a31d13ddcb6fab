"""ID3 tags for radio renditions: title, speaker and series, written so cheap radios show Chinese correctly.

The radios are cheap MP3 players. They read ID3v2.3 and decode its UTF-16 text frames; ID3v2.4 and UTF-8 text (what
mutagen writes by default) show up on them as empty or garbled, which for Chinese titles means showing nothing. So
the tag is v2.3, every text frame is UTF-16 with BOM (ID3 encoding 1), and only TIT2/TPE1/TALB are written: no TXXX,
no encoder or time frames, so the same lesson always gives the same bytes and devices never re-download it.
"""

from __future__ import annotations

from pathlib import Path

from mutagen.id3 import ID3, TALB, TIT2, TPE1

UTF16 = 1  # mutagen's Encoding.UTF16: UTF-16 with byte-order mark


def write_radio_tags(path: str | Path, *, title: str, artist: str, album: str) -> None:
    """Replace any ID3 tag of the MP3 at `path` with a v2.3 UTF-16 tag holding title, artist and album."""
    # A fresh tag: saving it replaces the file's whole ID3v2 tag, so no frame of an older one survives.
    tag = ID3()
    for frame, text in ((TIT2, title), (TPE1, artist), (TALB, album)):
        if text:
            tag.add(frame(encoding=UTF16, text=[text]))
    # Fixed padding (none) rather than mutagen's size-dependent default, so the bytes depend on the text alone.
    tag.save(path, v2_version=3, v23_sep="/", padding=lambda info: 0)
