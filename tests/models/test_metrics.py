"""Metrics against hand-computed values on tiny known inputs."""

import math

import numpy as np
import pytest
import torch

from models.metrics import (
    METRICS,
    MetricAccumulator,
    copy_last_baseline,
    frame_bce,
    frame_mae,
    frame_mse,
    psnr,
    sharpness,
    ssim,
    video_metrics,
)

B, T, C, H, W = 2, 3, 1, 16, 16
PIXELS = C * H * W


def test_zero_vs_half_frames():
    pred = torch.zeros(B, T, C, H, W)
    true = torch.full((B, T, C, H, W), 0.5)
    assert torch.allclose(frame_mse(pred, true), torch.full((B, T), 0.25 * PIXELS))
    assert torch.allclose(frame_mae(pred, true), torch.full((B, T), 0.5 * PIXELS))
    # mean squared error 0.25 per pixel -> 10 log10(1 / 0.25) = 6.0206 dB
    assert torch.allclose(psnr(pred, true), torch.full((B, T), 10 * math.log10(4.0)))


def test_psnr_of_known_mse_and_of_identical_frames():
    true = torch.rand(B, T, C, H, W) * 0.8
    pred = true + 0.1  # squared error 0.01 everywhere -> 20 dB
    assert torch.allclose(psnr(pred, true), torch.full((B, T), 20.0), atol=1e-3)
    assert torch.isfinite(psnr(true, true)).all()  # capped, not inf
    assert (psnr(true, true) >= 99.0).all()


def test_mse_sums_over_channels():
    pred = torch.zeros(1, 1, 3, 4, 4)
    true = torch.zeros(1, 1, 3, 4, 4)
    true[0, 0, 2, 1, 1] = 1.0
    true[0, 0, 0, 0, 0] = 0.5
    assert frame_mse(pred, true).item() == pytest.approx(1.25)
    assert frame_mae(pred, true).item() == pytest.approx(1.5)


def test_bce_known_values():
    true = torch.zeros(1, 2, 1, 2, 2)
    true[0, :, 0, 0, 0] = 1.0
    # p = 0.5 everywhere: ln 2 per pixel whatever the target
    half = torch.full_like(true, 0.5)
    assert torch.allclose(frame_bce(half, true), torch.full((1, 2), 4 * math.log(2)))
    # p = 0.8: target 1 costs -ln 0.8, target 0 costs -ln 0.2; fractional target 0.3 mixes them
    pred = torch.full_like(true, 0.8)
    true[0, 1, 0, 1, 1] = 0.3
    expected0 = -math.log(0.8) + 3 * -math.log(0.2)
    expected1 = -math.log(0.8) + 2 * -math.log(0.2) - (0.3 * math.log(0.8) + 0.7 * math.log(0.2))
    assert torch.allclose(frame_bce(pred, true), torch.tensor([[expected0, expected1]]))
    # a confident miss is clamped: finite, -ln(eps) per pixel
    miss = frame_bce(torch.zeros(1, 1, 1, 1, 1), torch.ones(1, 1, 1, 1, 1))
    assert miss.item() == pytest.approx(-math.log(1e-7), rel=1e-3)


