"""Stage summaries in logs and pipes: plain lines, never wrapped mid-path."""

from __future__ import annotations

import pytest

from pipeline.core.progress import summary


def test_summary_off_a_terminal_is_plain_unwrapped_lines(capsys: pytest.CaptureFixture) -> None:
    title = "synth moving_mnist -> /tmp/" + "very-long-folder/" * 6 + "mnist/mm.zarr"
    summary(title, {"videos": 2000, "store": "/data/" + "x" * 120})
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == title
    assert lines[1].split() == ["videos", "2000"]
    assert lines[2].split() == ["store", "/data/" + "x" * 120]
