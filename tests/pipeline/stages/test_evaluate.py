"""evaluate and predict: every metric, checked against values computed here by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models import build_task
from models.mocogan import MoCoGANTask
from pipeline.cli import main
from pipeline.io.video import decode_frames
from pipeline.runtime import checkpoint

CONTEXT, HORIZON, SIZE = 4, 3, 16


@pytest.fixture()
def tiny_ckpt(tiny_store: str, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    args = [
        "train",
        f"store={tiny_store}",
        f"run_dir={run}",
        f"model.frame_size={SIZE}",
        "model.hidden=16",
        f"model.context={CONTEXT}",
        f"model.horizon={HORIZON}",
        "trainer.max_steps=2",
        "trainer.batch_size=4",
    ]
    assert main(args) == 0
    return run / "checkpoints" / "last.pt"


def _hand_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, np.ndarray]:
    """Per future step, averaged over sequences; frames (N, T, H, W) in [0, 1]."""
    err = pred - true
    eps = 1e-7
    p = np.clip(pred, eps, 1 - eps)
    bce = -(true * np.log(p) + (1 - true) * np.log(1 - p))
    mse_frame = (err**2).mean(axis=(2, 3))
    return {
        "mse": (err**2).sum(axis=(2, 3)).mean(0),
        "mae": np.abs(err).sum(axis=(2, 3)).mean(0),
        "bce": bce.sum(axis=(2, 3)).mean(0),
        "psnr": (10 * np.log10(1.0 / np.maximum(mse_frame, 1e-10))).mean(0),
    }


def test_evaluate_npy_every_metric_matches_hand_computation(
    tiny_ckpt: Path, tmp_path: Path
) -> None:
    seqs = np.random.default_rng(0).integers(0, 256, (CONTEXT + HORIZON + 2, 5, SIZE, SIZE))
    seqs = seqs.astype(np.uint8)
    np.save(tmp_path / "seq.npy", seqs)
    report = tmp_path / "eval.json"
    args = [
        "evaluate",
        f"checkpoint={tiny_ckpt}",
        "data=npy",
        f"data.path={tmp_path / 'seq.npy'}",
        f"report={report}",
        "evaluate.batch_size=2",
        f"evaluate.out={tmp_path / 'ev'}",
    ]
    assert main(args) == 0
    r = json.loads(report.read_text())
    assert r == json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert r["sequences"] == 5 and r["context"] == CONTEXT and r["horizon"] == HORIZON
    for name in ("mse", "mae", "psnr", "ssim", "bce"):
        assert len(r["per_step"][name]) == HORIZON
        assert r[name] == pytest.approx(np.mean(r["per_step"][name]), rel=1e-5)
        assert len(r["copy_last"]["per_step"][name]) == HORIZON

    x = seqs[: CONTEXT + HORIZON].transpose(1, 0, 2, 3).astype(np.float64) / 255.0  # (N,T,H,W)
    observed, future = x[:, :CONTEXT], x[:, CONTEXT:]
    copy = np.repeat(observed[:, -1:], HORIZON, axis=1)
    want = _hand_metrics(copy, future)
    for name, per_step in want.items():
        # bce: 1 - 1e-7 rounds in float32, so saturated pixels differ in the 4th digit
        tol = 1e-3 if name == "bce" else 1e-4
        assert r["copy_last"]["per_step"][name] == pytest.approx(per_step, rel=tol), name

    model = checkpoint.restore_task(checkpoint.load(tiny_ckpt)).inference_model().eval()
    obs_t = torch.from_numpy(observed[:, :, None]).float()
    pred = model.predict(obs_t, HORIZON).clamp(0, 1)[:, :, 0].double().numpy()
    want = _hand_metrics(pred, future)
    for name, per_step in want.items():
        assert r["per_step"][name] == pytest.approx(per_step, rel=1e-3), name
    assert -1 <= r["ssim"] <= 1 and -1 <= r["copy_last"]["ssim"] <= 1
    for f in ("metrics_per_step.png", "samples.png", "samples.gif"):
        assert (tmp_path / "ev" / f).stat().st_size > 0


def test_evaluate_store_uses_the_held_out_split(tiny_ckpt: Path, tiny_store: str) -> None:
    assert main(["evaluate", f"checkpoint={tiny_ckpt}", f"store={tiny_store}"]) == 0
    r = json.loads((tiny_ckpt.parent.parent / "evaluate" / "metrics.json").read_text())
    # 2 test videos of 40 frames, non-overlapping 7-frame sequences: 5 each
    assert r["sequences"] == 10


def test_predict_writes_side_by_side_video(
    tiny_ckpt: Path, tiny_store: str, tmp_path: Path
) -> None:
    out = tmp_path / "pred.mp4"
    args = [
        "predict",
        f"checkpoint={tiny_ckpt}",
        f"store={tiny_store}",
        "predict.video=v4",
        "predict.horizon=9",
        "predict.scale=2",
        f"out={out}",
    ]
    assert main(args) == 0
    frames = list(decode_frames(str(out)))
    assert len(frames) == CONTEXT + 9
    assert frames[0].shape[0] == 2 * SIZE and frames[0].shape[1] > 4 * SIZE
    r = json.loads(out.with_suffix(".json").read_text())
    assert r["horizon"] == 9 and r["frames_written"] == CONTEXT + 9 and "mse" in r["metrics"]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["checkpoint=/no/such.pt"], "/no/such.pt"),
        (["data=npy", "data.path=/no/such.npy"], "/no/such.npy"),
        (["evaluate.horizon=0"], "horizon"),
    ],
)
def test_evaluate_usage_errors(
    tiny_ckpt: Path,
    tiny_store: str,
    extra: list[str],
    needle: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["evaluate", f"checkpoint={tiny_ckpt}", f"store={tiny_store}", *extra]
    assert main(args) == 2
    assert needle in capsys.readouterr().err


def test_a_pickle_is_not_loaded_as_a_checkpoint(tmp_path: Path) -> None:
    import pickle

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"format": "framecast-checkpoint/1", "x": object()}))
    assert main(["evaluate", f"checkpoint={evil}", "store=x"]) == 2


def test_evaluate_takes_predictors_and_generators_only(
    tiny_store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A classifier checkpoint, or a generator as evaluate.baseline: one line naming the
    checkpoint, its family and what is taken."""
    torch.manual_seed(0)
    cls = build_task("video_classifier", frame_size=SIZE, length=4, num_categories=2, width=4)
    cls_path = tmp_path / "cls.pt"
    checkpoint.save(cls_path, cls, cls.make_optimizers(), 1, {})
    capsys.readouterr()
    assert main(["evaluate", f"checkpoint={cls_path}", f"store={tiny_store}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(cls_path) in err[0] and "video_classifier" in err[0]
    assert "evaluate takes a predictor or a generator" in err[0]

    lstm = build_task("lstm_autoencoder", frame_size=SIZE, hidden=8, context=CONTEXT, horizon=2)
    pred = tmp_path / "pred.pt"
    checkpoint.save(pred, lstm, lstm.make_optimizers(), 1, {})
    gen = MoCoGANTask(frame_size=SIZE, length=4, dim_content=4, dim_motion=4, dim_noise=2,
                      gen_channels=4, disc_channels=4)  # fmt: skip
    gen_path = tmp_path / "gen.pt"
    checkpoint.save(gen_path, gen, gen.make_optimizers(), 1, {})
    args = ["evaluate", f"checkpoint={pred}", f"store={tiny_store}"]
    assert main([*args, f"evaluate.baseline={gen_path}", f"evaluate.out={tmp_path}/ev"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(gen_path) in err[0] and "mocogan" in err[0]
    assert "evaluate.baseline takes a predictor" in err[0]


def test_evaluate_refuses_packaged_test_digits_after_training_on_full_mnist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model trained with data.mnist_root (the full MNIST) may have seen the packaged
    digits: evaluating it on a store of packaged-digit videos is refused, naming both; a store
    of the same digits, or a model trained on the packaged digits, evaluates."""
    from pipeline.datasets.moving_mnist import generate
    from pipeline.io.store import FrameStore

    url = str(tmp_path / "mm.zarr")
    store = FrameStore.create(url)
    for split in ("train", "test"):
        for vid, frames, attrs in generate(1, CONTEXT + HORIZON, split=split, seed=0):
            store.write_video(vid, frames, attrs)
    store.consolidate()
    lstm = build_task("lstm_autoencoder", frame_size=64, hidden=4, context=CONTEXT, horizon=HORIZON)

    def ckpt(name: str, config: dict) -> Path:
        path = tmp_path / f"{name}.pt"
        checkpoint.save(path, lstm, lstm.make_optimizers(), 1, config)
        return path

    full = ckpt("full", {"data": {"name": "moving_mnist", "mnist_root": "/data/mnist"}})
    capsys.readouterr()
    assert main(["evaluate", f"checkpoint={full}", f"store={url}"]) == 2
    err = capsys.readouterr().err
    assert url in err and str(full) in err and "mnist_5k" in err and "/data/mnist" in err
    # trained on a store whose training videos came from the full MNIST: refused too
    full_store = str(tmp_path / "full.zarr")
    s = FrameStore.create(full_store)
    s.write_video("mm-train-000000", frames, {**attrs, "split": "train", "digit_source": "mnist"})
    via_store = ckpt("via_store", {"data": {"name": "store"}, "store": full_store})
    assert main(["evaluate", f"checkpoint={via_store}", f"store={url}"]) == 2
    assert full_store in capsys.readouterr().err
    # the packaged digits both times: no leak
    packaged = ckpt("packaged", {"data": {"name": "moving_mnist", "mnist_root": None}})
    out = tmp_path / "ev"
    assert main(["evaluate", f"checkpoint={packaged}", f"store={url}", f"evaluate.out={out}"]) == 0


def test_evaluate_draws_where_an_attention_predictor_looked(
    tiny_store: str, tmp_path: Path
) -> None:
    """A predictor whose explain() returns "attention" (the Transformer) gets attention.png
    beside its motion.png, one row per shown sequence for its first and last predicted frame."""
    run = tmp_path / "tr"
    args = [
        "train", "model=transformer_predictor_cpu", f"store={tiny_store}", f"run_dir={run}",
        f"model.frame_size={SIZE}", "model.channels=1", "model.patch=4", "model.dim=16",
        "model.heads=2", "model.blocks=1", "model.field_patch=2", "model.window=8",
        f"model.context={CONTEXT}", f"model.horizon={HORIZON}", "trainer.max_steps=2",
        "trainer.batch_size=4",
    ]  # fmt: skip
    assert main(args) == 0
    out = tmp_path / "ev"
    ckpt = run / "checkpoints" / "last.pt"
    evaluate = ["evaluate", f"checkpoint={ckpt}", f"store={tiny_store}", f"evaluate.out={out}"]
    assert main([*evaluate, "evaluate.grid_sequences=2"]) == 0
    files = json.loads((out / "metrics.json").read_text())["files"]
    assert Path(files["attention_png"]).is_file() and Path(files["motion_png"]).is_file()
    from PIL import Image

    with Image.open(files["attention_png"]) as img:
        width, height = img.size
    # 2 sequences x (first, last predicted frame) rows of 16 px; T+S-1 sources + the prediction
    assert height == 2 * 2 * SIZE and width == (CONTEXT + HORIZON) * (SIZE + 2)
