"""The generic trainer: logs, checkpoints, exact resume after kill -9, NaN stop, Ray DDP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pipeline.cli import main
from pipeline.runtime import checkpoint
from pipeline.stages.train import make_update

TINY_MODEL = [
    "model.frame_size=16",
    "model.hidden=32",
    "model.context=5",
    "model.horizon=5",
]


def train_args(store: str, run_dir: Path, *extra: str) -> list[str]:
    return [
        "train",
        f"store={store}",
        f"run_dir={run_dir}",
        *TINY_MODEL,
        "trainer.batch_size=8",
        "trainer.log_every=1",
        *extra,
    ]


def losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(ln)["loss"] for ln in lines]


def test_local_training_logs_checkpoints_and_lowers_loss(tiny_store: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = train_args(
        tiny_store,
        run_dir,
        "trainer.max_steps=30",
        "trainer.checkpoint_every=5",
        "trainer.keep_checkpoints=2",
    )
    assert main(args) == 0
    curve = losses(run_dir)
    assert len(curve) == 30
    assert sum(curve[-5:]) / 5 < sum(curve[:5]) / 5
    result = json.loads((run_dir / "train.json").read_text())
    assert result["steps"] == 30 and result["samples_per_s"] > 0
    # the newest keep_checkpoints step files and last.pt; nothing half-written left behind
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "last.pt",
        "step-00000025.pt",
        "step-00000030.pt",
    ]
    assert checkpoint.load(run_dir / "checkpoints" / "step-00000025.pt")["step"] == 25
    ckpt = checkpoint.load(run_dir / "checkpoints" / "last.pt")  # weights_only=True inside
    assert ckpt["step"] == 30 and ckpt["model_config"]["hidden"] == 32
    assert ckpt["config"]["trainer"]["max_steps"] == 30
    assert any((run_dir / "tensorboard").iterdir())
    task = checkpoint.restore_task(ckpt)
    out = task.inference_model().predict(torch.rand(2, 5, 1, 16, 16), 7)
    assert out.shape == (2, 7, 1, 16, 16)


@pytest.mark.parametrize(
    ("root", "message"), [("missing", "no such file or directory"), ("", "no MNIST dataset there")]
)
def test_a_bad_mnist_root_is_a_clear_error_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], root: str, message: str
) -> None:
    folder = tmp_path / root if root else tmp_path  # an existing folder without MNIST in it
    args = ["train", "data=moving_mnist", f"data.mnist_root={folder}",
            f"run_dir={tmp_path / 'run'}", "model.hidden=8", "trainer.max_steps=1"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"data.mnist_root={folder}" in err and message in err and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_store_smaller_than_one_batch_is_a_clear_error(
    tiny_store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With drop_last, fewer clips than trainer.batch_size gives no batch at all: an error,
    not an endless wait for the first one."""
    from pipeline.io.loader import ClipDataset

    args = train_args(tiny_store, tmp_path / "run", "trainer.batch_size=100000")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "fewer than one batch" in err and "trainer.batch_size=100000" in err
    ds = ClipDataset(tiny_store, 10, 100000, split="train", epochs=None, drop_last=True)
    with pytest.raises(ValueError, match="make no batch"):
        next(iter(ds))


_KILL_AFTER = 12


