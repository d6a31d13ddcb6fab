"""Rendition profiles as data: what each device kind gets, and which profiles a source needs.

A profile holds every codec, loudness and picture parameter of one rendition, so adding or tuning a rendition is a
change to this table, not to the command builders.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from media.model import ProbeResult


@dataclass(frozen=True)
class VideoSpec:
    """Picture parameters of a video rendition."""

    codec: str = "libx264"
    h264_profile: str = "high"
    preset: str = "veryfast"
    crf: int = 23
    maxrate: str = "2500k"
    bufsize: str = "5000k"
    max_width: int = 1280
    max_height: int = 720
    max_fps: float = 30.0
    pix_fmt: str = "yuv420p"
    keyframe_interval_s: float = 2.0
    # x264's output depends on its thread count, so it is fixed here: the same source must give the same bytes on a
    # two-core worker and on a sixteen-core one.
    threads: int = 4
    poster_at: float = 0.10  # fraction of the duration where the poster frame is taken
    poster_quality: int = 3  # mjpeg -q:v, 2 (best) .. 31


@dataclass(frozen=True)
class CompressorSpec:
    """When speech gets a compressor before the limiter, and how it is set.

    The limiter alone reaches the loudness target only while it takes a few dB off sparse peaks. Speech whose peaks
    stand further above its loudness (a phone held close, synthetic speech with sharp glottal pulses) loses loudness
    in the limiter faster than gain can add it: 2 dB more gain gave 0.8 dB more loudness on such a lesson. A fast
    peak compressor brings the peaks down first, so the gain that follows adds loudness one for one.
    """

    # dB the limiter may take off the peaks at the nominal gain before a compressor is used. The loudness the
    # limiter alone cost, measured: peaks 4 dB over the ceiling 0.2 LU on noise-like speech and 0.8 LU on
    # espeak-ng's voice, 6 dB 0.9 and 1.3 LU, 8 dB 2.1 LU. Clean speech, 14-17 dB from peak to loudness (the
    # benchmark's lesson: 16.1), stays under it and is encoded exactly as before.
    max_limiting_db: float = 4.0
    threshold_lu: float = 6.0  # above the source's integrated loudness: loud syllables pass, their peaks do not
    ratio: float = 4.0
    # A tenth of a millisecond catches each glottal pulse; the 50 ms release spans several pitch periods, so the
    # gain rides the syllable rather than each cycle and does not distort.
    attack_ms: float = 0.1
    release_ms: float = 50.0
    # The compressor takes loudness too. Measured on speech-like audio, generated speech and espeak-ng lessons with
    # 14-21 dB between peaks and loudness: about 0.3 dB for every dB the peaks reach above the threshold (within
    # 0.4 dB). It is added to the gain; what remains is corrected by the encode after a measured miss.
    makeup_share: float = 0.3


@dataclass(frozen=True)
class Profile:
    """One rendition: container, codecs, loudness target and (for video) picture parameters."""

    name: str
    kind: str  # "audio" | "video"
    extension: str
    muxer: str  # ffmpeg output format
    audio_codec: str
    audio_bitrate: str
    # 1 forces mono; None keeps a mono source mono and makes anything else stereo.
    channels: int | None
    # Output sample rates this profile accepts; a source at another rate is resampled to the first one.
    sample_rates: tuple[int, ...]
    # Band limit applied before the limiter, at or below the encoder's own low-pass: an encoder that filters a
    # limited (or clipped) signal puts back peaks the limiter had removed.
    lowpass_hz: int
    lowpass_stages: int = 2  # cascaded 2-pole sections: 24 dB/octave
    audio_options: tuple[tuple[str, str], ...] = ()
    muxer_options: tuple[tuple[str, str], ...] = ()
    # Raw stream format of the encoded audio, so it can be measured while it is written (None: measure the file).
    measure_format: str | None = None
    target_lufs: float = -16.0
    tolerance_lu: float = 1.0
    max_true_peak_dbtp: float = -1.0
    # The limiter ceiling sits a dB below the true-peak target because lossy encoders overshoot the peaks they are
    # given by up to about a dB on speech; the target is checked on the encoded file.
    limiter_ceiling_dbtp: float = -2.0
    # alimiter limits sample peaks; run at 4x the output rate its sample peaks are (within ~0.2 dB) true peaks.
    oversample: int = 4
    limiter_attack_ms: float = 5.0
    limiter_release_ms: float = 50.0
    compressor: CompressorSpec = CompressorSpec()
    # Write the radios' ID3v2.3 tag (media.tags) after encoding.
    radio_tags: bool = False
    video: VideoSpec | None = None

    def output_channels(self, probe: ProbeResult) -> int:
        """Return how many channels this rendition of `probe` has."""
        if self.channels is not None:
            return self.channels
        return 1 if probe.channels == 1 else 2

    def output_sample_rate(self, probe: ProbeResult) -> int:
        """Return the sample rate of this rendition of `probe`: the source's if allowed, else the default."""
        return probe.sample_rate if probe.sample_rate in self.sample_rates else self.sample_rates[0]

    def loudness_ok(self, integrated_lufs: float, true_peak_dbtp: float) -> bool:
        """Return whether measured figures meet this profile's loudness target and true-peak ceiling."""
        loud_enough = abs(integrated_lufs - self.target_lufs) <= self.tolerance_lu
        return loud_enough and true_peak_dbtp <= self.max_true_peak_dbtp


