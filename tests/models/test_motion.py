"""The motion-compensated head: exact warps, exactly copy-last untrained, a translation learned."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.lstm_autoencoder import LSTMAutoencoderTask
from models.metrics import sharpness
from models.motion import (
    apply_kernels,
    gradient_difference_loss,
    kernel_bank,
    kernel_flow,
    pyramid_loss,
    straight_through_clamp,
    warp,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_warp_is_exact_for_zero_and_integer_flows() -> None:
    x = torch.rand(2, 3, 8, 9)
    assert torch.equal(warp(x, torch.zeros(2, 2, 8, 9)), x)
    flow = torch.zeros(2, 2, 8, 9)
    flow[:, 0] = 2.0  # out(p) = x(p + 2 px to the right): the image moves left by 2
    moved = warp(x, flow)
    assert torch.equal(moved[..., :-2], x[..., 2:])
    assert torch.equal(moved[..., -2:], x[..., -1:].expand(-1, -1, -1, 2))  # border clamped
    flow = torch.zeros(2, 2, 8, 9)
    flow[:, 1] = -1.0
    assert torch.equal(warp(x, flow)[..., 1:, :], x[..., :-1, :])


def test_warp_interpolates_bilinearly_and_passes_gradients_to_the_flow() -> None:
    x = torch.arange(6.0).view(1, 1, 1, 6).expand(1, 1, 2, 6).contiguous()
    flow = torch.zeros(1, 2, 2, 6)
    flow[:, 0] = 0.25
    assert torch.allclose(warp(x, flow)[0, 0, 0, :5], torch.arange(5.0) + 0.25)
    flow.requires_grad_(True)
    warp(x, flow).sum().backward()
    assert flow.grad is not None and float(flow.grad[0, 0, 0, 0]) == pytest.approx(1.0)


def test_mask_clamp_is_exact_forward_and_never_dead() -> None:
    a = torch.tensor([-0.5, 0.0, 0.3, 1.7], requires_grad=True)
    out = straight_through_clamp(a)
    assert out.tolist() == pytest.approx([0.0, 0.0, 0.3, 1.0])
    out.sum().backward()
    assert a.grad is not None and a.grad.tolist() == [1.0, 1.0, 1.0, 1.0]


def test_a_one_hot_kernel_moves_the_frame_as_the_same_integer_flow() -> None:
    x = torch.rand(2, 3, 10, 10)
    kernels = torch.zeros(2, 2, 5, 5)
    kernels[:, 0, 2, 4] = 1.0  # offset (dx, dy) = (+2, 0)
    kernels[:, 1, 1, 2] = 1.0  # (0, -1)
    moved = apply_kernels(x, kernels)  # (B, N, C, H, W)
    for i, (dx, dy) in enumerate([(2.0, 0.0), (0.0, -1.0)]):
        flow = torch.tensor([dx, dy]).view(1, 2, 1, 1).expand(2, 2, 10, 10)
        assert torch.allclose(moved[:, i], warp(x, flow), atol=1e-6)  # border replicated too
    select = torch.zeros(2, 2, 10, 10)
    select[:, 0, :, :5], select[:, 1, :, 5:] = 1.0, 1.0
    flow = kernel_flow(select, kernels)
    assert flow[:, 0, :, :5].eq(2.0).all() and flow[:, 1, :, 5:].eq(-1.0).all()
    bank = kernel_bank(8, 9).softmax(-1).view(8, 9, 9)
    assert torch.allclose(bank.sum((-2, -1)), torch.ones(8))
    assert len({int(k.argmax()) for k in bank}) == 8  # eight distinct initial directions


@pytest.mark.parametrize("output", ["warp", "cdna"])
@pytest.mark.parametrize("cell", ["fc", "conv"])
@pytest.mark.parametrize("conditional", [False, True])
def test_an_untrained_warp_model_is_exactly_copy_last(
    cell: str, conditional: bool, output: str
) -> None:
    torch.manual_seed(0)
    task = LSTMAutoencoderTask(
        frame_size=16, channels=3, hidden=16, context=4, horizon=3, cell=cell,
        conv_channels=8, kernel=3, output=output, conditional=conditional,
        motion_kernel_size=5,
    )  # fmt: skip
    model = task.inference_model().eval()
    observed = torch.rand(2, 4, 3, 16, 16)
    pred = model.predict(observed, 6)
    assert torch.equal(pred, observed[:, -1:].expand(-1, 6, -1, -1, -1))
    session = model.stream(2)
    for t in range(4):
        session.step(observed[:, t])
    assert torch.equal(session.predict(6), pred)
    shown = model.explain(observed, 6)
    assert shown["flow"].shape == (2, 6, 2, 16, 16) and shown["mask"].shape == (2, 6, 1, 16, 16)
    assert float(shown["flow"].abs().max()) == 0.0 and float(shown["mask"].max()) == 0.0


def moving_texture(batch: int, steps: int, size: int, speed: int, seed: int) -> torch.Tensor:
    """A smooth random texture translated by `speed` px per frame to the right, each sequence
    its own texture: (B, T, 1, size, size) in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    wide = size + speed * steps
    noise = torch.rand(batch, 1, size, wide, generator=g)
    smooth = F.avg_pool2d(F.pad(noise, (1, 1, 1, 1), mode="circular"), 3, stride=1)
    frames = [smooth[..., :, wide - size - speed * t : wide - speed * t] for t in range(steps)]
    return torch.stack(frames, 1)


