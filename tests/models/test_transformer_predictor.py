"""The space-time Transformer predictor: causality, the KV cache against a full recompute (also
past the window, and across merged sessions), copy-last at initialisation, attention maps,
and that training lowers the loss. Tiny sizes (16×16 frames, 4×4 patches, 16-wide tokens)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from models import build_task
from models.transformer_predictor import (
    SpaceTimeTransformer,
    TransformerPredictorConfig,
    TransformerPredictorTask,
    TransformerStream,
)
from tests.models.test_lstm_autoencoder import moving_squares, trainer_update

SIZE = 16
TINY = dict(
    frame_size=SIZE, patch=4, dim=16, heads=2, blocks=2, field_patch=2, context=4, horizon=3
)

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(seed: int = 0, scramble: bool = True, **overrides) -> SpaceTimeTransformer:
    """A tiny model; `scramble` moves every weight off its initialisation (the warp head starts
    as copy-last, which would make most checks trivially true)."""
    torch.manual_seed(seed)
    model = SpaceTimeTransformer(TransformerPredictorConfig(**{**TINY, **overrides}))
    if scramble:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.2 * torch.randn_like(p))
    return model.eval()


def clips(batch: int, steps: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, steps, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------
# Options


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"patch": 5}, "frame_size=16 is not a multiple of model.patch=5"),
        ({"field_patch": 3}, "patch=4 is not a multiple of model.field_patch=3"),
        ({"dim": 18, "heads": 4}, "dim=18 is not a multiple of model.heads=4"),
        ({"window": 0}, "model.window=0 must be at least 1"),
        ({"output": "voxels"}, "model.output='voxels'"),
        ({"loss": "huber"}, "model.loss='huber'"),
    ],
)
def test_bad_options_are_named(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        TransformerPredictorConfig(**{**TINY, **bad})


def test_unknown_option_names_the_known_ones() -> None:
    with pytest.raises(TypeError, match="unknown transformer_predictor option.*hidden.*known"):
        build_task("transformer_predictor", hidden=32)


def test_observed_frames_of_the_wrong_shape_are_named() -> None:
    model = tiny_model()
    with pytest.raises(ValueError, match=r"observed \(2, 3, 3, 16, 16\)"):
        model.predict(torch.rand(2, 3, 3, SIZE, SIZE), 2)
    with pytest.raises(ValueError, match="horizon=0"):
        model.predict(clips(1, 3), 0)


# ---------------------------------------------------------------------------------------------
# What it promises


@pytest.mark.parametrize("output", ["warp", "pixels"])
def test_a_future_frame_never_influences_an_earlier_prediction(output: str) -> None:
    """Teacher forcing: the prediction from frames 1..t is the same whatever comes later, and
    its gradient with respect to every later frame is exactly zero."""
    model = tiny_model(output=output, window=3)
    clip = clips(2, 8).requires_grad_(True)
    frames = model(clip)["frames"]  # (B, 7, C, H, W): x̂_{t+1} from x_1..x_t
    for t in range(7):
        (grad,) = torch.autograd.grad(frames[:, t].sum(), clip, retain_graph=True)
        assert grad[:, t + 1 :].abs().max() == 0  # no later frame (nor the target itself)
        assert grad[:, t].abs().max() > 0
    changed = clip.detach().clone()
    changed[:, 5] = torch.rand_like(changed[:, 5])
    again = model(changed)["frames"]
    torch.testing.assert_close(again[:, :5], frames[:, :5].detach(), rtol=0, atol=0)
    assert not torch.allclose(again[:, 5:], frames[:, 5:].detach())


def test_the_window_bounds_what_a_prediction_sees() -> None:
    """Through L blocks a frame sees L·(W − 1) frames back, and nothing older."""
    model = tiny_model(window=2, blocks=2)  # receptive field 2·1 + 1 = 3 frames
    assert model.receptive_field == 3
    clip = clips(1, 7).requires_grad_(True)
    (grad,) = torch.autograd.grad(model(clip)["frames"][:, 5].sum(), clip)  # from x_1..x_6
    seen = grad.flatten(2).abs().amax(-1)[0]
    assert (seen[3:6] > 0).all() and (seen[:3] == 0).all()


@pytest.mark.parametrize("window", [3, 20])
def test_the_kv_cached_session_equals_a_full_recompute(window: int) -> None:
    """Step T frames (past the window: the ring wraps, the oldest frames drop), predict K:
    the same frames as the parallel teacher-forced pass over the observed frames and the
    predictions fed back, as `predict`, and as a session without the cache."""
    model = tiny_model(window=window)
    observed, horizon = clips(2, 9), 5
    session = model.stream(2)
    for t in range(observed.shape[1]):
        session.step(observed[:, t])
    cached = session.predict(horizon)
    assert cached.shape == (2, horizon, 1, SIZE, SIZE)
    assert session.cache is not None and session.cache.held == min(9, window)

    fed = torch.cat([observed, cached[:, :-1]], 1)  # what the rollout fed the model
    with torch.no_grad():
        full = model(torch.cat([fed, cached[:, -1:]], 1))["frames"][:, observed.shape[1] - 1 :]
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=0)
    torch.testing.assert_close(model.predict(observed, horizon), cached, atol=1e-5, rtol=0)

    model.cfg.kv_cache = False
    plain = model.stream(2)
    for t in range(observed.shape[1]):
        plain.step(observed[:, t])
    assert plain.cache is None and len(plain.frames) == min(9, model.receptive_field)
    torch.testing.assert_close(plain.predict(horizon), cached, atol=1e-5, rtol=0)


def test_predict_leaves_the_session_as_it_was() -> None:
    model = tiny_model(window=3)
    x = clips(1, 6)
    a, b = model.stream(1), model.stream(1)
    for t in range(5):
        a.step(x[:, t])
        b.step(x[:, t])
        first = a.predict(4)  # a predicts after every frame, b never
        torch.testing.assert_close(a.predict(4), first, rtol=0, atol=0)
    a.step(x[:, 5])
    b.step(x[:, 5])
    torch.testing.assert_close(a.predict(3), b.predict(3), rtol=0, atol=0)


@pytest.mark.parametrize("kv_cache", [True, False])
def test_sessions_at_different_frame_counts_merge_and_split(kv_cache: bool) -> None:
    """Two sessions past the window (their rings at different phases) have one batch_key,
    step and predict as one batch, and split back into sessions that go on as if alone."""
    model = tiny_model(window=3, kv_cache=kv_cache, blocks=1)
    x = clips(2, 9)
    a, b = model.stream(1), model.stream(1)
    for t in range(5):
        a.step(x[:1, t])
    for t in range(7):
        b.step(x[1:, t])
    assert a.batch_key() == b.batch_key()
    alone_a, alone_b = model.stream(1), model.stream(1)
    for t in range(6):
        alone_a.step(x[:1, t])
    for t in range(8):
        alone_b.step(x[1:, t])
    both = TransformerStream.merge([a, b])
    both.step(torch.cat([x[:1, 5], x[1:, 7]]))
    want = torch.cat([alone_a.predict(4), alone_b.predict(4)])
    torch.testing.assert_close(both.predict(4), want, atol=1e-5, rtol=0)
    a2, b2 = both.split()
    assert (a2.frames_seen, b2.frames_seen) == (6, 8)
    a2.step(x[:1, 6])
    alone_a.step(x[:1, 6])
    torch.testing.assert_close(a2.predict(2), alone_a.predict(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(b2.predict(2), alone_b.predict(2), atol=1e-5, rtol=0)


def test_untrained_warp_head_is_exactly_copy_last() -> None:
    model = tiny_model(scramble=False)
    observed = clips(2, 5)
    future = model.predict(observed, 6)
    assert torch.equal(future, observed[:, -1:].expand_as(future))
    session = model.stream(2)
    for t in range(5):
        session.step(observed[:, t])
    assert torch.equal(session.predict(3), future[:, :3])
    shown = model.explain(observed, 2)
    assert shown["flow"].abs().max() == 0 and shown["mask"].abs().max() == 0
    teacher = model(observed)["frames"]  # x̂_{t+1} = x_t
    assert torch.equal(teacher, observed[:, :-1])


def test_attention_maps_are_distributions_over_the_frames_seen() -> None:
    model = tiny_model(window=4)
    observed, horizon = clips(2, 5), 3
    maps = model.attention_maps(observed, horizon)
    grid = SIZE // TINY["patch"]
    assert maps.shape == (2, horizon, 5 + horizon - 1, grid, grid)
    assert (maps >= 0).all()
    torch.testing.assert_close(maps.sum((-3, -2, -1)), torch.ones(2, horizon))
    for k in range(horizon):  # prediction k+1 comes from frame 4+k: nothing after it
        assert maps[:, k, 5 + k :].sum() == 0
        assert maps[:, k, : 5 + k].sum() > 0
    assert not torch.allclose(maps[:, 0, 0], maps[:, 0, 4])  # it is not uniform
    shown = model.explain(observed, horizon)
    torch.testing.assert_close(shown["attention"], maps)
    assert set(shown) == {"frames", "flow", "mask", "attention"}


@pytest.mark.parametrize(
    "output, loss, extra, logged",
    [
        ("warp", "l1", {"gdl_weight": 1.0, "scales": 2}, {"gdl_loss", "pyramid_loss"}),
        ("pixels", "bce", {"ssim_weight": 0.5}, {"ssim_loss"}),
    ],
)
def test_loss_falls_on_a_toy_translation(output: str, loss: str, extra: dict, logged: set) -> None:
    """A square moving one pixel per frame: Adam steps through the trainer's update lower the
    teacher-forced loss, and the logs are the terms of the objective."""
    torch.manual_seed(0)
    options = {**TINY, "output": output, "loss": loss, "lr": 2e-3, "scales": 0, "gdl_weight": 0}
    task = TransformerPredictorTask(**{**options, **extra})
    batch = moving_squares(8, task.clip_length)
    update = trainer_update(task.make_optimizers())
    logs = [task.training_step(batch, step, update) for step in range(40)]
    curve = [log["loss"] for log in logs]
    assert sum(curve[-5:]) / 5 < 0.8 * sum(curve[:5]) / 5
    assert set(logs[0]) == {"loss", "prediction_loss"} | logged
    assert logs[0]["prediction_loss"] > logs[0]["loss"]  # per frame, summed over pixels


def test_a_clip_shorter_than_context_plus_horizon_is_named() -> None:
    task = TransformerPredictorTask(**TINY)
    with pytest.raises(ValueError, match="need context \\+ horizon = 7"):
        task.training_step(clips(2, 5), 0, trainer_update(task.make_optimizers()))


def test_config_yaml_documents_exactly_the_dataclass_defaults() -> None:
    """configs/model/transformer_predictor.yaml has every option at the dataclass default; the
    CPU variant composes it and changes only what it says."""
    from pipeline.core.config import compose, to_plain

    composed = to_plain(compose("train", ["model=transformer_predictor"]).model)
    assert composed == dataclasses.asdict(TransformerPredictorConfig())
    cpu = to_plain(compose("train", ["model=transformer_predictor_cpu"]).model)
    assert {k for k in cpu if cpu[k] != composed[k]} == {"patch", "dim", "heads", "blocks", "lr"}


def test_config_round_trips_through_the_registry() -> None:
    task = build_task("transformer_predictor", **TINY)
    again = build_task(**task.config())
    assert again.config() == task.config()
    assert task.clip_length == TINY["context"] + TINY["horizon"]
