"""CLI values as people type them: "=", "&", "?" and ":" inside a value need no quoting."""

from __future__ import annotations

import pytest

from pipeline.core.config import compose, quote_value


@pytest.mark.parametrize(
    "typed",
    [
        "lavfi:testsrc2=size=320x240:rate=30",
        "https://host/v.mp4?a=1&b=2",
        "rtsp://cam.local:554/stream?user=a&pass=b",
        "a:b",
        "p?q",
        "/dev/video0",
    ],
)
def test_values_are_taken_exactly_as_typed(typed: str) -> None:
    assert compose("stream", ["checkpoint=x.pt", f"source={typed}"]).source == typed


def test_quoted_values_and_other_overrides_are_left_alone() -> None:
    assert compose("stream", ["checkpoint=x.pt", "source='a=b'"]).source == "a=b"  # README form
    assert quote_value("source='a=b'") == "source='a=b'"
    assert quote_value("stream.horizon=3") == "stream.horizon=3"
    assert quote_value("+stages.x.lr=0.1") == "+stages.x.lr=0.1"
    assert quote_value("~source") == "~source"
    assert quote_value("++a.b=c=d") == "++a.b='c=d'"


def test_a_grammar_error_names_the_argument_and_the_quoting_that_works() -> None:
    from pipeline.cli import main

    with pytest.raises(Exception) as e:
        compose("stream", ["checkpoint=x.pt", "source=[1,2"])
    msg = str(e.value)
    assert "\n" not in msg and "argument 'source=[1,2'" in msg and "\"source='[1,2'\"" in msg
    assert main(["stream", "checkpoint=x.pt", "source=[1,2"]) == 2
