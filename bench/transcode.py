"""Benchmark: lessoncast's radio rendition of a 40-minute lesson against ffmpeg-normalize and a plain encode.

Times, on the same source and in one run:
  (a) lessoncast alone: probe, source loudness (analyse, mono layout only), encode, and measurement of the output;
  (b) ffmpeg-normalize in EBU mode (-16 LUFS, -1 dBTP) to the radio's MP3 settings;
  (c) a plain, un-normalised ffmpeg encode with the radio's MP3 settings.
Prints a table (figure, reference, ratio), the loudness and true peak of every output (measured with ffmpeg's ebur128,
not with lessoncast's code), and ends with one line of JSON holding every figure.

    .venv/bin/python bench/transcode.py                  # generates and caches a 40-minute speech-like WAV
    .venv/bin/python bench/transcode.py --input lesson.wav --repeat 3
    .venv/bin/python bench/transcode.py --oversample 4   # the limiter at 4x instead of the radio profile's 2x
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from media.analysis import analyse
from media.limits import Limits
from media.probe import probe
from media.profiles import PROFILES, Profile
from media.rendition import make_rendition

ROOT = Path(__file__).resolve().parent.parent
TAGS = {"title": "第一课 基准测试", "artist": "张老师", "album": "基准"}
# Syllables at ~4 Hz and phrases with pauses; the 0.02 floor is room tone, as in a real recording (digital silence
# would also make ffmpeg's IIR filters crawl through denormal numbers, which no real lesson does for long).
ENVELOPE = "(0.6+0.4*sin(2*PI*4.3*t))*(0.02+gt(sin(2*PI*0.21*t+1.5*sin(0.37*t)),-0.25))"


def speech_source(out_dir: Path, minutes: float) -> Path:
    """Return a cached mono 48 kHz WAV of speech-like audio at about -26 LUFS, generating it the first time."""
    path = out_dir / f"speech-{minutes:g}min.wav"
    if path.exists():
        return path
    seconds = minutes * 60
    graph = (
        f"anoisesrc=color=pink:amplitude=0.5:seed=7:r=48000:d={seconds},highpass=f=120,lowpass=f=6000[n];"
        f"aevalsrc='{ENVELOPE}':s=48000:d={seconds}[e];[n][e]amultiply,volume=1dB[o]"
    )
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        partial = Path(tmp) / path.name
        subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-filter_complex", graph, "-map", "[o]",
             "-c:a", "pcm_s16le", str(partial)],
            check=True,
        )
        partial.replace(path)
    return path


def mp3_options(profile: Profile) -> list[str]:
    """Return the radio profile's encoder options as ffmpeg arguments, for the references."""
    options = ["-ac", "1", "-ar", "44100", "-c:a", profile.audio_codec, "-b:a", profile.audio_bitrate]
    return options + [arg for key, value in profile.audio_options for arg in (f"-{key}", value)]


def ebur128(path: Path) -> tuple[float, float]:
    """Return (integrated LUFS, true peak dBTP) of a file, measured with ffmpeg's ebur128."""
    done = subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-i", str(path),
         "-af", "ebur128=peak=true:framelog=verbose", "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    )
    summary = done.stderr[done.stderr.rindex("Summary:"):]
    integrated = re.search(r"I:\s+(-?[\d.]+) LUFS", summary).group(1)
    peak = re.search(r"Peak:\s+(-?[\d.]+|-inf) dBFS", summary).group(1)
    return float(integrated), float(peak)


def run_lessoncast(src: Path, work: Path, profile: Profile) -> dict:
    """Make the radio rendition as the worker does for a lone radio job; return timings and the output."""
    started = time.monotonic()
    probed = probe(src, Limits(), src.name)
    probed_at = time.monotonic()
    # A lone radio rendition needs the mono layout's integrated loudness only.
    analysis = analyse(src, probed, Limits(), src.name, layouts=("mono",), true_peak=False)
    analysed_at = time.monotonic()
    result = make_rendition(src, probed, analysis, profile, work, tags=TAGS)
    done_at = time.monotonic()
    return {
        "seconds": done_at - started,
        "probe_s": probed_at - started,
        "analyse_s": analysed_at - probed_at,
        "encode_and_measure_s": done_at - analysed_at,
        "encodes": result.encodes,
        "path": result.path,
    }


def run_ffmpeg_normalize(src: Path, work: Path, profile: Profile) -> dict:
    """Normalise with ffmpeg-normalize (two-pass loudnorm) to the radio's MP3 settings; return timing and output."""
    out = work / "ffmpeg-normalize.mp3"
    extra = " ".join(arg for key, value in profile.audio_options for arg in (f"-{key}", value))
    argv = [
        str(Path(sys.executable).with_name("ffmpeg-normalize")), str(src), "-nt", "ebu", "-t", "-16", "-tp", "-1",
        "-c:a", profile.audio_codec, "-b:a", profile.audio_bitrate, "-ar", "44100", "-ac", "1",
        f"-e={extra}", "-o", str(out), "-f", "-q",
    ]
    started = time.monotonic()
    subprocess.run(argv, check=True)
    return {"seconds": time.monotonic() - started, "path": out}


def run_plain(src: Path, work: Path, profile: Profile) -> dict:
    """Encode with the radio's MP3 settings and no normalisation; return timing and output."""
    out = work / "plain.mp3"
    started = time.monotonic()
    argv = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), *mp3_options(profile), str(out)]
    subprocess.run(argv, check=True)
    return {"seconds": time.monotonic() - started, "path": out}


