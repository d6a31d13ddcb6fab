"""Every hostile or broken upload gets its error code at the right stage; the awkward valid ones get through."""

from __future__ import annotations

import json
from pathlib import Path

from media.analysis import analyse
from media.errors import MediaError
from media.limits import Limits
from media.probe import probe, run_ffprobe


def verdict(case, tmp_path) -> tuple[str | None, str]:
    """Return (error code or None, the stage that gave it) for one case, stored under a neutral server name."""
    path = case.write_to(tmp_path / f"upload-{abs(hash(case.filename))}")
    try:
        probed = probe(path, Limits(), case.filename)
    except MediaError as error:
        assert case.filename in error.message  # every message names the file as the user called it
        assert str(tmp_path) not in error.message  # and never the server's path
        return error.code, "probe"
    try:
        analyse(path, probed, Limits(), case.filename)
    except MediaError as error:
        assert case.filename in error.message and str(tmp_path) not in error.message
        return error.code, "analysis"
    return None, "analysis"


def test_every_case_gets_its_code_at_its_stage(corpus, tmp_path):
    wrong = []
    for case in corpus:
        got = verdict(case, tmp_path)
        if got != (case.expected_code, case.stage):
            wrong.append(f"{case.filename}: expected {case.expected_code}@{case.stage}, got {got[0]}@{got[1]}")
    assert not wrong, "\n".join(wrong)


def test_corpus_covers_the_required_kinds(corpus):
    assert len(corpus) >= 15
    codes = {case.expected_code for case in corpus}
    for code in ("empty_file", "not_media", "playlist_refused", "container_not_allowed", "codec_not_allowed",
                 "no_audio", "too_long", "resolution_too_high", "bitrate_too_high", "truncated", "decode_error", None):
        assert code in codes, code
    names = {case.filename for case in corpus}
    assert len(names) == len(corpus)  # the server tests pick cases by name
    assert {"第一课 学习.mp3", "../../etc/passwd.mp3", "lesson.avi"} <= names
    assert all(case.stage in ("probe", "analysis") for case in corpus)
    # Unpacks as the documented 4-tuple.
    filename, content, code, stage = corpus[0]
    assert isinstance(filename, str) and isinstance(content, (bytes, Path))


def test_errors_serialise_for_the_api(corpus, tmp_path):
    case = next(c for c in corpus if c.expected_code == "too_long")
    try:
        probe(case.write_to(tmp_path / "upload"), Limits(), case.filename)
    except MediaError as error:
        body = json.loads(json.dumps(error.to_dict()))
        assert body == {"code": "too_long", "message": error.message, "file": "four-hours.flac", "limit": "4 h"}
        assert error.http_status == 422
    else:
        raise AssertionError("four-hours.flac was accepted")


def test_whitelists_alone_keep_playlists_out(corpus, tmp_path):
    # Skip the content sniffing: ffprobe itself must never reach the HLS, DASH, concat or SDP demuxers.
    for case in corpus:
        if case.expected_code != "playlist_refused":
            continue
        path = case.write_to(tmp_path / "upload")
        try:
            info = run_ffprobe(path, Limits(), case.filename)
        except MediaError as error:
            assert error.code in ("not_media", "container_not_allowed")
        else:
            # The GAB2 AVI opens as an AVI; its playlist stays an opaque subtitle payload.
            assert info["format"]["format_name"] == "avi", case.filename
            assert all(stream["codec_type"] != "audio" for stream in info.get("streams", []))
