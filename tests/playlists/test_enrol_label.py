"""The enrolment label's QR payload: what the console prints is what the agent reads back."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from device_agent.cli import agent
from playlists.enrol_label import EnrolLabel, label_text, read_label


@pytest.mark.parametrize("server", ["http://192.168.1.10:8750", "https://county.example/lc?x=1&y=2"])
def test_a_printed_label_reads_back(server):
    text = label_text(server, "K7QX-M3TD-WA9F")
    assert text.startswith("lessoncast:enrol?server=")
    assert read_label(text) == EnrolLabel(code="K7QX-M3TD-WA9F", server=server)


@pytest.mark.parametrize("text, code", [("K7QX-M3TD-WA9F", "K7QX-M3TD-WA9F"), ("  k7qx m3td wa9f ", "k7qx m3td wa9f")])
def test_a_typed_code_is_only_a_code(text, code):
    assert read_label(text) == EnrolLabel(code=code)


@pytest.mark.parametrize("text", ["lessoncast:enrol?server=http%3A%2F%2Fx", "lessoncast:pair?code=AAAA",
                                  "lessoncast:enrol?server=file%3A%2F%2F%2Fetc&code=AAAA"])
def test_a_broken_label_is_refused(text):
    with pytest.raises(ValueError):
        read_label(text)


def test_agent_enrol_needs_a_server_unless_the_label_names_it(tmp_path):
    runner = CliRunner()
    typed = runner.invoke(agent, ["enrol", "--code", "K7QX-M3TD-WA9F", "--data", str(tmp_path)])
    assert typed.exit_code == 2 and "--server" in typed.output
    broken = runner.invoke(agent, ["enrol", "--code", "lessoncast:enrol?server=ftp%3A%2F%2Fx&code=A",
                                   "--data", str(tmp_path)])
    assert broken.exit_code == 2 and "ftp://x" in broken.output
    # a label naming an unreachable server gets as far as the network, with that server in the message
    label = label_text("http://127.0.0.1:9", "K7QX-M3TD-WA9F")
    unreachable = runner.invoke(agent, ["enrol", "--code", label, "--data", str(tmp_path)])
    assert unreachable.exit_code == 1 and "http://127.0.0.1:9/api/v1/enrol" in unreachable.output
