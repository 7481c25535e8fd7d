"""Motion-compensated output head and losses against blur, shared by the predictor families.

A predictor that draws every future frame from scratch has to re-learn the whole appearance of
the scene; at the compute of a CPU it learns the blurred mean instead (grey fog on Moving MNIST,
smeared faces on camera footage). Predicting the future *relative to the last frame* makes the
easy part free: each future frame is the previous one moved by a predicted flow, and only what
motion cannot explain (disoccluded background, new objects) is drawn anew:

    x̂_k = (1 − α_k) ⊙ warp(x̂_{k−1}, f_k) + α_k ⊙ a_k,        x̂_0 = x_T (the last observed frame)

    f_k  (B, 2, H, W)  a backward flow in pixels: warp(x, f)(p) = x(p + f(p)), bilinear
    α_k  (B, 1, H, W)  where new appearance replaces the moved frame, clamp(·, 0, 1)
    a_k  (B, C, H, W)  the new appearance, sigmoid

What it takes from whom:
- Finn, Goodfellow & Levine 2016 (CDNA/DNA): predict *transformations of the previous frame*
  and a compositing mask with the generated pixels, rather than the pixels themselves; the
  transformation is applied to the model's own previous prediction when rolling out.
- Liu et al. 2017 (deep voxel flow): a dense per-pixel flow read out with differentiable
  bilinear sampling (here the flow is one backward flow per step, not a voxel flow across two
  frames).
- Villegas et al. 2017 (MCnet): separate motion from content; the content (appearance) path
  only fills in what the motion path leaves unexplained.
- Mathieu, Couprie & LeCun 2016: the gradient difference loss (GDL), which penalises blur
  directly by comparing image gradients; an SSIM term (Wang et al. 2004) does the same for
  local structure.

The head starts as copy-last-frame *exactly*: the rows of the readout that produce f and α are
initialised to zero, and α = clamp(·, 0, 1) is exactly 0 there (its gradient still passes at
0), and `warp` with a zero flow returns its input bit for bit (integer sampling positions).
Training can only move the model away from copy-last where that lowers the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.metrics import ssim

FLOW, MASK = 2, 1  # channels of the flow and of the mask in the head's maps


def warp(frames: Tensor, flow: Tensor) -> Tensor:
    """Backward warp: out(p) = frames(p + flow(p)), bilinear, positions clamped to the border.

    frames (N, C, H, W), flow (N, 2, H, W) in pixels (dx, dy). Sampling positions are the
    integer pixel grid plus the flow, so a zero flow gathers every pixel with weight exactly 1
    (grid_sample's normalised coordinates would round).
    """
    n, c, h, w = frames.shape
    ys = torch.arange(h, device=frames.device, dtype=flow.dtype).view(1, h, 1)
    xs = torch.arange(w, device=frames.device, dtype=flow.dtype).view(1, 1, w)
    x = (xs + flow[:, 0]).clamp(0, w - 1)  # (N, H, W)
    y = (ys + flow[:, 1]).clamp(0, h - 1)
    x0, y0 = x.floor(), y.floor()
    wx, wy = (x - x0).unsqueeze(1), (y - y0).unsqueeze(1)  # (N, 1, H, W)
    x0, y0 = x0.long(), y0.long()
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    flat = frames.reshape(n, c, h * w)

    def gather(yy: Tensor, xx: Tensor) -> Tensor:
        index = (yy * w + xx).view(n, 1, h * w).expand(-1, c, -1)
        return flat.gather(2, index).view(n, c, h, w)

    top = gather(y0, x0) * (1 - wx) + gather(y0, x1) * wx
    bottom = gather(y1, x0) * (1 - wx) + gather(y1, x1) * wx
    return top * (1 - wy) + bottom * wy


def compose(previous: Tensor, maps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The next frame from the previous one and the head's maps.

    previous (N, C, H, W) in [0, 1]; maps (N, C + 3, H, W): appearance logits (C), mask (1),
    flow (2). Returns (frame (N, C, H, W) in [0, 1], flow (N, 2, H, W), α (N, 1, H, W)).
    """
    channels = previous.shape[1]
    appearance = torch.sigmoid(maps[:, :channels])
    alpha = maps[:, channels : channels + MASK].clamp(0.0, 1.0)
    flow = maps[:, channels + MASK :]
    moved = warp(previous, flow.to(previous.dtype))
    frame = moved + alpha * (appearance - moved)  # (1 − α)·moved + α·appearance
    return frame, flow, alpha


def zero_motion_rows(layer: nn.Module, channels: int, per_channel: int) -> None:
    """Initialise the outputs of `layer` (nn.Linear or nn.Conv2d) that feed the mask and the
    flow to zero (weights and bias): the head then starts as copy-last-frame. Its outputs are
    ordered appearance (C), mask (1), flow (2), each `per_channel` consecutive outputs (p² for
    a pixel-shuffled conv readout, H·W for a flat one)."""
    start = channels * per_channel
    with torch.no_grad():
        layer.weight[start:].zero_()
        if layer.bias is not None:
            layer.bias[start:].zero_()


def rollout(first: Tensor, maps: Tensor) -> dict[str, Tensor]:
    """Compose K frames from x̂_0 = first (B, C, H, W) and maps (B, K, C + 3, H, W):
    {"frames" (B, K, C, H, W), "flow" (B, K, 2, H, W), "mask" (B, K, 1, H, W)}."""
    frames, flows, masks = [], [], []
    frame = first
    for k in range(maps.shape[1]):
        frame, flow, alpha = compose(frame, maps[:, k])
        frames.append(frame)
        flows.append(flow)
        masks.append(alpha)
    return {
        "frames": torch.stack(frames, 1),
        "flow": torch.stack(flows, 1),
        "mask": torch.stack(masks, 1),
    }


# ---------------------------------------------------------------------------------------------
# Losses against blur


def gradient_difference_loss(pred: Tensor, true: Tensor, alpha: float = 1.0) -> Tensor:
    """Mathieu et al. 2016, GDL: mean over pixels of ||∇x pred| − |∇x true||^α + the same in y,
    on frames (..., C, H, W). A blurred prediction has weaker gradients than the truth."""

    def grads(x: Tensor) -> tuple[Tensor, Tensor]:
        return (x[..., :, 1:] - x[..., :, :-1]).abs(), (x[..., 1:, :] - x[..., :-1, :]).abs()

    px, py = grads(pred)
    tx, ty = grads(true)
    return (px - tx).abs().pow(alpha).mean() + (py - ty).abs().pow(alpha).mean()


def ssim_loss(pred: Tensor, true: Tensor) -> Tensor:
    """1 − mean SSIM of frames (B, T, C, H, W) (needs H, W >= 11)."""
    return 1.0 - ssim(pred.float(), true.float()).mean()


def pixel_loss(pred: Tensor, true: Tensor, kind: str) -> Tensor:
    """Mean per-pixel loss of frames in [0, 1]: "l1", "mse" or "bce" (on probabilities)."""
    if kind == "l1":
        return F.l1_loss(pred, true)
    if kind == "mse":
        return F.mse_loss(pred, true)
    if kind == "bce":
        eps = 1e-6
        return F.binary_cross_entropy(pred.float().clamp(eps, 1 - eps), true.float())
    raise ValueError(f"loss {kind!r}: use l1, mse or bce")


__all__ = [
    "compose",
    "gradient_difference_loss",
    "pixel_loss",
    "rollout",
    "ssim_loss",
    "warp",
    "zero_motion_rows",
]
