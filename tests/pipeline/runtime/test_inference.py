"""The inference layer: one load per checkpoint, kinds checked with one clear line, the
worker payload, live sessions stepped alone or batched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models import build_task
from pipeline.core.errors import UsageError
from pipeline.core.frames import to_model, to_uint8
from pipeline.runtime import checkpoint, inference
from pipeline.runtime.inference import (
    LocalSession,
    inspect_checkpoint,
    load_model,
    open_session,
    step_sessions,
)
from tests.pipeline.runtime.tiny_models import GAN, LSTM

pytestmark = pytest.mark.usefixtures("one_thread")


def save(path: Path, name: str, **options: object) -> Path:
    torch.manual_seed(0)
    task = build_task(name, **options)
    cfg = {"trainer": {"test_fraction": 0.25}}
    checkpoint.save(path, task, task.make_optimizers(), 3, cfg, {"categories": ["a", "b"]})
    return path


@pytest.fixture(scope="module")
def predictor_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save(tmp_path_factory.mktemp("p") / "lstm.pt", "lstm_autoencoder", **LSTM)


@pytest.fixture(scope="module")
def generator_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("g") / "gan.pt"
    return save(path, "mocogan", **GAN, num_categories=2, ema=0.9)


def test_load_model_returns_the_model_and_what_stages_need(predictor_ckpt: Path) -> None:
    loaded = load_model(predictor_ckpt, device="cpu", want=("predictor",), stage="predict")
    assert loaded.kind == "predictor" and loaded.family == "lstm_autoencoder"
    assert (loaded.frame_size, loaded.channels) == (16, 1)
    assert (loaded.context, loaded.horizon, loaded.step) == (4, 3, 3)
    assert loaded.test_fraction == 0.25 and loaded.categories == ["a", "b"]
    assert loaded.device == torch.device("cpu") and not loaded.model.training
    x = torch.rand(2, 4, 1, 16, 16)
    with loaded.inference():
        assert loaded.model.predict(x, 5).shape == (2, 5, 1, 16, 16)


def test_a_checkpoint_of_the_wrong_kind_is_one_line_naming_it(
    predictor_ckpt: Path, generator_ckpt: Path
) -> None:
    with pytest.raises(UsageError) as e:
        load_model(generator_ckpt, device="cpu", want=("predictor",), stage="predict")
    msg = str(e.value)
    assert "\n" not in msg
    assert f"checkpoint={generator_ckpt}" in msg and "mocogan" in msg and "generator" in msg
    assert "framecast predict takes a predictor" in msg
    with pytest.raises(UsageError, match="this stage takes a generator or a classifier"):
        inspect_checkpoint(predictor_ckpt, ("generator", "classifier"))
    with pytest.raises(UsageError, match="x.pt: no such file"):
        inspect_checkpoint(predictor_ckpt.with_name("x.pt"))
    with pytest.raises(UsageError, match="classifier"):
        inspect_checkpoint(predictor_ckpt, ("classifier",), "evaluate")


def test_not_a_checkpoint_and_unknown_families_are_usage_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UsageError, match="not a loadable framecast checkpoint"):
        load_model(bad)
    odd = tmp_path / "odd.pt"
    torch.save({"format": checkpoint.FORMAT, "model": "nope", "model_config": {}}, odd)
    with pytest.raises(UsageError, match="'nope' model"):
        load_model(odd)
    with pytest.raises(UsageError, match="precision"):
        load_model(odd, precision="int3")


def test_each_load_reads_the_file_once(
    predictor_ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = checkpoint.load

    def counting(*args: object, **kwargs: object) -> dict:
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(inference.checkpoint, "load", counting)
    load_model(predictor_ckpt, device="cpu")
    assert calls == [predictor_ckpt]
    inspect_checkpoint(predictor_ckpt)
    assert len(calls) == 2


def test_the_payload_rebuilds_the_same_model_without_optimisers(generator_ckpt: Path) -> None:
    loaded = load_model(generator_ckpt, device="cpu", want=("generator",))
    payload = loaded.payload()
    assert "optimizers" not in payload
    assert set(payload["networks"]) == {"generator_ema"}  # the EMA generator samples
    again = load_model(payload, device="cpu", want=("generator",))
    assert again.path == "<memory>" and again.categories == ["a", "b"]
    a = loaded.model.sample(2, 4, seed=3)
    b = again.model.sample(2, 4, seed=3)
    assert torch.equal(a, b)


def test_a_local_session_predicts_what_predict_does_on_the_same_frames(
    predictor_ckpt: Path,
) -> None:
    loaded = load_model(predictor_ckpt, device="cpu")
    frames = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 1), dtype=np.uint8)
    session = LocalSession(loaded)
    for f in frames[:-1]:
        session.push(f, 0)
    pred = session.push(frames[-1], 5)
    assert pred.shape == (5, 16, 16, 1) and pred.dtype == np.uint8
    with loaded.inference():
        want = to_uint8(loaded.model.predict(to_model(frames)[None], 5))[0]
    np.testing.assert_array_equal(pred, want)
    session.close()
    with pytest.raises(RuntimeError, match="closed"):
        session.push(frames[0], 1)


def test_batched_sessions_equal_sessions_stepped_alone(predictor_ckpt: Path) -> None:
    loaded = load_model(predictor_ckpt, device="cpu")
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (3, 3, 1, 16, 16, 1), dtype=np.uint8)  # 3 steps x 3 sessions
    alone = [open_session(loaded) for _ in range(3)]
    together = [open_session(loaded) for _ in range(3)]
    for t in range(3):
        preds = []
        for i in range(3):
            (alone[i],), p = step_sessions(loaded, [alone[i]], [frames[t, i]], 2)
            preds.append(p[0])
        together, batch = step_sessions(loaded, together, list(frames[t]), 2)
        assert batch is not None and batch.shape == (3, 2, 16, 16, 1)
        np.testing.assert_array_equal(batch, np.stack(preds))
    assert [s.frames_seen for s in together] == [3, 3, 3]
    _, none = step_sessions(loaded, together, list(frames[0]), 0)
    assert none is None


def test_open_session_refuses_a_model_that_cannot_stream(tmp_path: Path) -> None:
    ckpt = save(tmp_path / "rec.pt", "lstm_autoencoder", **LSTM, decoders="reconstruct")
    loaded = load_model(ckpt, device="cpu")
    with pytest.raises(UsageError, match=f"checkpoint={ckpt}"):
        open_session(loaded)


def test_pick_device() -> None:
    assert inference.pick_device("cpu") == torch.device("cpu")
    assert inference.pick_device("auto").type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA device"):
            inference.pick_device("cuda")


def test_a_paper_head_checkpoint_from_before_the_warp_head_predicts_the_same(
    tmp_path: Path,
) -> None:
    """Checkpoints written before model.output/loss options existed (their model_config lacks
    the keys) load with the paper's pixel head and predict exactly what they did."""
    torch.manual_seed(0)
    task = build_task("lstm_autoencoder", **LSTM, cell="conv", conv_channels=8, kernel=3)
    ckpt = tmp_path / "old.pt"
    checkpoint.save(ckpt, task, task.make_optimizers(), 5, {})
    body = torch.load(ckpt, weights_only=True)
    for key in ("output", "max_flow", "scales", "gdl_weight", "ssim_weight"):
        del body["model_config"][key]  # what a checkpoint of the earlier code holds
    torch.save(body, ckpt)
    loaded = load_model(ckpt, device="cpu")
    observed = torch.rand(2, 4, 1, 16, 16)
    with loaded.inference():
        again = loaded.model.predict(observed, 5)
    want = task.inference_model().eval().predict(observed, 5)
    assert loaded.model_config.get("output") is None and torch.equal(again, want)
