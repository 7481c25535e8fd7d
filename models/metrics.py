"""Video prediction metrics on frames in [0, 1], tensors shaped (B, T, C, H, W).

Conventions of the Moving MNIST literature (Srivastava et al., 2015, and its successors):
- `frame_mse`, `frame_mae`: summed over a frame's pixels and channels, then averaged over
  frames and sequences (so MSE ≈ 100 for 64×64 two-digit frames, not ≈ 0.02);
- `frame_bce`: Bernoulli cross-entropy summed over a frame's pixels, the paper's measure;
- `psnr` (data range 1) and `ssim` (Gaussian window 11, σ 1.5, K1 0.01, K2 0.03; Wang et al.,
  2004) per frame, then averaged;
- `sharpness`: gradient energy of the predicted frames over that of the true ones; < 1 exposes
  blur, the usual failure of squared-error predictors.

The per-frame functions return (B, T); `MetricAccumulator` sums them per future step over
many batches, and `video_metrics` is the one-batch shortcut. Everything is computed in float32.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

METRICS = ("mse", "mae", "psnr", "ssim", "bce")  # averaged per frame; `sharpness` is a ratio
BCE_EPS = 1e-7  # predictions are clamped to [eps, 1 - eps] so a confident miss costs ~16 nats
PSNR_MIN_MSE = 1e-10  # identical frames give 100 dB, not inf (keeps averages finite)
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


def _check(pred: Tensor, true: Tensor) -> tuple[Tensor, Tensor]:
    if pred.shape != true.shape or pred.dim() != 5:
        raise ValueError(
            f"expected pred and true of the same shape (B, T, C, H, W), got "
            f"{tuple(pred.shape)} and {tuple(true.shape)}"
        )
    if not (pred.is_floating_point() and true.is_floating_point()):
        raise ValueError(
            f"expected float frames in [0, 1], got {pred.dtype} and {true.dtype} "
            "(convert uint8 frames with x / 255)"
        )
    return pred.float(), true.float()


def frame_mse(pred: Tensor, true: Tensor) -> Tensor:
    """Squared error summed over a frame's pixels and channels: (B, T)."""
    pred, true = _check(pred, true)
    return (pred - true).square().sum(dim=(-3, -2, -1))


def frame_mae(pred: Tensor, true: Tensor) -> Tensor:
    """Absolute error summed over a frame's pixels and channels: (B, T)."""
    pred, true = _check(pred, true)
    return (pred - true).abs().sum(dim=(-3, -2, -1))


def psnr(pred: Tensor, true: Tensor) -> Tensor:
    """Peak signal-to-noise ratio per frame, data range 1: 10 log10(1 / mean squared error),
    in dB: (B, T)."""
    pred, true = _check(pred, true)
    mse = (pred - true).square().mean(dim=(-3, -2, -1))
    return -10.0 * torch.log10(mse.clamp_min(PSNR_MIN_MSE))


def frame_bce(pred: Tensor, true: Tensor, eps: float = BCE_EPS) -> Tensor:
    """Bernoulli cross-entropy of targets `true` under pixel probabilities `pred`, summed over a
    frame's pixels (nats):  -Σ [y log p + (1 - y) log(1 - p)],  p clamped to [eps, 1 - eps]: (B, T).
    """
    pred, true = _check(pred, true)
    p = pred.clamp(eps, 1.0 - eps)
    nll = -(true * torch.log(p) + (1.0 - true) * torch.log1p(-p))
    return nll.sum(dim=(-3, -2, -1))


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> Tensor:
    """The normalised 1-D Gaussian (size,) whose outer product is SSIM's 2-D window."""
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(pred: Tensor, true: Tensor) -> Tensor:
    """Structural similarity per frame (Wang et al., 2004), averaged over channels: (B, T).

    Local statistics under an 11×11 Gaussian window (σ 1.5), computed only where the window
    fits ("valid", as the reference implementation), data range L = 1:

        SSIM(x, y) = (2 μx μy + C1)(2 σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2)),
        C1 = (K1 L)², C2 = (K2 L)²

    and the frame's value is the mean of that map.
    """
    pred, true = _check(pred, true)
    batch, steps, channels, height, width = pred.shape
    if min(height, width) < SSIM_WINDOW:
        raise ValueError(f"ssim needs frames of at least {SSIM_WINDOW}×{SSIM_WINDOW} pixels")
    g = gaussian_window().to(pred.device)

    def blur(images: Tensor) -> Tensor:  # separable Gaussian filter, valid: (N,1,H-10,W-10)
        images = F.conv2d(images, g.view(1, 1, 1, -1))
        return F.conv2d(images, g.view(1, 1, -1, 1))

    x = pred.reshape(-1, 1, height, width)  # every (sequence, step, channel) as one image
    y = true.reshape(-1, 1, height, width)
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov_xy = blur(x * y) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return ssim_map.mean(dim=(-3, -2, -1)).view(batch, steps, channels).mean(dim=-1)


