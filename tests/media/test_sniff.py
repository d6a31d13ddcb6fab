"""Content sniffing: manifests and text are recognised by their bytes, embedded playlists by a scan."""

from __future__ import annotations

import pytest

from media.sniff import EMBEDDED_SCAN_BYTES, decode_text, sniff


@pytest.mark.parametrize(
    ("content", "verdict", "what"),
    [
        (b"#EXTM3U\n#EXTINF:10,\nseg.ts\n", "manifest", "an HLS/M3U playlist"),
        (b"\xef\xbb\xbf  #EXTM3U\r\n", "manifest", "an HLS/M3U playlist"),
        ("#EXTM3U\n".encode("utf-16"), "manifest", "an HLS/M3U playlist"),
        (b"#EXTINF:-1,Radio\nhttp://example.invalid/a.mp3\n", "manifest", "an HLS/M3U playlist"),
        (b"ffconcat version 1.0\nfile a.wav\n", "manifest", "an ffmpeg concat script"),
        (b"# parts\nfile 'a.wav'\nduration 10\n", "manifest", "an ffmpeg concat script"),
        (b'<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011">', "manifest", "a DASH manifest"),
        (b"v=0\no=- 0 0 IN IP4 1.2.3.4\nm=audio 5004 RTP/AVP 0\n", "manifest", "an SDP session description"),
        (b"[playlist]\nFile1=http://example.invalid/x.mp3\n", "manifest", "a PLS playlist"),
        (b"<smil><body><audio src='x.mp3'/></body></smil>", "manifest", "a SMIL playlist"),
        (b"http://example.invalid/lesson.mp3\n", "manifest", "a list of URLs"),
        ("学习笔记：第三课\n".encode(), "text", "a text file"),
        (b"RIFF\x24\x08\x00\x00WAVEfmt \x10\x00\x00\x00", "ok", ""),
        (b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00" * 100, "ok", ""),
        (b"", "empty", ""),
    ],
)
def test_sniff_by_content(tmp_path, content, verdict, what):
    path = tmp_path / "upload.mp3"
    path.write_bytes(content)
    found = sniff(path)
    assert (found.verdict, found.what) == (verdict, what)


def test_playlist_embedded_deep_in_a_binary_is_found(tmp_path):
    path = tmp_path / "lesson.avi"
    body = bytearray(b"RIFF\x00\x00\x00\x00AVI " + bytes(range(256)) * 14_000)
    at = 3 * 1024 * 1024 - 3  # straddles a read boundary
    body[at:at + 7] = b"#EXTM3U"
    path.write_bytes(bytes(body))
    found = sniff(path)
    assert (found.verdict, found.offset) == ("manifest", at)


def test_scan_stops_after_the_first_megabytes(tmp_path):
    path = tmp_path / "lesson.mkv"
    path.write_bytes(b"\x1a\x45\xdf\xa3" + b"\x00" * EMBEDDED_SCAN_BYTES + b"#EXTM3U")
    assert sniff(path).verdict == "ok"


def test_decode_text_tolerates_a_character_cut_at_the_end():
    head = "第一课".encode()[:-1]
    assert decode_text(head) == "第一"
    assert decode_text(b"\xff\xfb\x90\x00abc") is None
