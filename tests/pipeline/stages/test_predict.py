"""`framecast predict`: the predictions written are the model's on the observed frames, a video
file input, and a checkpoint of another kind refused in one line. Tiny untrained checkpoints
made here, so nothing trains."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models import build_task
from models.metrics import video_metrics
from models.mocogan import MoCoGANTask
from pipeline.cli import main
from pipeline.core.frames import to_model
from pipeline.io.store import FrameStore
from pipeline.io.video import decode_frames, write_video
from pipeline.runtime import checkpoint
from pipeline.runtime.inference import load_model

CONTEXT, HORIZON, SIZE = 4, 3, 16


@pytest.fixture(scope="module")
def pred_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    task = build_task(
        "lstm_autoencoder", frame_size=SIZE, channels=1, hidden=8, context=CONTEXT, horizon=HORIZON
    )
    path = tmp_path_factory.mktemp("predict") / "pred.pt"
    checkpoint.save(path, task, task.make_optimizers(), 1, {"trainer": {"test_fraction": 0.1}})
    return path


def test_predict_from_a_store_video_is_the_models_prediction(
    pred_ckpt: Path, tiny_store: str, tmp_path: Path
) -> None:
    """From predict.start on: CONTEXT observed frames, HORIZON predicted; the metrics of the
    result are those of the model's own prediction on those frames."""
    out = tmp_path / "pred.gif"
    args = ["predict", f"checkpoint={pred_ckpt}", f"store={tiny_store}", f"out={out}"]
    assert main([*args, "predict.video=v4", "predict.start=5", "predict.scale=1"]) == 0
    r = json.loads(out.with_suffix(".json").read_text())
    assert r["context"] == CONTEXT and r["horizon"] == HORIZON
    assert r["frames_written"] == CONTEXT + HORIZON == len(list(decode_frames(str(out))))
    frames = FrameStore.open(tiny_store).frames("v4", 5, 5 + CONTEXT + HORIZON)
    model = load_model(pred_ckpt, "cpu", want=("predictor",)).model
    x = to_model(frames)[None]
    with torch.no_grad():
        pred = model.predict(x[:, :CONTEXT], HORIZON).clamp(0, 1)
    want = video_metrics(pred, x[:, CONTEXT:])
    for name in ("mse", "psnr"):
        assert r["metrics"][name] == pytest.approx(want[name]["mean"], rel=1e-4), name


def test_predict_from_a_video_file(pred_ckpt: Path, tmp_path: Path) -> None:
    """A file input is decoded at the model's size and channels; fewer true frames than the
    horizon still predict the whole horizon."""
    src = tmp_path / "in.mp4"
    rng = np.random.default_rng(0)
    write_video(str(src), rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8), fps=10)
    out = tmp_path / "out.mp4"
    args = ["predict", f"checkpoint={pred_ckpt}", f"input={src}", f"out={out}", "predict.scale=2"]
    assert main(args) == 0
    r = json.loads(out.with_suffix(".json").read_text())
    assert r["input"] == str(src) and r["true_future_frames"] == 2
    frames = list(decode_frames(str(out)))
    assert len(frames) == CONTEXT + HORIZON and frames[0].shape[0] == 2 * SIZE


def test_predict_refuses_a_generator_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    gen = MoCoGANTask(frame_size=SIZE, length=4, dim_content=4, dim_motion=4, dim_noise=2,
                      gen_channels=4, disc_channels=4)  # fmt: skip
    path = tmp_path / "gen.pt"
    checkpoint.save(path, gen, gen.make_optimizers(), 1, {})
    capsys.readouterr()
    # refused before the input is looked at (it does not exist)
    args = ["predict", f"checkpoint={path}", f"out={tmp_path / 'x.mp4'}", "input=/no/such.mp4"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    line = err[0]
    assert str(path) in line and "mocogan" in line and "a generator" in line
    assert "predict takes a predictor checkpoint" in line and "lstm_autoencoder" in line
    assert not (tmp_path / "x.mp4").exists()


def test_predict_usage_errors(
    pred_ckpt: Path, tiny_store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["predict", f"checkpoint={pred_ckpt}", f"store={tiny_store}", "predict.video=v4"]
    for extra, needle in (
        ([f"out={tmp_path / 'x.txt'}"], ".mp4"),
        ([f"out={tmp_path / 'x.mp4'}", "predict.horizon=0"], "horizon"),
        ([f"out={tmp_path / 'x.mp4'}", "predict.video=nope"], "nope"),
        ([f"out={tmp_path / 'x.mp4'}", "predict.start=38"], "context=4"),
    ):
        capsys.readouterr()
        assert main([*base, *extra]) == 2, extra
        assert needle in capsys.readouterr().err, extra
