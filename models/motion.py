"""Motion-compensated output head and losses against blur, shared by the predictor families.

A predictor that draws every future frame from scratch has to re-learn the whole appearance of
the scene; at the compute of a CPU it learns the blurred mean instead (grey fog on Moving MNIST,
smeared faces on camera footage). Predicting the future *relative to the last frame* makes the
easy part free: each future frame is the previous one moved by a predicted flow, and only what
motion cannot explain (disoccluded background, new objects) is drawn anew:

    x̂_k = (1 − α_k) ⊙ warp(x̂_{k−1}, f_k) + α_k ⊙ a_k,        x̂_0 = x_T (the last observed frame)

    f_k  (B, 2, H, W)  a backward flow in pixels: warp(x, f)(p) = x(p + f(p)), bilinear;
                       predicted on a coarse grid and upsampled (a motion field is smooth, and
                       a per-pixel flow learns to smear the frame instead of moving it)
    α_k  (B, 1, H, W)  where new appearance replaces the moved frame, clamp(·, 0, 1), also
                       from the coarse grid
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
initialised to zero, α = clamp(·, 0, 1) is exactly 0 there, and `warp` with a zero flow returns
its input bit for bit (integer sampling positions). The clamp passes its gradient straight
through (also outside [0, 1]), so a mask pushed below 0 early in training can come back.
Training can only move the model away from copy-last where that lowers the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.metrics import ssim


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


def straight_through_clamp(x: Tensor) -> Tensor:
    """clamp(x, 0, 1) forward, identity backward: a mask value pushed out of [0, 1] still
    receives the gradient that brings it back (a plain clamp would leave it dead)."""
    return x + (x.clamp(0.0, 1.0) - x).detach()


def compose(
    previous: Tensor, appearance: Tensor, mask: Tensor, flow: Tensor
) -> tuple[Tensor, Tensor]:
    """x̂_k from x̂_{k−1} = previous (N, C, H, W) in [0, 1] and the head's maps: appearance
    logits (N, C, H, W), mask (N, 1, H, W) before its clamp, flow (N, 2, H, W) pixels.
    Returns (x̂_k (N, C, H, W), α_k (N, 1, H, W))."""
    alpha = straight_through_clamp(mask)
    moved = warp(previous, flow.to(previous.dtype))
    frame = moved + alpha * (torch.sigmoid(appearance) - moved)  # (1 − α)·moved + α·a
    return frame, alpha


def zero_rows(layer: nn.Module, start: int) -> None:
    """Zero the outputs `start:` of `layer` (nn.Linear or nn.Conv2d; weights and bias): the
    readout rows of the mask and the flow, so the head starts as copy-last-frame."""
    with torch.no_grad():
        layer.weight[start:].zero_()
        if layer.bias is not None:
            layer.bias[start:].zero_()


def upsample_flow(flow: Tensor, size: int) -> Tensor:
    """Coarse fields (N, K, h, w) (a flow in pixels of the full frame, a mask) -> (N, K, size,
    size), bilinear."""
    if flow.shape[-1] == size:
        return flow
    return F.interpolate(flow, size=(size, size), mode="bilinear", align_corners=False)


def rollout(first: Tensor, appearance: Tensor, mask: Tensor, flow: Tensor) -> dict[str, Tensor]:
    """Compose K frames from x̂_0 = first (B, C, H, W) and the maps of K steps, appearance
    (B, K, C, H, W), mask (B, K, 1, H, W), flow (B, K, 2, H, W): {"frames" (B, K, C, H, W),
    "flow", "mask" (α, clamped)}."""
    frames, masks = [], []
    frame = first
    for k in range(appearance.shape[1]):
        frame, alpha = compose(frame, appearance[:, k], mask[:, k], flow[:, k])
        frames.append(frame)
        masks.append(alpha)
    return {"frames": torch.stack(frames, 1), "flow": flow, "mask": torch.stack(masks, 1)}


# ---------------------------------------------------------------------------------------------
# The kernel head (output="cdna"): a bank of translations chosen per pixel
#
#     T_i = K_i ⋆ x̂_{k−1}                         K_i (k×k) = softmax(bank_i + z_i), i = 1..N
#     x̂_k = (1 − α_k) ⊙ [x̂_{k−1} + Σ_i β_i ⊙ (T_i − x̂_{k−1})] + α_k ⊙ a_k
#
# Finn et al. 2016's CDNA: the kernels are predicted for the whole frame (one set per sequence
# and step, from the pooled state), so each describes the motion of one object wherever it is,
# and the per-pixel selection β says which object a pixel belongs to. A flow learns from the
# image gradient within a pixel of where it samples; a kernel's weight at offset o learns from
# the correlation of the error with the frame moved by o, over the whole kernel, so a digit
# that moved 3 px is found at once. Unlike the paper the selections are not a softmax: β_i and
# α start at exactly 0 (clamped, straight through), so the head starts as copy-last-frame
# exactly; the kernels start as `kernel_bank`, translations spread over a circle, so every
# β_i has a gradient from the first step.


def kernel_bank(count: int, size: int, radius: float | None = None) -> Tensor:
    """Initial kernel logits (count, size²): kernel i a Gaussian bump (σ = 1 px) at the offset
    radius·(cos θ_i, sin θ_i), θ_i = 2πi/count; radius defaults to size/4 px."""
    r = size / 4 if radius is None else radius
    half = size // 2
    offsets = torch.arange(size, dtype=torch.float32) - half
    oy, ox = torch.meshgrid(offsets, offsets, indexing="ij")  # (k, k)
    theta = 2 * torch.pi * torch.arange(count, dtype=torch.float32) / count
    cx, cy = r * torch.cos(theta), r * torch.sin(theta)  # (N,)
    d2 = (ox - cx.view(-1, 1, 1)) ** 2 + (oy - cy.view(-1, 1, 1)) ** 2
    return (-d2 / 2).flatten(1)  # log of a Gaussian, up to a constant


def apply_kernels(frames: Tensor, kernels: Tensor) -> Tensor:
    """T_i = K_i ⋆ frames: frames (B, C, H, W), kernels (B, N, k, k) normalised -> (B, N, C, H,
    W). Cross-correlation (out(p) = Σ_o K(o) x(p + o), the backward-warp convention of `warp`)
    with the border replicated, as a grouped convolution (one group per frame channel)."""
    b, c, h, w = frames.shape
    n, k = kernels.shape[1], kernels.shape[-1]
    padded = F.pad(frames, (k // 2,) * 4, mode="replicate").reshape(1, b * c, h + k - 1, w + k - 1)
    weight = kernels.unsqueeze(1).expand(b, c, n, k, k).reshape(b * c * n, 1, k, k)
    out = F.conv2d(padded, weight.to(frames.dtype), groups=b * c)  # (1, B·C·N, H, W)
    return out.view(b, c, n, h, w).transpose(1, 2)


def kernel_flow(select: Tensor, kernels: Tensor) -> Tensor:
    """The flow the kernel head implies, for display: Σ_i β_i · E_{K_i}[o] (B, 2, H, W) pixels,
    from selections β (B, N, H, W) in [0, 1] and kernels (B, N, k, k)."""
    k = kernels.shape[-1]
    offsets = torch.arange(k, device=kernels.device, dtype=kernels.dtype) - k // 2
    mean_x = (kernels.sum(-2) * offsets).sum(-1)  # (B, N)
    mean_y = (kernels.sum(-1) * offsets).sum(-1)
    means = torch.stack([mean_x, mean_y], 1)  # (B, 2, N)
    return torch.einsum("bdn,bnhw->bdhw", means, select.to(kernels.dtype))


def compose_kernels(
    previous: Tensor, appearance: Tensor, mask: Tensor, select: Tensor, kernels: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """x̂_k from x̂_{k−1} = previous (B, C, H, W) and the kernel head's maps: appearance logits
    (B, C, H, W), mask (B, 1, H, W) and selections (B, N, H, W) before their clamps, kernels
    (B, N, k, k) normalised. Returns (x̂_k, α_k (B, 1, H, W), β_k (B, N, H, W))."""
    alpha, beta = straight_through_clamp(mask), straight_through_clamp(select)
    moved = apply_kernels(previous, kernels) - previous.unsqueeze(1)  # (B, N, C, H, W)
    moved = previous + (beta.unsqueeze(2).to(moved.dtype) * moved).sum(1)
    frame = moved + alpha * (torch.sigmoid(appearance) - moved)
    return frame, alpha, beta


def rollout_kernels(
    first: Tensor, appearance: Tensor, mask: Tensor, select: Tensor, kernels: Tensor
) -> dict[str, Tensor]:
    """`rollout` for the kernel head: maps of K steps, appearance (B, K, C, H, W), mask (B, K,
    1, H, W), select (B, K, N, H, W), kernels (B, K, N, k, k) -> {"frames", "mask" (α), "flow"
    (the implied flow, `kernel_flow`), "kernels"}."""
    frames, alphas, flows = [], [], []
    frame = first
    for k in range(appearance.shape[1]):
        frame, alpha, beta = compose_kernels(
            frame, appearance[:, k], mask[:, k], select[:, k], kernels[:, k]
        )
        frames.append(frame)
        alphas.append(alpha)
        flows.append(kernel_flow(beta, kernels[:, k]))
    return {
        "frames": torch.stack(frames, 1),
        "flow": torch.stack(flows, 1),
        "mask": torch.stack(alphas, 1),
        "kernels": kernels,
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


def pyramid_loss(pred: Tensor, true: Tensor, kind: str, levels: int) -> Tensor:
    """The pixel loss at `levels` coarser scales (each 2× average-pooled), summed, on frames
    (..., C, H, W). A warp learns from the image gradient within a pixel of where it samples:
    an object that moved farther than its own width gives its flow no signal at full
    resolution, only at a scale where the move is under a pixel (coarse-to-fine, as optical
    flow estimators do it)."""
    total = pred.new_zeros(())
    p, t = pred.flatten(0, -4), true.flatten(0, -4)
    for _ in range(levels):
        if min(p.shape[-2:]) < 2:
            break
        p, t = F.avg_pool2d(p, 2), F.avg_pool2d(t, 2)
        total = total + pixel_loss(p, t, kind)
    return total


__all__ = [
    "apply_kernels",
    "compose",
    "compose_kernels",
    "gradient_difference_loss",
    "kernel_bank",
    "kernel_flow",
    "pixel_loss",
    "pyramid_loss",
    "rollout",
    "rollout_kernels",
    "ssim_loss",
    "straight_through_clamp",
    "upsample_flow",
    "warp",
    "zero_rows",
]
