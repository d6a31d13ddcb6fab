"""Limits and allowlists for lesson sources, as data the server can override per deployment.

The demuxer allowlist is what makes hostile inputs harmless: ffprobe and ffmpeg get it as `-format_whitelist`, so
playlist and manifest demuxers (hls, dash, concat, sdp, rtp, image2, ...) can never be reached, not even by a
sub-demuxer that a container opens for an embedded stream (ffmpeg copies the whitelist to those).
"""

from __future__ import annotations

from dataclasses import dataclass

# ffmpeg demuxer names, as `-format_whitelist` and ffprobe's format_name spell them. The mov demuxer reports itself as
# "mov,mp4,m4a,3gp,3g2,mj2" and matroska as "matroska,webm"; one matching token is enough.
DEFAULT_DEMUXERS: tuple[str, ...] = (
    "mp3",
    "wav",
    "w64",
    "flac",
    "ogg",
    "aiff",
    "aac",  # raw ADTS, as some voice recorders write it
    "amr",  # phone voice memos
    "mov",  # mov, mp4, m4a, 3gp, 3g2, mj2
    "mp4",
    "m4a",
    "3gp",
    "3g2",
    "matroska",  # matroska, webm
    "webm",
    "avi",
    "asf",  # wma, wmv
    "flv",  # older downloaded lesson videos
    "mpeg",  # VCD/DVD programme stream (.mpg, .vob, .dat)
    "mpegts",  # camcorder .mts and broadcast recordings; a transport stream references nothing outside itself
)

DEFAULT_AUDIO_CODECS: tuple[str, ...] = (
    "mp3",
    "mp2",
    "aac",
    "vorbis",
    "opus",
    "flac",
    "alac",
    "ac3",
    "eac3",
    "wmav1",
    "wmav2",
    "wmapro",
    "amr_nb",
    "amr_wb",
    "pcm_u8",
    "pcm_s16le",
    "pcm_s16be",
    "pcm_s24le",
    "pcm_s24be",
    "pcm_s32le",
    "pcm_s32be",
    "pcm_f32le",
    "pcm_f32be",
    "pcm_f64le",
    "pcm_alaw",
    "pcm_mulaw",
    "adpcm_ima_wav",  # cheap dictaphones
    "adpcm_ms",
)

DEFAULT_VIDEO_CODECS: tuple[str, ...] = (
    "h264",
    "hevc",
    "mpeg4",
    "msmpeg4v2",
    "msmpeg4v3",
    "mpeg1video",
    "mpeg2video",
    "h263",
    "flv1",
    "vp8",
    "vp9",
    "av1",
    "wmv1",
    "wmv2",
    "wmv3",
    "vc1",
    "mjpeg",
    "theora",
)


@dataclass(frozen=True)
class Limits:
    """What a lesson source may be: size, length, picture size, bit rate, containers and codecs."""

    max_bytes: int = 4 * 1024**3
    max_duration_s: float = 4 * 3600
    max_width: int = 3840
    max_height: int = 2160
    max_bitrate: int = 60_000_000  # bits/s over the whole file
    allowed_demuxers: tuple[str, ...] = DEFAULT_DEMUXERS
    allowed_audio_codecs: tuple[str, ...] = DEFAULT_AUDIO_CODECS
    allowed_video_codecs: tuple[str, ...] = DEFAULT_VIDEO_CODECS
    # A full decode may come up this much shorter than the container declares before we call the file truncated:
    # VBR files without a seek table and odd muxers round their declared length, a cut-off copy misses far more.
    duration_tolerance_s: float = 2.0
    duration_tolerance_ratio: float = 0.02
    # How long ffprobe may take on one file; it reads headers only, so this is generous.
    probe_timeout_s: float = 60.0

    def format_whitelist(self) -> str:
        """Return the demuxer allowlist as ffmpeg's `-format_whitelist` value."""
        return ",".join(self.allowed_demuxers)

    def duration_tolerance(self, declared_s: float) -> float:
        """Return how much shorter than `declared_s` a decode may be before the file counts as truncated."""
        return max(self.duration_tolerance_s, self.duration_tolerance_ratio * declared_s)

    def demuxer_allowed(self, format_name: str) -> bool:
        """Return whether ffprobe's format_name (possibly 'mov,mp4,m4a,...') names an allowed demuxer."""
        return any(token in self.allowed_demuxers for token in format_name.split(","))
