"""The `framecast` CLI: help, stage runs, one-line usage errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import STAGES, main
from pipeline.io.store import FrameStore


def framecast(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_help_lists_every_stage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for stage in STAGES:
        assert f"\n  {stage} " in out


def test_stage_help_shows_its_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", "--help"]) == 0
    out = capsys.readouterr().out
    assert "num_videos: 1000" in out and "data: moving_mnist, npy" in out


def test_synth_then_info_end_to_end(tmp_path: Path) -> None:
    store, report = tmp_path / "mm.zarr", tmp_path / "r" / "synth.json"
    r = framecast(
        "synth",
        f"store={store}",
        "synth.num_videos=10",
        "synth.length=12",
        "data.test_fraction=0.2",
        f"report={report}",
    )
    assert r.returncode == 0, r.stderr
    result = json.loads(report.read_text())
    assert result["written"] == 10 and result["frames"] == 120
    assert (store / "reports" / "synth.json").exists()
    s = FrameStore.open(str(store))
    assert len(s) == 10 and s.frames(s.video_ids()[0]).shape == (12, 64, 64, 1)
    assert sum(s.attrs(v)["split"] == "test" for v in s.video_ids()) == 2
    # a rerun skips what is complete
    r = framecast(
        "synth",
        f"store={store}",
        "synth.num_videos=10",
        "synth.length=12",
        "data.test_fraction=0.2",
        f"report={report}",
    )
    assert r.returncode == 0 and json.loads(report.read_text())["skipped"] == 10
    r = framecast("info", f"store={store}")
    assert r.returncode == 0
    info = json.loads(r.stdout)
    assert (
        info["videos"] == 10
        and info["frames"] == 120
        and info["splits"]
        == {
            "train": 8,
            "test": 2,
        }
    )


def test_npy_import(tmp_path: Path) -> None:
    seqs = np.random.default_rng(0).integers(0, 256, (6, 3, 64, 64), dtype=np.uint8)
    np.save(tmp_path / "seq.npy", seqs)
    store = tmp_path / "npy.zarr"
    r = framecast("synth", "data=npy", f"data.path={tmp_path / 'seq.npy'}", f"store={store}")
    assert r.returncode == 0, r.stderr
    s = FrameStore.open(str(store))
    assert len(s) == 3
    assert np.array_equal(s.frames(s.video_ids()[1])[..., 0], seqs[:, 1])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["synth", "store=X", "synth.num_videos=abc"], "synth.num_videos"),
        (["synth", "store=X", "synth.nope=1"], "unknown config key 'synth.nope'"),
        (["synth", "store=X", "nope=1"], "nope"),
        (["synth"], "missing required key 'store'"),
        (["synth", "store=X", "data=nothing"], "data/nothing"),
        (["synth", "store=X", "data=npy", "data.path=/no/such.npy"], "/no/such.npy"),
        (["info", "store=/no/such/store.zarr"], "/no/such/store.zarr"),
        (["frobnicate"], "unknown stage 'frobnicate'"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    args = [a.replace("store=X", f"store={tmp_path / 'x.zarr'}") for a in args]
    r = framecast(*args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_parallel_synth_writes_the_same_videos(tmp_path: Path) -> None:
    common = ["synth.num_videos=12", "synth.length=6", "data.test_fraction=0.25"]
    assert main(["synth", f"store={tmp_path / 'one.zarr'}", *common]) == 0
    assert main(["synth", f"store={tmp_path / 'two.zarr'}", "synth.workers=2", *common]) == 0
    one, two = (
        FrameStore.open(str(tmp_path / "one.zarr")),
        FrameStore.open(str(tmp_path / "two.zarr")),
    )
    assert one.video_ids() == two.video_ids() and len(one) == 12
    for v in one.video_ids():
        assert np.array_equal(one.frames(v), two.frames(v)) and one.attrs(v) == two.attrs(v)
