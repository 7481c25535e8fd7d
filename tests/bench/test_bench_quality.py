"""bench/quality.py runs end to end at smoke size through the real stages and writes the rows it
promises: per dataset and metric, (a) the paper head, (b) the CPU predictor, (c) the Transformer
and copy-last, each against (a), (b) and (c) against copy-last, (c) against (b); plus the per-step
curves (not a quality check)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "quality.py"


@pytest.mark.slow
def test_quality_bench_smoke_rows_and_curves(tmp_path: Path) -> None:
    out = tmp_path / "quality.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--device", "cpu", "--json", str(out),
         "--out", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    body = json.loads(out.read_text())
    rows = {r["name"]: r for r in body["rows"]}
    for data in ("mnist", "textures"):
        for metric in ("mse", "psnr", "ssim", "sharpness"):
            ref = f"{data} {metric}: paper head (lstm_autoencoder_small)"
            assert rows[ref]["ratio"] is None
            for who in ("cpu predictor", "transformer predictor", "copy-last"):
                row = rows[f"{data} {metric}: {who}"]
                assert row["reference"] == ref and row["ratio"] is not None
            assert rows[f"{data} {metric}: cpu predictor / copy-last"]["unit"] == "ratio"
            assert (
                rows[f"{data} {metric}: transformer predictor / cpu predictor"]["unit"] == "ratio"
            )
        curves = body["curves"][data]
        assert set(curves) == {"paper", "cpu", "transformer", "copy_last"}
        assert len(curves["cpu"]["per_step"]["mse"]) == 10
        assert len(curves["copy_last"]["per_step"]["sharpness"]) == 10
        motion = tmp_path / "work" / f"{data}-cpu" / "evaluate" / "motion.png"
        assert motion.is_file()  # the warp head's flows and masks, drawn by evaluate
        assert (tmp_path / "work" / f"{data}-transformer" / "evaluate" / "motion.png").is_file()
