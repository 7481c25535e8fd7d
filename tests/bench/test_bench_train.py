"""bench/train.py runs end to end with tiny sizes and writes the rows it promises (not timed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "train.py"
TINY = ["--hidden", "32", "--batch", "8", "--steps", "3", "--warmup", "1", "--block", "2"]
TINY_CONV = [
    "--frame-size",
    "16",
    "--conv-channels",
    "8",
    "--conv-layers",
    "2",
    "--conv-batch",
    "4",
]


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300
    )


def test_bench_reports_both_cells_against_their_references(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = bench("--device", "cpu", "--cell", "both", *TINY, *TINY_CONV, "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    body = json.loads(out.read_text())
    rows = {r["name"]: r for r in body["rows"]}
    assert list(rows) == ["fc reference", "fc framecast", "conv reference", "conv framecast"]
    for cell in ("fc", "conv"):
        ref, ours = rows[f"{cell} reference"], rows[f"{cell} framecast"]
        assert ref["reference"] is None and ref["ratio"] is None
        assert ours["reference"] == f"{cell} reference"
        assert ours["ratio"] == pytest.approx(ours["value"] / ref["value"], rel=0.01)
        assert ref["unit"] == ours["unit"] == "samples/s" and ref["value"] > 0
    assert "CPU" in body["title"] and body["device"] in body["title"]  # numbers name the machine
    assert "CPU" in proc.stdout and "fc framecast" in proc.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_without_a_gpu_is_a_clear_usage_error() -> None:
    proc = bench("--device", "cuda", *TINY)
    assert proc.returncode == 2
    assert "no CUDA device is available" in proc.stderr
    assert "Traceback" not in proc.stderr