def test_resume_after_kill_gives_the_same_curve(tiny_store: str, tmp_path: Path) -> None:
    common = ["trainer.max_steps=24", "trainer.checkpoint_every=4", "model.lr=0.003"]
    ref = tmp_path / "ref"
    assert main(train_args(tiny_store, ref, *common)) == 0

    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "pipeline", *train_args(tiny_store, run, *common)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        metrics = run / "metrics.jsonl"
        if metrics.exists() and len(metrics.read_text().splitlines()) >= _KILL_AFTER:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    done = len(losses(run))
    assert _KILL_AFTER <= done < 24, "the run must die mid-way for this test to mean anything"

    assert main(train_args(tiny_store, run, *common, "trainer.resume=true")) == 0
    resumed = json.loads((run / "train.json").read_text())
    assert resumed["resumed"] and 0 < resumed["start_step"] <= done
    assert resumed["start_step"] % 4 == 0  # from the last checkpoint
    assert losses(run) == pytest.approx(losses(ref), rel=1e-5, abs=1e-6)
    a = checkpoint.load(ref / "checkpoints" / "last.pt")["networks"]["model"]
    b = checkpoint.load(run / "checkpoints" / "last.pt")["networks"]["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_nan_loss_stops_with_a_clear_message_and_keeps_checkpoint(
    tiny_store: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from models.lstm_autoencoder import LSTMAutoencoderTask

    real_step = LSTMAutoencoderTask.training_step

    def diverging_step(self, batch, step, update):  # noqa: ANN001, ANN202
        logs = real_step(self, batch, step, update)
        return {**logs, "loss": float("nan")} if step >= 5 else logs

    monkeypatch.setattr(LSTMAutoencoderTask, "training_step", diverging_step)
    run = tmp_path / "nan"
    args = train_args(tiny_store, run, "trainer.max_steps=50", "trainer.checkpoint_every=2")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "loss is nan at step 5" in err.lower() and "last good checkpoint" in err
    assert len(err.strip().splitlines()[-1]) > 0 and "Traceback" not in err
    kept = checkpoint.load(run / "checkpoints" / "last.pt")
    assert kept["step"] == 4  # the last checkpoint before the NaN, not overwritten


def test_clipping_bounds_the_global_norm() -> None:
    w = torch.nn.Parameter(torch.ones(10))
    seen = {}

    class Spy(torch.optim.SGD):
        def step(self, closure=None):  # noqa: ANN001, ANN202
            seen["norm"] = float(torch.linalg.vector_norm(w.grad))
            return super().step(closure)

    update = make_update({"m": Spy([w], lr=0.1)}, clip_grad_norm=0.5)
    update((w * 1000.0).sum(), "m")
    assert seen["norm"] == pytest.approx(0.5, rel=1e-4)
    update = make_update({"m": Spy([w], lr=0.1)}, clip_grad_norm=None)
    update((w * 1000.0).sum(), "m")
    assert seen["norm"] == pytest.approx(1000.0 * 10**0.5, rel=1e-4)


@pytest.mark.slow
def test_ray_two_workers_match_one_worker_on_the_concatenated_batch(
    ray_local: None, tiny_store: str, tmp_path: Path
) -> None:
    common = [
        "trainer.max_steps=3",
        "model.lr=0.01",
        "trainer.clip_grad_norm=null",
        "trainer.checkpoint_every=1",
    ]
    assert main(train_args(tiny_store, tmp_path / "one", *common)) == 0
    two = train_args(
        tiny_store, tmp_path / "two", *common, "trainer.backend=ray", "trainer.workers=2"
    )
    assert main(two) == 0
    result = json.loads((tmp_path / "two" / "train.json").read_text())
    assert result["workers"] == 2 and result["steps"] == 3
    a = checkpoint.load(tmp_path / "one" / "checkpoints" / "last.pt")["networks"]["model"]
    b = checkpoint.load(tmp_path / "two" / "checkpoints" / "last.pt")["networks"]["model"]
    # Ray Train's checkpoint folders: the newest trainer.keep_checkpoints (default 3) of them
    kept = sorted(p.name for p in (tmp_path / "two" / "checkpoints").glob("step-*"))
    assert kept == ["step-00000001", "step-00000002", "step-00000003"]
    first = checkpoint.load(tmp_path / "two" / "checkpoints" / "step-00000001")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    assert any(not torch.equal(first["networks"]["model"][k], b[k]) for k in b)  # it trained
    assert losses(tmp_path / "one") == pytest.approx(losses(tmp_path / "two"), rel=1e-4)
    # fp16 all-reduce: the same run up to half-precision rounding of the averaged gradients
    half = [*two[:2], f"run_dir={tmp_path / 'half'}", *two[3:], "trainer.grad_compression=fp16"]
    assert main(half) == 0
    c = checkpoint.load(tmp_path / "half" / "checkpoints" / "last.pt")["networks"]["model"]
    # Adam divides by the gradient's scale, so a tiny gradient rounded by fp16 can move its
    # weight by ~lr: a few weights differ, the run does not
    far = sum(int(((a[k] - c[k]).abs() > 1e-3).sum()) for k in a)
    assert 0 < far < 0.05 * sum(a[k].numel() for k in a)
    assert losses(tmp_path / "one") == pytest.approx(losses(tmp_path / "half"), rel=1e-2)
    assert main([*half[:-1], "trainer.grad_compression=int8"]) == 2


def test_training_on_fresh_moving_mnist_sequences(tmp_path: Path) -> None:
    run = tmp_path / "mm"
    args = [
        "train",
        "data=moving_mnist",
        f"run_dir={run}",
        "model.hidden=16",
        "model.context=3",
        "model.horizon=2",
        "trainer.batch_size=4",
        "trainer.max_steps=3",
    ]
    assert main(args) == 0
    result = json.loads((run / "train.json").read_text())
    assert result["steps"] == 3 and "on the fly" in result["store"]


def test_a_restarted_worker_continues_its_own_run_only(tiny_store: str, tmp_path: Path) -> None:
    """Ray Train re-runs the worker function after a failure with the same job: it must pick up
    that run's last.pt by itself; a new invocation must not silently resume an old run."""
    from dataclasses import asdict

    from pipeline.stages.train import TrainerConfig, train_loop

    model = {"name": "lstm_autoencoder", "frame_size": 16, "hidden": 8, "context": 3, "horizon": 2}
    trainer = asdict(TrainerConfig(max_steps=4, batch_size=4, checkpoint_every=2, log_every=1))
    job = {
        "run_id": "first",
        "store": tiny_store,
        "data": {"name": "store"},
        "run_dir": str(tmp_path / "run"),
        "trainer": trainer,
        "model": model,
        "config": {},
    }
    assert train_loop(job)["start_step"] == 0
    restarted = {**job, "trainer": {**trainer, "max_steps": 6}}
    result = train_loop(restarted)
    assert result["resumed"] and result["start_step"] == 4 and result["steps"] == 6
    fresh = {**restarted, "run_id": "second"}
    result = train_loop(fresh)
    assert not result["resumed"] and result["start_step"] == 0


def test_ray_ranks_make_their_own_moving_mnist_rows_and_match_one_worker(
    ray_local: None, tmp_path: Path
) -> None:
    """With data=moving_mnist each rank generates only its half of every global batch: the
    2-worker run is still the 1-worker run on the concatenated batch."""
    args = [
        "train",
        "data=moving_mnist",
        "model.hidden=16",
        "model.context=3",
        "model.horizon=2",
        "model.lr=0.01",
        "trainer.batch_size=4",
        "trainer.max_steps=3",
        "trainer.log_every=1",
        "trainer.clip_grad_norm=null",
    ]
    assert main([*args, f"run_dir={tmp_path / 'one'}"]) == 0
    two = [*args, f"run_dir={tmp_path / 'two'}", "trainer.backend=ray", "trainer.workers=2"]
    assert main(two) == 0
    a = checkpoint.load(tmp_path / "one" / "checkpoints" / "last.pt")["networks"]["model"]
    b = checkpoint.load(tmp_path / "two" / "checkpoints" / "last.pt")["networks"]["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    assert losses(tmp_path / "one") == pytest.approx(losses(tmp_path / "two"), rel=1e-4)


@pytest.mark.slow
def test_ray_two_workers_train_mocogan_as_one_worker_on_the_concatenated_batch(
    ray_local: None, tmp_path: Path
) -> None:
    """A GAN draws its own inputs: each rank draws those of its videos of the global batch
    (codes, D_I's frames, D_V's clips, instance noise at every layer), and BatchNorm takes the
    global batch's statistics (GlobalBatchNorm), in G, D_I, D_V and the moving average. So the
    2-worker run is the 1-worker run: every network's weights and statistics after 3 steps."""
    store = tmp_path / "shapes.zarr"
    synth = ["synth", "data=shapes", f"store={store}", "data.size=16", "synth.num_videos=8"]
    assert main([*synth, "synth.length=6"]) == 0
    model = dict(frame_size=16, length=4, dim_content=6, dim_motion=4, dim_noise=3,
                 gen_channels=8, disc_channels=8, num_categories=6, image_batch=8, ema=0.9,
                 noise_layers="all", lr=0.002)  # fmt: skip
    args = [
        "train",
        "model=mocogan",
        f"store={store}",
        *[f"model.{k}={v}" for k, v in model.items()],
        "trainer.batch_size=4",
        "trainer.max_steps=3",
        "trainer.log_every=1",
        "trainer.checkpoint_every=1",
        "trainer.clip_grad_norm=null",
    ]
    assert main([*args, f"run_dir={tmp_path / 'one'}"]) == 0
    two = [*args, f"run_dir={tmp_path / 'two'}", "trainer.backend=ray", "trainer.workers=2"]
    assert main(two) == 0
    a = checkpoint.load(tmp_path / "one" / "checkpoints" / "last.pt")["networks"]
    b = checkpoint.load(tmp_path / "two" / "checkpoints" / "last.pt")["networks"]
    # Ray Train's checkpoint folders: the newest trainer.keep_checkpoints (default 3) of them
    kept = sorted(p.name for p in (tmp_path / "two" / "checkpoints").glob("step-*"))
    assert kept == ["step-00000001", "step-00000002", "step-00000003"]
    first = checkpoint.load(tmp_path / "two" / "checkpoints" / "step-00000001")["networks"]
    assert set(a) == set(b) == {"generator", "generator_ema", "image_disc", "video_disc"}
    for net in a:
        for k in a[net]:  # parameters and BatchNorm statistics
            torch.testing.assert_close(a[net][k], b[net][k], rtol=1e-4, atol=1e-5, msg=k)
        assert any(not torch.equal(first[net][k], b[net][k]) for k in b[net])  # it trained
    assert losses(tmp_path / "one") == pytest.approx(losses(tmp_path / "two"), rel=1e-4)


# The same generic paths with the Transformer predictor (models/transformer_predictor.py): the
# trainer knows no family, so exact resume and exact data parallelism hold for it too.
TRANSFORMER = [
    "model=transformer_predictor_cpu",
    "model.frame_size=16",
    "model.patch=4",
    "model.dim=16",
    "model.heads=2",
    "model.blocks=2",
    "model.field_patch=2",
    "model.context=3",
    "model.horizon=2",
]


def test_transformer_resume_after_kill_gives_the_same_curve(
    tiny_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(globals(), "TINY_MODEL", TRANSFORMER)  # train_args reads it
    test_resume_after_kill_gives_the_same_curve(tiny_store, tmp_path)
    ckpt = checkpoint.load(tmp_path / "killed" / "checkpoints" / "last.pt")
    assert ckpt["model"] == "transformer_predictor" and ckpt["step"] == 24


@pytest.mark.slow
def test_transformer_ray_two_workers_match_one_worker(
    ray_local: None, tiny_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(globals(), "TINY_MODEL", TRANSFORMER)
    common = [
        "trainer.max_steps=3",
        "model.lr=0.01",
        "trainer.clip_grad_norm=null",
        "trainer.checkpoint_every=1",
    ]
    assert main(train_args(tiny_store, tmp_path / "one", *common)) == 0
    two = [*common, "trainer.backend=ray", "trainer.workers=2"]
    assert main(train_args(tiny_store, tmp_path / "two", *two)) == 0
    assert json.loads((tmp_path / "two" / "train.json").read_text())["workers"] == 2
    a = checkpoint.load(tmp_path / "one" / "checkpoints" / "last.pt")["networks"]["model"]
    b = checkpoint.load(tmp_path / "two" / "checkpoints" / "last.pt")["networks"]["model"]
    # Ray Train's checkpoint folders: the newest trainer.keep_checkpoints (default 3) of them
    kept = sorted(p.name for p in (tmp_path / "two" / "checkpoints").glob("step-*"))
    assert kept == ["step-00000001", "step-00000002", "step-00000003"]
    first = checkpoint.load(tmp_path / "two" / "checkpoints" / "step-00000001")
    assert any(k.endswith("time_bias") for k in a)  # the Transformer's weights
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    assert any(not torch.equal(first["networks"]["model"][k], b[k]) for k in b)  # it trained
    assert losses(tmp_path / "one") == pytest.approx(losses(tmp_path / "two"), rel=1e-4)


def test_ray_gpu_use_comes_from_the_cluster_not_the_driver(capsys: pytest.CaptureFixture) -> None:
    from pipeline.core.errors import UsageError
    from pipeline.stages.train import cluster_device

    cpu_only = {"CPU": 2.0, "memory": 3 * 2**30, "node:127.0.0.2": 1.0, "accelerator_x": 1.0}
    assert cluster_device("auto", 2, cpu_only) is False
    assert cluster_device("cpu", 2, {"CPU": 8.0, "GPU": 8.0}) is False
    assert cluster_device("auto", 2, {"CPU": 8.0, "GPU": 8.0}) is True
    assert cluster_device("cuda", 1, {"CPU": 8.0, "GPU": 1.0}) is True
    with pytest.raises(UsageError) as e:
        cluster_device("cuda", 1, cpu_only)
    assert str(e.value).startswith(
        "trainer.device=cuda: the Ray cluster has no GPU (CPU 2, GPU 0, memory 3.0 GiB, "
        "accelerator_x 1)"
    )
    assert "\n" not in str(e.value) and "node:" not in str(e.value)
    assert cluster_device("auto", 4, {"CPU": 8.0, "GPU": 2.0}) is True  # waits for 4 GPUs
    assert "need 4 GPUs; the cluster has 2 now" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.keep_checkpoints=0", "trainer.keep_checkpoints=0: must be >= 1"),
        ("run_dir=s3://bucket/run", "a URL run directory needs trainer.backend=ray"),
    ],
)
def test_bad_checkpoint_settings_are_usage_errors(
    tiny_store: str, tmp_path: Path, capsys: pytest.CaptureFixture, override: str, message: str
) -> None:
    assert main([*train_args(tiny_store, tmp_path / "run"), override]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_ray_resume_continues_a_run_and_a_fresh_run_replaces_it(
    ray_local: None, tiny_store: str, tmp_path: Path
) -> None:
    """trainer.resume=true in a new invocation continues from the newest checkpoint Ray Train
    persisted (and its step log); a fresh run into the same run_dir starts over and replaces
    the old checkpoints rather than mixing two runs' folders."""
    run = tmp_path / "run"
    args = [
        *train_args(tiny_store, run),
        "trainer.backend=ray",
        "trainer.workers=2",
        "trainer.checkpoint_every=2",
        "trainer.log_every=1",
    ]
    assert main([*args, "trainer.max_steps=4"]) == 0
    assert main([*args, "trainer.max_steps=6", "trainer.resume=true"]) == 0
    result = json.loads((run / "train.json").read_text())
    assert (result["start_step"], result["steps"], result["resumed"]) == (4, 6, True)
    steps = [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*")) == [
        "step-00000002",
        "step-00000004",
        "step-00000006",
    ]
    assert main([*args, "trainer.max_steps=2"]) == 0
    result = json.loads((run / "train.json").read_text())
    assert (result["start_step"], result["steps"], result["resumed"]) == (0, 2, False)
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*")) == ["step-00000002"]
    assert checkpoint.load(run / "checkpoints" / "last.pt")["step"] == 2