CONTENDERS = (("lessoncast", run_lessoncast), ("ffmpeg_normalize", run_ffmpeg_normalize), ("plain", run_plain))


def figures_of(src: Path, args: argparse.Namespace, profile: Profile, runs: dict, outputs: dict,
               load: tuple[float, float]) -> dict:
    """Return every figure of the run, medians over repeats, as one flat dict."""
    median = {name: statistics.median(r["seconds"] for r in results) for name, results in runs.items()}
    ours = runs["lessoncast"]
    figures = {
        "source": str(src),
        "source_minutes": round(probe(src, Limits(), src.name).duration_s / 60, 2),
        "cpus": os.cpu_count(),
        # The 1-minute load average before and after: on a shared machine the three-process encode suffers more
        # from other work than the one-process references do, so a ratio is only comparable at a similar load.
        "load_before": round(load[0], 2),
        "load_after": round(load[1], 2),
        "repeat": args.repeat,
        "oversample": profile.oversample,
        "lessoncast_s": round(median["lessoncast"], 2),
        "lessoncast_probe_s": round(statistics.median(r["probe_s"] for r in ours), 2),
        "lessoncast_analyse_s": round(statistics.median(r["analyse_s"] for r in ours), 2),
        "lessoncast_encode_and_measure_s": round(statistics.median(r["encode_and_measure_s"] for r in ours), 2),
        "lessoncast_encodes": ours[-1]["encodes"],
        "ffmpeg_normalize_s": round(median["ffmpeg_normalize"], 2),
        "plain_encode_s": round(median["plain"], 2),
        "ratio_vs_ffmpeg_normalize": round(median["lessoncast"] / median["ffmpeg_normalize"], 3),
        "ratio_vs_plain_encode": round(median["lessoncast"] / median["plain"], 3),
    }
    for name, (integrated, peak) in outputs.items():
        figures[f"{name}_lufs"], figures[f"{name}_dbtp"] = integrated, peak
    for name in ("lessoncast", "ffmpeg_normalize"):
        figures[f"{name}_target_met"] = profile.loudness_ok(figures[f"{name}_lufs"], figures[f"{name}_dbtp"])
    return figures


def report(figures: dict) -> None:
    """Print the table, the ratios and the output loudness, then the JSON line."""
    ours = "lessoncast radio (probe+analyse+encode+measure)"
    print(f"source: {figures['source']} ({figures['source_minutes']} min), {figures['cpus']} CPUs, "
          f"median of {figures['repeat']} run(s), limiter oversampled {figures['oversample']}x, "
          f"load average {figures['load_before']} before, {figures['load_after']} after")
    print(f"{'measured':<48} {'figure':>8}  {'reference':<36} {'figure':>8}  {'ratio':>6}")
    for reference, key, ratio in (
        ("ffmpeg-normalize (EBU, two passes)", "ffmpeg_normalize_s", "ratio_vs_ffmpeg_normalize"),
        ("plain ffmpeg encode, same MP3 options", "plain_encode_s", "ratio_vs_plain_encode"),
    ):
        print(f"{ours:<48} {figures['lessoncast_s']:7.1f}s  {reference:<36} {figures[key]:7.1f}s  "
              f"{figures[ratio]:6.3f}")
    print(f"lessoncast breakdown: probe {figures['lessoncast_probe_s']} s, "
          f"analyse {figures['lessoncast_analyse_s']} s, "
          f"encode+measure {figures['lessoncast_encode_and_measure_s']} s ({figures['lessoncast_encodes']} encode(s))")
    print(f"ratios: {figures['ratio_vs_ffmpeg_normalize']} x ffmpeg-normalize (target <= 0.25), "
          f"{figures['ratio_vs_plain_encode']} x plain encode (target <= 2.0)")
    for name in ("lessoncast", "ffmpeg_normalize", "plain"):
        met = figures.get(f"{name}_target_met")
        verdict = "" if met is None else f"  -16 LUFS +-1, <= -1 dBTP: {'met' if met else 'MISSED'}"
        print(f"output of {name:<17} {figures[f'{name}_lufs']:6.1f} LUFS {figures[f'{name}_dbtp']:+5.1f} dBTP{verdict}")
    print(json.dumps(figures, ensure_ascii=False))


def main() -> None:
    """Run the benchmark and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, help="source file (default: a generated speech-like WAV)")
    parser.add_argument("--minutes", type=float, default=40, help="length of the generated source")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each contender; the median time is reported")
    parser.add_argument("--oversample", type=int, help="limiter oversampling (default: the radio profile's)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out", help="cache for the generated source")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    src = args.input or speech_source(args.out, args.minutes)
    profile = PROFILES["radio"]
    if args.oversample:
        profile = dataclasses.replace(profile, oversample=args.oversample)

    runs: dict[str, list[dict]] = {name: [] for name, _ in CONTENDERS}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        for i in range(args.repeat):
            for name, contender in CONTENDERS:
                work = Path(tmp) / f"{name}-{i}"
                work.mkdir()
                runs[name].append(contender(src, work, profile))
        outputs = {name: ebur128(results[-1]["path"]) for name, results in runs.items()}
    report(figures_of(src, args, profile, runs, outputs, (load_before, os.getloadavg()[0])))


if __name__ == "__main__":
    main()