@pytest.mark.parametrize(("output", "speed"), [("warp", 1), ("cdna", 1), ("cdna", 3)])
def test_a_known_translation_is_learned_sharply(output: str, speed: int) -> None:
    """`speed` px per frame to the right: after a short training the motion head predicts it
    far better than copy-last, sharp, with the flow that moves the texture (the kernel head
    also 3 px a frame, three times the texture's grain, where a flow gets no gradient)."""
    torch.manual_seed(0)
    task = LSTMAutoencoderTask(
        frame_size=16, channels=1, context=3, horizon=3, cell="conv", patch=4,
        conv_channels=16, kernel=3, output=output, decoders="predict", loss="l1", scales=2,
        lr=3e-3, motion_kernels=4, motion_kernel_size=7,
    )  # fmt: skip
    optimizer = task.make_optimizers()["model"]

    def update(loss: torch.Tensor, name: str) -> None:
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for step in range(150):
        task.training_step(moving_texture(8, 6, 16, speed, seed=step), step, update)
    model = task.inference_model().eval()
    clips = moving_texture(16, 6, 16, speed, seed=10_000)
    observed, future = clips[:, :3], clips[:, 3:]
    pred = model.predict(observed, 3)
    # the texture moves right: its first 3·speed columns are new by the third step
    inner = (..., slice(2, -2), slice(3 * speed, -1))
    err = (pred - future)[inner].abs().mean()
    copy_err = (observed[:, -1:] - future)[inner].abs().mean()
    assert float(err) < 0.4 * float(copy_err)
    # a pixel head trained the same way scores ~0.06 here (the blurred mean); the warp ~0.57
    # at 1 px a frame (0.02 at 3 px, where its flow stays at 0); the kernel head ~1.0 at both
    assert float(sharpness(pred[inner], future[inner]).mean()) > 0.4
    flow = model.explain(observed, 3)["flow"][inner]
    assert float(flow[:, :, 0].mean()) == pytest.approx(-speed, abs=0.3 * speed)  # from the left


def test_anti_blur_losses_prefer_the_sharp_frame() -> None:
    true = torch.zeros(1, 1, 1, 16, 16)
    true[..., 4:12, 4:12] = 1.0
    blurred = F.avg_pool2d(true.flatten(0, 1), 5, stride=1, padding=2).unflatten(0, (1, 1))
    assert float(gradient_difference_loss(true, true)) == 0.0
    assert float(gradient_difference_loss(blurred, true)) > 0.05
    assert float(pyramid_loss(true, true, "l1", 3)) == 0.0
    assert float(pyramid_loss(blurred, true, "mse", 3)) > 0.0


def test_horizon_curriculum_trains_near_futures_first() -> None:
    task = LSTMAutoencoderTask(
        frame_size=16, channels=1, context=3, horizon=4, cell="conv", conv_channels=8,
        kernel=3, output="warp", decoders="predict", horizon_ramp_steps=8,
    )  # fmt: skip
    assert [task.trained_horizon(s) for s in (0, 1, 2, 4, 6, 8, 100)] == [1, 1, 2, 3, 4, 4, 4]
    seen = []
    model = task.networks["model"]
    real = model.forward

    def spy(observed, future, **kwargs):  # noqa: ANN001, ANN003, ANN202
        seen.append(future.shape[1])
        return real(observed, future, **kwargs)

    model.forward = spy  # type: ignore[method-assign]
    optimizer = task.make_optimizers()["model"]

    def update(loss: torch.Tensor, name: str) -> None:
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for step in (0, 4, 9):
        task.training_step(torch.rand(2, 7, 1, 16, 16), step, update)
    assert seen == [1, 3, 4]
    off = LSTMAutoencoderTask(frame_size=16, hidden=8, horizon=4)
    assert off.trained_horizon(0) == 4  # off by default


@pytest.mark.parametrize("output", ["warp", "cdna"])
@pytest.mark.parametrize("cell", ["fc", "conv"])
def test_a_motion_head_streams_as_it_predicts(output: str, cell: str) -> None:
    """With every weight moved away from its start (the head no longer copy-last), a live
    session fed frame by frame predicts what `predict` does on the whole clip, and its flow
    and mask maps are those `explain` shows."""
    torch.manual_seed(1)
    task = LSTMAutoencoderTask(
        frame_size=16, channels=1, hidden=16, context=4, horizon=3, cell=cell, patch=4,
        conv_channels=8, kernel=3, output=output, conditional=True, decoders="predict",
        motion_kernels=3, motion_kernel_size=5,
    )  # fmt: skip
    model = task.inference_model().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    observed = torch.rand(2, 4, 1, 16, 16)
    shown = model.explain(observed, 5)
    assert not torch.equal(shown["frames"], observed[:, -1:].expand(-1, 5, -1, -1, -1))
    assert float(shown["flow"].abs().max()) > 0
    session = model.stream(2)
    for t in range(4):
        session.step(observed[:, t])
    assert torch.allclose(session.predict(5), shown["frames"], atol=1e-5)
    if output == "cdna":
        kernels = shown["kernels"]  # (B, K, N, k, k): distributions over offsets
        assert kernels.shape == (2, 5, 3, 5, 5)
        assert torch.allclose(kernels.sum((-2, -1)), torch.ones(2, 5, 3), atol=1e-5)