def gradient_energy(frames: Tensor) -> Tensor:
    """Σ over pixels and channels of squared horizontal and vertical finite differences:
    (B, T) for frames (B, T, C, H, W). Blur lowers it."""
    frames = frames.float()
    dx = frames[..., :, 1:] - frames[..., :, :-1]
    dy = frames[..., 1:, :] - frames[..., :-1, :]
    return dx.square().sum(dim=(-3, -2, -1)) + dy.square().sum(dim=(-3, -2, -1))


def sharpness(pred: Tensor, true: Tensor) -> Tensor:
    """Gradient energy of the predictions over that of the truth, per step: (T,).

    A ratio of sums over the batch (not a mean of per-frame ratios, which a blank true
    frame would make infinite): 1 for predictions as sharp as the truth, < 1 for blur."""
    pred, true = _check(pred, true)
    return gradient_energy(pred).sum(0) / gradient_energy(true).sum(0).clamp_min(1e-12)


def per_frame_metrics(pred: Tensor, true: Tensor) -> dict[str, Tensor]:
    """Every per-frame metric of METRICS: name -> (B, T)."""
    return {
        "mse": frame_mse(pred, true),
        "mae": frame_mae(pred, true),
        "psnr": psnr(pred, true),
        "ssim": ssim(pred, true),
        "bce": frame_bce(pred, true),
    }


class MetricAccumulator:
    """Per-step sums of the metrics over many batches, for evaluation runs.

    update(pred, true) with (B, T, C, H, W) batches of the same T; result() gives, for every
    name in METRICS and "sharpness", {"mean": float, "per_step": [float] * T}: each step
    averaged over all sequences seen, and "mean" over steps too (every sequence has T steps,
    so that is the average over all predicted frames).
    """

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}  # name -> (T,) float64 sums over sequences
        self.sequences = 0

    @torch.no_grad()
    def update(self, pred: Tensor, true: Tensor) -> None:
        values = per_frame_metrics(pred, true)
        values["energy_pred"] = gradient_energy(pred)
        values["energy_true"] = gradient_energy(true)
        if self.sums and next(iter(self.sums.values())).shape[0] != pred.shape[1]:
            raise ValueError(
                f"batch of {pred.shape[1]} steps, earlier batches had "
                f"{next(iter(self.sums.values())).shape[0]}"
            )
        for name, value in values.items():
            step_sums = value.double().sum(dim=0).cpu()  # (T,)
            self.sums[name] = self.sums[name] + step_sums if name in self.sums else step_sums
        self.sequences += pred.shape[0]

    def result(self) -> dict[str, dict[str, Any]]:
        if not self.sequences:
            raise ValueError("MetricAccumulator.result() before any update()")
        out: dict[str, dict[str, Any]] = {}
        for name in METRICS:
            per_step = self.sums[name] / self.sequences
            out[name] = {"mean": float(per_step.mean()), "per_step": per_step.tolist()}
        energy_pred, energy_true = self.sums["energy_pred"], self.sums["energy_true"]
        per_step = energy_pred / energy_true.clamp_min(1e-12)
        out["sharpness"] = {
            "mean": float(energy_pred.sum() / max(float(energy_true.sum()), 1e-12)),
            "per_step": per_step.tolist(),
        }
        return out


def video_metrics(pred: Tensor, true: Tensor) -> dict[str, dict[str, Any]]:
    """Metrics of one batch of predictions (B, T, C, H, W) against the truth: see
    MetricAccumulator.result()."""
    accumulator = MetricAccumulator()
    accumulator.update(pred, true)
    return accumulator.result()


def copy_last_baseline(observed: Tensor, horizon: int) -> Tensor:
    """The trivial predictor every model must beat: the last observed frame, repeated.
    observed (B, T, C, H, W) -> (B, horizon, C, H, W)."""
    return observed[:, -1:].repeat(1, horizon, 1, 1, 1)


__all__ = [
    "METRICS",
    "MetricAccumulator",
    "copy_last_baseline",
    "frame_bce",
    "frame_mae",
    "frame_mse",
    "gaussian_window",
    "gradient_energy",
    "per_frame_metrics",
    "psnr",
    "sharpness",
    "ssim",
    "video_metrics",
]
