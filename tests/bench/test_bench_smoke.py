"""Every benchmark runs end to end at smoke size (`--smoke`: tiny sizes, seconds) as a
subprocess and writes the rows it promises, so a change that breaks a benchmark fails here.
Not a measurement: the values are only checked to be numbers. bench/quality.py's smoke run is
tests/bench/test_bench_quality.py. Benchmarks that start their own Ray instance (on 2 CPUs in
smoke mode) are `slow`."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
# one torch/BLAS thread per process: tiny models on a shared machine only contend with more
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"}
# the benchmarks this file runs (bench/quality.py: test_bench_quality.py); helpers are not benches
COVERED = {"generate", "ingest", "loader", "scaling", "stream", "train", "quality"}
HELPERS = {"__init__", "common"}


def smoke(script: str, tmp_path: Path, *args: str) -> dict[str, dict]:
    """Run bench/<script>.py --smoke; its JSON rows by name (each value a finite number)."""
    out = tmp_path / f"{script}.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / f"{script}.py"), "--smoke", "--json", str(out), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {r["name"]: r for r in json.loads(out.read_text())["rows"]}
    for row in rows.values():
        assert math.isfinite(row["value"]), row
        if row["reference"] is not None:
            assert row["reference"] in rows, row
    return rows


def test_every_benchmark_has_a_smoke_test() -> None:
    scripts = {p.stem for p in BENCH.glob("*.py")} - HELPERS
    assert scripts == COVERED, f"bench/*.py without a smoke test here: {scripts - COVERED}"
    for script in scripts:
        assert "--smoke" in (BENCH / f"{script}.py").read_text(), script


def test_loader_smoke(tmp_path: Path) -> None:
    rows = smoke("loader", tmp_path)
    speeds = ["numpy in-memory gather", "store, cached", "store, streaming"]
    speeds.append("store, streaming, training order (rows)")
    reads = [
        f"one epoch, {w} ranks, {how}"
        for w in (1, 2, 4)
        for how in ("whole batch each", "own rows")
    ]
    assert set(rows) == {*speeds, *reads}
    assert all(r["value"] > 0 for r in rows.values())
    # W ranks that read their own rows read the store about once, not W times
    assert rows["one epoch, 4 ranks, own rows"]["ratio"] < 0.5


def test_train_smoke(tmp_path: Path) -> None:
    rows = smoke("train", tmp_path, "--device", "cpu")
    assert list(rows) == ["fc reference", "fc framecast", "conv reference", "conv framecast"]
    assert rows["fc framecast"]["reference"] == "fc reference"


@pytest.mark.slow
def test_ingest_smoke(tmp_path: Path) -> None:
    """The ingest actors on the store's default chunking (chunk_frames 0 = auto)."""
    rows = smoke("ingest", tmp_path, "--workdir", str(tmp_path / "work"))
    for name in ("ffmpeg_cli", "decoder", "one_actor", "all_actors_2", "bytes_written"):
        assert rows[name]["value"] > 0, name


@pytest.mark.slow
def test_generate_smoke(tmp_path: Path) -> None:
    rows = smoke("generate", tmp_path)
    expected = {"encode_only", "sample_only", "e2e_local", "e2e_1_worker", "e2e_2_workers",
                "encode_only_2_processes"}  # fmt: skip
    assert set(rows) == expected


@pytest.mark.slow
def test_stream_smoke_in_process_and_through_serve(tmp_path: Path) -> None:
    rows = smoke("stream", tmp_path, "--serve", "--serve-load")
    assert rows["sustained fps"]["value"] > 0 and rows["via serve sustained fps"]["value"] > 0
    assert rows["load 2x5 fps errors"]["value"] == 0
    assert rows["load 2x5 fps mismatched sessions"]["value"] == 0


@pytest.mark.slow
def test_scaling_smoke(tmp_path: Path) -> None:
    rows = smoke("scaling", tmp_path)
    names = [
        "train ray 1 worker, batch 4",
        "train ray 2 workers, global batch 4",
        "ingest local disk",
        "ingest s3 (moto)",
    ]
    for name in names:
        assert rows[name]["value"] > 0, name