def reference_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM of two 2-D images, written out: 11x11 Gaussian window (σ 1.5), valid positions."""
    coords = np.arange(11) - 5
    g = np.exp(-(coords**2) / (2 * 1.5**2))
    window = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx, my = (window * px).sum(), (window * py).sum()
            vx = (window * (px - mx) ** 2).sum()
            vy = (window * (py - my) ** 2).sum()
            cxy = (window * (px - mx) * (py - my)).sum()
            values.append(
                ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
            )
    return float(np.mean(values))


def test_ssim_identical_is_one_and_matches_reference():
    gen = torch.Generator().manual_seed(0)
    true = torch.rand(B, T, 2, H, W, generator=gen)
    assert torch.allclose(ssim(true, true), torch.ones(B, T), atol=1e-5)

    pred = (true + 0.2 * torch.randn(true.shape, generator=gen)).clamp(0, 1)
    got = ssim(pred, true)
    for b in range(B):
        for t in range(T):
            channels = [
                reference_ssim(pred[b, t, c].double().numpy(), true[b, t, c].double().numpy())
                for c in range(2)
            ]
            assert got[b, t].item() == pytest.approx(np.mean(channels), abs=1e-4)
    assert (got < 0.9).all()  # noise really lowers it


def test_ssim_rejects_frames_smaller_than_window():
    with pytest.raises(ValueError, match="11"):
        ssim(torch.rand(1, 1, 1, 8, 8), torch.rand(1, 1, 1, 8, 8))


def test_sharpness_exposes_blur():
    gen = torch.Generator().manual_seed(1)
    true = (torch.rand(B, T, C, H, W, generator=gen) > 0.7).float()
    assert torch.allclose(sharpness(true, true), torch.ones(T))
    blurred = torch.nn.functional.avg_pool2d(
        true.view(-1, C, H, W), 3, stride=1, padding=1, count_include_pad=False
    ).view(true.shape)
    ratio = sharpness(blurred, true)
    assert ratio.shape == (T,)
    assert (ratio < 0.5).all()
    assert torch.allclose(sharpness(torch.full_like(true, 0.3), true), torch.zeros(T))


def test_video_metrics_structure():
    gen = torch.Generator().manual_seed(2)
    true = torch.rand(B, T, C, H, W, generator=gen)
    pred = torch.rand(B, T, C, H, W, generator=gen)
    result = video_metrics(pred, true)
    assert set(METRICS) <= set(result)
    assert "sharpness" in result
    for name, entry in result.items():
        assert len(entry["per_step"]) == T, name
        assert isinstance(entry["mean"], float)
    for name in METRICS:  # every sequence has T steps: the mean over frames is the mean of steps
        assert result[name]["mean"] == pytest.approx(np.mean(result[name]["per_step"]), rel=1e-6)
    # per step = average over sequences of the per-frame values
    expected = frame_mse(pred, true).mean(0)
    assert np.allclose(result["mse"]["per_step"], expected.numpy(), rtol=1e-6)


def test_accumulator_over_two_batches_equals_one_pass():
    gen = torch.Generator().manual_seed(3)
    true = torch.rand(5, T, C, H, W, generator=gen)
    pred = torch.rand(5, T, C, H, W, generator=gen)
    accumulator = MetricAccumulator()
    accumulator.update(pred[:2], true[:2])
    accumulator.update(pred[2:], true[2:])
    split, whole = accumulator.result(), video_metrics(pred, true)
    for name in whole:
        assert split[name]["mean"] == pytest.approx(whole[name]["mean"], rel=1e-6)
        assert np.allclose(split[name]["per_step"], whole[name]["per_step"], rtol=1e-6)
    with pytest.raises(ValueError):
        accumulator.update(pred[:, :2], true[:, :2])  # a different number of steps


def test_copy_last_baseline():
    observed = torch.rand(2, 4, 1, 16, 16)
    baseline = copy_last_baseline(observed, 6)
    assert baseline.shape == (2, 6, 1, 16, 16)
    for t in range(6):
        assert torch.equal(baseline[:, t], observed[:, -1])
    result = video_metrics(copy_last_baseline(observed, 1), observed[:, -1:])
    assert result["mse"]["mean"] == 0.0
    assert result["ssim"]["mean"] == pytest.approx(1.0, abs=1e-5)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        frame_mse(torch.rand(1, 2, 1, 4, 4), torch.rand(1, 3, 1, 4, 4))
    with pytest.raises(ValueError, match="uint8"):
        frame_mse(torch.zeros(1, 2, 1, 4, 4, dtype=torch.uint8), torch.rand(1, 2, 1, 4, 4))


# ---------------------------------------------------------------- shape fill ratio


def _disc_or_square(shape: str, r: float, cy: float, cx: float, size: int = 32) -> torch.Tensor:
    """A (3, size, size) frame: a hard-edged disc or square of radius r on a grey background."""
    ys, xs = torch.meshgrid(torch.arange(size) + 0.0, torch.arange(size) + 0.0, indexing="ij")
    if shape == "circle":
        inside = (ys - cy) ** 2 + (xs - cx) ** 2 <= r * r
    else:
        inside = ((ys - cy).abs() <= r) & ((xs - cx).abs() <= r)
    frame = torch.full((3, size, size), 0.4)
    frame[:, inside] = torch.tensor([0.9, 0.1, 0.2])[:, None]
    return frame


def test_shape_fill_tells_circles_from_squares():
    from models.metrics import FILL_CIRCLE, shape_fill

    circles = torch.stack([_disc_or_square("circle", r, 15.3, 16.1) for r in (6.0, 8.0, 10.0)])
    squares = torch.stack([_disc_or_square("square", r, 14.0, 17.0) for r in (3.0, 6.0, 9.0)])
    c, s = shape_fill(circles), shape_fill(squares)
    assert torch.allclose(c["fill"], torch.full((3,), FILL_CIRCLE), atol=0.05)
    assert torch.equal(s["fill"], torch.ones(3))  # a square fills its bounding box exactly
    assert torch.equal(c["share"], torch.ones(3)) and torch.equal(s["share"], torch.ones(3))
    assert s["area"][1] == pytest.approx(13 * 13 / 32**2)
    # leading dimensions are kept: (B, T, C, H, W) -> (B, T)
    both = shape_fill(torch.stack([circles, squares]))
    assert both["fill"].shape == (2, 3) and torch.equal(both["fill"][1], s["fill"])


def test_shape_fill_sees_blank_and_scattered_frames():
    from models.metrics import shape_fill, single_object

    blank = torch.full((1, 3, 16, 16), 0.3)
    m = shape_fill(blank)
    assert torch.isnan(m["fill"]).all() and m["share"].item() == 0 and m["area"].item() == 0
    assert not single_object(m, 256).item()
    # two equal blobs far apart: the largest component holds half the foreground
    two = torch.full((1, 3, 16, 16), 0.3)
    two[:, :, 2:5, 2:5] = 1.0
    two[:, :, 10:13, 10:13] = 1.0
    m = shape_fill(two)
    assert m["share"].item() == pytest.approx(0.5) and m["fill"].item() == 1.0
    assert not single_object(m, 256).item()
    # diagonal neighbours are connected (8-connectivity): one object, fill 3/9
    diag = torch.full((1, 3, 16, 16), 0.3)
    for k in range(3):
        diag[:, :, 6 + k, 6 + k] = 1.0
    m = shape_fill(diag)
    assert m["share"].item() == 1.0 and m["fill"].item() == pytest.approx(1 / 3)
    # faint noise below the threshold is background
    noisy = two + 0.05 * torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert shape_fill(noisy)["share"].item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="C, H, W"):
        shape_fill(torch.zeros(4, 4))


def test_template_iou_reads_clean_shapes_and_forgives_stray_pixels():
    from models.metrics import READ_CIRCLE, READ_NEITHER, READ_SQUARE, read_shapes, shape_fill

    circles = torch.stack([_disc_or_square("circle", r, 15.3, 16.1) for r in (6.0, 8.0)])
    squares = torch.stack([_disc_or_square("square", r, 14.0, 17.0) for r in (6.0, 8.0)])
    c, s = shape_fill(circles), shape_fill(squares)
    assert (c["iou_circle"] >= 0.95).all() and (s["iou_square"] >= 0.95).all()
    # the other template overlaps a clean shape as a disc and a square of one area overlap
    assert ((c["iou_square"] > 0.78) & (c["iou_square"] < 0.88)).all()
    assert ((s["iou_circle"] > 0.78) & (s["iou_circle"] < 0.88)).all()
    assert read_shapes(c, 32 * 32).tolist() == [READ_CIRCLE] * 2
    assert read_shapes(s, 32 * 32).tolist() == [READ_SQUARE] * 2
    # one stray pixel on each side of a square: its fill drops out of any square band (the
    # bounding box grows), its template IoU hardly moves and it still reads as a square
    frayed = squares[1].clone()
    colour = frayed[:, 14, 17].clone()
    for y, x in ((5, 17), (23, 17), (14, 8), (14, 26)):
        frayed[:, y, x] = colour
    f = shape_fill(frayed[None])
    assert f["fill"].item() < 0.85 and f["iou_square"].item() > 0.95
    assert read_shapes(f, 32 * 32).item() == READ_SQUARE
    # a 2:1 bar fills its box like a square but is neither shape
    bar = torch.full((1, 3, 32, 32), 0.4)
    bar[:, :, 12:20, 8:24] = torch.tensor([0.9, 0.1, 0.2])[:, None, None]
    m = shape_fill(bar)
    assert m["fill"].item() == 1.0 and read_shapes(m, 32 * 32).item() == READ_NEITHER
    assert max(m["iou_circle"].item(), m["iou_square"].item()) < 0.9
    blank = shape_fill(torch.full((1, 3, 16, 16), 0.3))
    assert blank["iou_circle"].item() == 0 and read_shapes(blank, 256).item() == READ_NEITHER


def test_shape_recognisability_against_real_bands():
    from models.metrics import fill_bands, shape_fill, shape_recognisability

    rng = np.random.default_rng(0)

    def video(shape: str) -> torch.Tensor:
        r = float(rng.uniform(6, 9))
        return torch.stack([_disc_or_square(shape, r, 15.5 + t, 12.0 + t) for t in range(4)])

    real = torch.stack([video(s) for s in ["circle", "square"] * 5])  # (10, 4, 3, 32, 32)
    m = shape_fill(real)
    bands = fill_bands(m, 32 * 32)
    assert bands["circle"][1] < 0.85 < 0.95 < bands["square"][0]
    summary = shape_recognisability(m, bands, 32 * 32)
    assert summary["recognisable"] == 1.0 and summary["videos_recognisable"] == 1.0
    assert summary["circle_like"] == summary["square_like"] == 0.5
    # generated: blank frames, a real circle video, and a video whose shape flips every frame
    blank = torch.full((4, 3, 32, 32), 0.5)
    flip = torch.stack([real[t % 2, t] for t in range(4)])  # circle, square, circle, square
    fake = shape_fill(torch.stack([blank, flip, real[0]]))
    got = shape_recognisability(fake, bands, 32 * 32)
    assert got["single_object"] == pytest.approx(8 / 12)
    assert got["recognisable"] == pytest.approx(8 / 12)
    assert got["circle_like"] == pytest.approx(6 / 12)
    assert got["square_like"] == pytest.approx(2 / 12)
    assert got["videos_recognisable"] == pytest.approx(1 / 3)  # only the real circle video
    # a class the real frames never show has no band, and nothing falls in it
    only_squares = fill_bands(shape_fill(real[1::2]), 32 * 32)
    assert only_squares["circle"] is None
    assert shape_recognisability(m, only_squares, 32 * 32)["circle_like"] == 0.0