RADIO = Profile(
    name="radio",
    kind="audio",
    extension="mp3",
    muxer="mp3",
    audio_codec="libmp3lame",
    audio_bitrate="64k",  # speech, mono: cheap radios and slow village links
    channels=1,
    sample_rates=(44100,),
    lowpass_hz=11000,
    # LAME's own low-pass just above ours: it then removes next to nothing, and at 64 kb/s the bits it would spend
    # on 12-16 kHz go to the speech band instead; its quantisation noise, which makes the overshoot, stays lower.
    audio_options=(("cutoff", "12000"),),
    # Measured on 40 min of speech at 64 kb/s: LAME overshoots the limiter by up to ~0.9 dB.
    limiter_ceiling_dbtp=-2.8,
    # The 11 kHz band limit leaves nothing above a quarter of 44.1 kHz, so at 2x (88.2 kHz) the limiter's sample
    # peaks sit within 0.7 dB of the true peaks in the worst case (a tone at the band edge, sampled half-way), and
    # the ceiling above keeps that margin. Half the samples of 4x makes the radio encode ~35 % faster (see
    # BENCHMARKS.md); the output's true peak is still measured at 4x and a miss gets a corrective encode.
    oversample=2,
    # ffmpeg writes no ID3 tag; media.tags writes the ID3v2.3 one the radios can read.
    muxer_options=(("id3v2_version", "0"),),
    measure_format="mp3",
    radio_tags=True,
)

TERMINAL_AUDIO = Profile(
    name="terminal-audio",
    kind="audio",
    extension="m4a",
    muxer="ipod",
    audio_codec="aac",
    audio_bitrate="96k",
    channels=None,
    sample_rates=(48000, 44100),
    lowpass_hz=15000,
    # The default (twoloop) coder is about 4x slower for no audible gain on speech.
    audio_options=(("aac_coder", "fast"), ("cutoff", "16000")),
    # moov before mdat, so a terminal can start playing (and seeking) before the download has finished.
    muxer_options=(("movflags", "+faststart"),),
    measure_format="adts",
)

# The terminals' video: the same sound as terminal-audio, with H.264 pictures, in MP4. The audio is measured from
# the file, since it is muxed with the video.
TERMINAL_VIDEO = replace(
    TERMINAL_AUDIO,
    name="terminal-video",
    kind="video",
    extension="mp4",
    muxer="mp4",
    measure_format=None,
    video=VideoSpec(),
)

PROFILES: dict[str, Profile] = {p.name: p for p in (RADIO, TERMINAL_AUDIO, TERMINAL_VIDEO)}


def profiles_for(probe: ProbeResult) -> list[Profile]:
    """Return the profiles a source needs: radio and terminal-audio always, terminal-video for video sources."""
    chosen = [PROFILES["radio"], PROFILES["terminal-audio"]]
    if probe.has_video:
        chosen.append(PROFILES["terminal-video"])
    return chosen
