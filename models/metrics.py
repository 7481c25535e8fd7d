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

import math
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


# ---------------------------------------------------------------------------------------------
# Generator metrics (MoCoGAN, Tulyakov et al. 2018): Fréchet distance of feature statistics
# (FID / FVD when the features are Inception / I3D ones), average content distance (ACD) and
# the Inception Score of a classifier's posteriors.


def feature_statistics(feats: Tensor) -> tuple[Tensor, Tensor]:
    """(mean (D,), covariance (D, D)) in float64 of features (N, D), N >= 2; the covariance is
    the unbiased one (divided by N - 1), as in FID's reference code."""
    feats = torch.as_tensor(feats).detach().to("cpu", torch.float64)
    if feats.dim() != 2 or feats.shape[0] < 2:
        raise ValueError(f"expected features (N, D) with N >= 2, got {tuple(feats.shape)}")
    mu = feats.mean(dim=0)
    centred = feats - mu
    return mu, centred.T @ centred / (feats.shape[0] - 1)


def _sym_sqrt(mat: Tensor) -> Tensor:
    """The PSD square root of a symmetric matrix (negative eigenvalues from rounding -> 0)."""
    vals, vecs = torch.linalg.eigh((mat + mat.T) / 2)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet_distance(mu1: Tensor, s1: Tensor, mu2: Tensor, s2: Tensor) -> float:
    """Fréchet (2-Wasserstein) distance between N(mu1, s1) and N(mu2, s2):

        ||mu1 - mu2||² + tr(s1) + tr(s2) - 2 tr((s1 s2)^½)

    computed in float64 without scipy: tr((s1 s2)^½) = Σ √λ over the eigenvalues λ of the
    symmetric PSD matrix s1^½ s2 s1^½ (it is similar to s1 s2), from two `eigh` calls.
    """

    def f64(x: Tensor) -> Tensor:
        return torch.as_tensor(x).detach().to("cpu", torch.float64)

    mu1, s1, mu2, s2 = f64(mu1), f64(s1), f64(mu2), f64(s2)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (*mu1.shape, *mu1.shape):
        raise ValueError(
            f"shapes do not match: mu {tuple(mu1.shape)}, {tuple(mu2.shape)}; "
            f"covariances {tuple(s1.shape)}, {tuple(s2.shape)}"
        )
    root = _sym_sqrt(s1)
    middle = root @ s2 @ root
    eig = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0)
    value = (mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * eig.sqrt().sum()
    return max(0.0, float(value))


def average_content_distance(descriptors: Tensor) -> float:
    """ACD, MoCoGAN's content-consistency measure (Tulyakov et al. 2018, section 4): per video,
    the mean L2 distance between the descriptors of every pair of its frames, averaged over
    videos (lower: steadier content).

    descriptors (B, T, D): per frame, what the paper compares: the mean colour of the object
    (shape motion; `object_colours` of `object_masks` / `figure_masks`) or a content network's
    features (faces: an identity embedding). A frame whose descriptor is not finite (no object
    found) is left out, and so is a video with fewer than 2 described frames; NaN when no video
    is left. (Mean colours of whole frames are not ACD: a small object's colour drift is
    diluted by the background.)
    """
    x = torch.as_tensor(descriptors).detach().double()
    if x.dim() != 3 or x.shape[1] < 2:
        raise ValueError(
            f"expected per-frame descriptors (B, T, D) with T >= 2, got {tuple(x.shape)} (for "
            "frames (B, T, C, H, W): object_colours(frames, object_masks(frames)))"
        )
    valid = torch.isfinite(x).all(dim=-1)  # (B, T)
    dist = torch.cdist(torch.where(valid[..., None], x, 0.0), torch.where(valid[..., None], x, 0.0))
    pair = valid[:, :, None] & valid[:, None, :]  # both frames described; the diagonal is 0
    count = valid.sum(dim=1)  # (B,)
    pairs = (count * (count - 1)).double()  # ordered pairs i != j
    kept = count >= 2
    if not kept.any():
        return float("nan")
    per_video = (dist * pair).sum(dim=(1, 2))[kept] / pairs[kept]
    return float(per_video.mean())


def described_videos(descriptors: Tensor) -> int:
    """How many videos average_content_distance averages: those with >= 2 finite frames."""
    valid = torch.isfinite(torch.as_tensor(descriptors)).all(dim=-1)
    return int((valid.sum(dim=1) >= 2).sum())


IS_SPLITS = 10  # parts the Inception Score is computed on (Salimans et al. 2016's code)


def inception_score(logits: Tensor, splits: int = IS_SPLITS) -> tuple[float, float]:
    """Inception Score (Salimans et al. 2016) of a classifier's logits (N, K) for N samples:

        p(y | x) = softmax(logits),   p(y) = E_x p(y | x),
        IS = exp( E_x KL(p(y | x) || p(y)) ) = exp( E_x Σ_y p(y|x) (log p(y|x) - log p(y)) )

    on each of `splits` consecutive parts of N // splits samples (p(y) per part; a remainder
    is left out), as the reference code does; returns (mean, standard deviation) over the
    parts. 1 <= IS <= K: high when each sample is confidently one class and the classes are
    used evenly (MoCoGAN reports it with a video classifier's posteriors).
    """
    z = torch.as_tensor(logits).detach().double()
    if z.dim() != 2 or z.shape[1] < 2:
        raise ValueError(f"expected logits (N, K) with K >= 2, got {tuple(z.shape)}")
    if splits < 1 or z.shape[0] < splits:
        raise ValueError(f"splits={splits} needs 1 <= splits <= N={z.shape[0]} samples")
    size = z.shape[0] // splits
    log_p = torch.log_softmax(z[: size * splits], dim=1).view(splits, size, -1)  # log p(y|x)
    log_marginal = torch.logsumexp(log_p, dim=1, keepdim=True) - math.log(size)  # log p(y)
    kl = (log_p.exp() * (log_p - log_marginal)).sum(dim=2)  # (splits, size)
    scores = kl.mean(dim=1).exp()
    return float(scores.mean()), float(scores.std(correction=0))


__all__ += [
    "IS_SPLITS",
    "average_content_distance",
    "described_videos",
    "feature_statistics",
    "frechet_distance",
    "inception_score",
]


# ---------------------------------------------------------------------------------------------
# Keypoint metrics (structure predictors, Villegas et al. 2017): PCK of predicted 2-D poses.

PCK_ALPHA = 0.1  # a joint is correct within alpha x body size (PCK@0.1)


def body_size(keypoints: Tensor) -> Tensor:
    """max(width, height) of the bounding box of each pose's visible joints: (...,) for
    keypoints (..., K, 2); NaN joints are ignored, a pose without joints gives NaN."""
    kp = keypoints.float()
    vis = torch.isfinite(kp).all(dim=-1, keepdim=True)  # (..., K, 1)
    hi = torch.where(vis, kp, torch.full_like(kp, -float("inf"))).amax(dim=-2)
    lo = torch.where(vis, kp, torch.full_like(kp, float("inf"))).amin(dim=-2)
    size = (hi - lo).amax(dim=-1)
    return torch.where(vis.any(dim=-2).squeeze(-1), size, torch.full_like(size, float("nan")))


def pck_counts(pred: Tensor, true: Tensor, alpha: float = PCK_ALPHA) -> tuple[Tensor, Tensor]:
    """(correct, visible) joint counts per frame, each (B, T), for poses (B, T, K, 2).

    A joint is *visible* when its true position is finite, and *correct* when the predicted
    one lies within alpha x body_size(true pose) of it (Euclidean distance, pixels); a NaN
    prediction of a visible joint is wrong. PCK = correct / visible."""
    if pred.shape != true.shape or pred.dim() != 4 or pred.shape[-1] != 2:
        raise ValueError(
            f"expected keypoints (B, T, K, 2) of equal shapes, got {tuple(pred.shape)} and "
            f"{tuple(true.shape)}"
        )
    pred, true = pred.float(), true.float()
    vis = torch.isfinite(true).all(dim=-1)  # (B, T, K)
    dist = (pred - true).norm(dim=-1)  # NaN where either is missing
    threshold = alpha * body_size(true).unsqueeze(-1)  # (B, T, 1)
    correct = (dist <= threshold) & vis  # NaN compares False
    return correct.sum(dim=-1).double(), vis.sum(dim=-1).double()


def pck(pred: Tensor, true: Tensor, alpha: float = PCK_ALPHA) -> Tensor:
    """PCK per frame (B, T) in [0, 1] (NaN for a frame without visible joints): see pck_counts."""
    correct, counted = pck_counts(pred, true, alpha)
    return correct / counted.where(counted > 0, torch.full_like(counted, float("nan")))


class PCKAccumulator:
    """PCK per future step over many batches: correct joints / visible joints, summed over
    sequences per step (so every visible joint weighs the same). result() gives
    {"mean": float, "per_step": [float] * T}."""

    def __init__(self, alpha: float = PCK_ALPHA) -> None:
        self.alpha = alpha
        self.correct: Tensor | None = None  # (T,) float64
        self.counted: Tensor | None = None

    @torch.no_grad()
    def update(self, pred: Tensor, true: Tensor) -> None:
        correct, counted = pck_counts(pred, true, self.alpha)
        correct, counted = correct.sum(0).cpu(), counted.sum(0).cpu()
        if self.correct is None or self.counted is None:
            self.correct, self.counted = correct, counted
            return
        if self.correct.shape != correct.shape:
            raise ValueError(
                f"batch of {len(correct)} steps, earlier batches had {len(self.correct)}"
            )
        self.correct, self.counted = self.correct + correct, self.counted + counted

    def result(self) -> dict[str, Any]:
        if self.correct is None or self.counted is None:
            raise ValueError("PCKAccumulator.result() before any update()")
        per_step = self.correct / self.counted.clamp_min(1)
        mean = float(self.correct.sum() / max(float(self.counted.sum()), 1.0))
        return {"mean": mean, "per_step": per_step.tolist()}


__all__ += ["PCKAccumulator", "PCK_ALPHA", "body_size", "pck", "pck_counts"]


# ---------------------------------------------------------------------------------------------
# Shape recognisability (one object on a plain background, e.g. shape motion): the fill ratio
# of the object's bounding box tells a circle (pi/4) from a square (1).

FILL_CIRCLE = math.pi / 4  # area / bounding-box area of a disc
FILL_SQUARE = 1.0  # ... of an axis-aligned square
FILL_SPLIT = (FILL_CIRCLE + FILL_SQUARE) / 2  # real frames below: circles; at or above: squares
FG_THRESHOLD = 0.15  # least colour distance (RGB, [0, 1] units) of a foreground pixel
FG_RELATIVE = 0.5  # ... and at least this share of the frame's largest distance (the AA edge)
SINGLE_OBJECT_SHARE = 0.9  # one compact object: its largest component holds >= this share
MIN_OBJECT_PIXELS = 4  # ... of a foreground of at least this many pixels
BAND_QUANTILES = (0.02, 0.98)  # a class's band: these quantiles of the real frames' fill
VIDEO_AGREEMENT = 0.75  # a recognisable video: this share of its frames show one shape class


def _frames(frames: Tensor) -> tuple[Tensor, tuple[int, ...]]:
    """Frames (..., C, H, W) as float (N, C, H, W), and the leading shape."""
    x = torch.as_tensor(frames).detach().float()
    if x.dim() < 3 or x.shape[-1] < 3 or x.shape[-2] < 3:
        raise ValueError(f"expected frames (..., C, H, W) with H, W >= 3, got {tuple(x.shape)}")
    return x.reshape(-1, *x.shape[-3:]), tuple(x.shape[:-3])


def _ring(x: Tensor) -> Tensor:
    """The outermost ring of pixels of frames (N, C, H, W): (N, C, 2H + 2W - 4)."""
    return torch.cat([x[..., 0, :], x[..., -1, :], x[..., 1:-1, 0], x[..., 1:-1, -1]], dim=-1)


def _foreground(x: Tensor, backgrounds: Tensor, threshold: float, relative: float) -> Tensor:
    """F = {p : d(p) > max(threshold, relative * max_p d(p))} (N, H, W) bool, for frames x
    (N, C, H, W) and background colours (N, K, C): d(p) = min_k ||x(p) - b_k||_2."""
    dist = (x[:, None] - backgrounds[..., None, None]).norm(dim=2).amin(dim=1)  # (N, H, W)
    cut = torch.clamp_min(dist.amax(dim=(1, 2)) * relative, threshold)
    return dist > cut[:, None, None]


def _largest_component(fg: Tensor) -> tuple[Tensor, Tensor]:
    """The largest 8-connected component of each mask fg (N, H, W) bool: (mask, its size)."""
    n, h, w = fg.shape
    # Label propagation: every foreground pixel starts with its own label (1-based index) and
    # takes the largest in its 3x3 neighbourhood until nothing changes.
    labels = torch.arange(1, h * w + 1, dtype=torch.float32).reshape(1, h, w).expand(n, h, w)
    labels = labels * fg
    while True:
        grown = F.max_pool2d(labels[:, None], 3, stride=1, padding=1)[:, 0] * fg
        if torch.equal(grown, labels):
            break
        labels = grown
    flat = labels.reshape(n, -1).long()
    counts = torch.zeros(n, h * w + 1, dtype=torch.long).scatter_add_(
        1, flat, torch.ones_like(flat)
    )
    counts[:, 0] = 0  # background
    size, best = counts.max(dim=1)
    return (labels == best[:, None, None].float()) & fg, size.float()


@torch.no_grad()
def object_masks(frames: Tensor, threshold: float = FG_THRESHOLD) -> Tensor:
    """The pixels of the one object in frames (..., C, H, W) in [0, 1] on a plain background
    (shape motion): (..., H, W) bool, L of `shape_fill` (the largest 8-connected component of
    the pixels far from the border's median colour); empty when there is none."""
    x, lead = _frames(frames)
    fg = _foreground(x, _ring(x).median(dim=-1).values[:, None], threshold, FG_RELATIVE)
    return _largest_component(fg)[0].reshape(*lead, *x.shape[-2:])


def interior(masks: Tensor) -> Tensor:
    """The pixels of masks (..., H, W) bool whose 3x3 neighbourhood lies inside the mask: the
    mask without its rim (where an anti-aliased object blends with the background)."""
    m = torch.as_tensor(masks)
    flat = m.reshape(-1, 1, *m.shape[-2:]).float()
    inside = -F.max_pool2d(-flat, 3, stride=1, padding=1) > 0.5  # a min-pool: erosion
    return inside.reshape(m.shape) & m


FIGURE_THRESHOLD = 0.2  # least RGB distance ([0, 1] units) of a figure pixel from sky and floor


@torch.no_grad()
def figure_masks(frames: Tensor, threshold: float = FIGURE_THRESHOLD) -> Tensor:
    """The stick figure's pixels in frames (..., C, H, W) in [0, 1] (pipeline/datasets/
    stick_figures.py: a figure on a sky with a floor band below it): (..., H, W) bool.

    The background has two colours, the sky (the median of the top border row) and the floor
    (of the bottom row); a figure pixel is farther than `threshold` from both. The figures'
    colours keep 100/255 = 0.39 from both and the floor is at most ~0.3 from the sky, so
    0.2 takes the figure whole (its anti-aliased rim partly) and neither background.
    """
    x, lead = _frames(frames)
    backgrounds = torch.stack(
        [x[..., 0, :].median(dim=-1).values, x[..., -1, :].median(dim=-1).values], dim=1
    )  # (N, 2, C)
    return _foreground(x, backgrounds, threshold, 0.0).reshape(*lead, *x.shape[-2:])


def object_colours(frames: Tensor, masks: Tensor) -> Tensor:
    """The mean colour of each frame's masked pixels: frames (..., C, H, W), masks (..., H, W)
    bool -> (..., C) float64; NaN for a frame whose mask is empty. ACD's descriptor of shape
    motion."""
    x = torch.as_tensor(frames).detach().double()  # exact means of equal colours
    m = torch.as_tensor(masks).to(device=x.device, dtype=torch.float64).unsqueeze(-3)
    if m.shape[:-3] != x.shape[:-3] or m.shape[-2:] != x.shape[-2:]:
        raise ValueError(
            f"masks {tuple(masks.shape)} do not match frames {tuple(x.shape)} (..., C, H, W)"
        )
    count = m.sum(dim=(-2, -1))  # (..., 1)
    colour = (x * m).sum(dim=(-2, -1)) / count.clamp_min(1)
    return torch.where(count > 0, colour, torch.full_like(colour, float("nan")))


@torch.no_grad()
def shape_fill(frames: Tensor, threshold: float = FG_THRESHOLD) -> dict[str, Tensor]:
    """Per-frame measures of the one object in frames (..., C, H, W) in [0, 1]; each (...):

    b       = per-channel median of the frame's border pixels (the outermost ring): the
              background colour, which the shape never touches;
    d(p)    = ||x(p) - b||_2 over the channels;
    F       = {p : d(p) > max(threshold, FG_RELATIVE * max_p d(p))}: the foreground (half
              the largest distance is the anti-aliased edge of a one-colour shape);
    L       = the largest 8-connected component of F;
    fill    = |L| / (h_L * w_L), h_L x w_L its bounding box: ~pi/4 for a disc, ~1 for an
              axis-aligned square (NaN when F is empty);
    share   = |L| / |F| (0 when F is empty): 1 for one compact object;
    area    = |L| / (H * W);
    iou_circle, iou_square = IoU(L, T) of L with the templates of its own area |L| and
              centroid c: the disc {p : |p - c| <= sqrt(|L| / pi)} and the axis-aligned square
              {p : |p - c|_inf <= sqrt(|L|) / 2} (0 when F is empty). A clean disc matches its
              own template at ~0.97-1 and the other at ~0.84 (and a clean square the same way);
              unlike fill, a few stray boundary pixels cost an IoU little.
    """
    x, lead = _frames(frames)
    n, c, h, w = x.shape
    fg = _foreground(x, _ring(x).median(dim=-1).values[:, None], threshold, FG_RELATIVE)
    largest, size = _largest_component(fg)
    total = fg.sum(dim=(1, 2)).float()
    rows, cols = largest.any(dim=2), largest.any(dim=1)  # (N, H), (N, W)
    idx_h, idx_w = torch.arange(h), torch.arange(w)

    def extent(mask: Tensor, idx: Tensor) -> Tensor:
        hi = torch.where(mask, idx, -1).amax(dim=1)
        lo = torch.where(mask, idx, idx.numel()).amin(dim=1)
        return (hi - lo + 1).clamp_min(0)

    box = (extent(rows, idx_h) * extent(cols, idx_w)).float()
    fill = torch.where(box > 0, size / box.clamp_min(1), torch.full_like(box, float("nan")))
    share = torch.where(total > 0, size / total.clamp_min(1), torch.zeros_like(total))

    # Templates of L's own area and centroid (pixel centres inside them).
    y, x = idx_h.float()[None, :, None], idx_w.float()[None, None, :]
    mass = largest.float()
    area = size.clamp_min(1)[:, None, None]
    dy = y - (mass * y).sum(dim=(1, 2), keepdim=True) / area
    dx = x - (mass * x).sum(dim=(1, 2), keepdim=True) / area
    disc = dy**2 + dx**2 <= area / math.pi
    half = area.sqrt() / 2
    square = (dy.abs() <= half) & (dx.abs() <= half)

    def iou(template: Tensor) -> Tensor:
        inter = (largest & template).sum(dim=(1, 2)).float()
        union = (largest | template).sum(dim=(1, 2)).float()
        return torch.where(size > 0, inter / union.clamp_min(1), torch.zeros_like(size))

    return {
        "fill": fill.reshape(lead),
        "share": share.reshape(lead),
        "area": (size / (h * w)).reshape(lead),
        "iou_circle": iou(disc).reshape(lead),
        "iou_square": iou(square).reshape(lead),
    }


def single_object(measures: dict[str, Tensor], pixels: int) -> Tensor:
    """Frames (bool, like the measures) that show one compact object: a foreground of at least
    MIN_OBJECT_PIXELS pixels (`pixels` = H * W of a frame) whose largest component holds at
    least SINGLE_OBJECT_SHARE of it."""
    return (measures["share"] >= SINGLE_OBJECT_SHARE) & (
        measures["area"] * pixels >= MIN_OBJECT_PIXELS
    )


def fill_bands(real: dict[str, Tensor], pixels: int) -> dict[str, list[float] | None]:
    """The fill bands of real frames: {"circle": [lo, hi], "square": [lo, hi]}, each the
    BAND_QUANTILES of the fill of the real single-object frames below / at or above FILL_SPLIT
    (None for a class no real frame shows)."""
    ok = single_object(real, pixels)
    fill = real["fill"][ok].double()
    bands: dict[str, list[float] | None] = {}
    for name, part in (("circle", fill[fill < FILL_SPLIT]), ("square", fill[fill >= FILL_SPLIT])):
        if part.numel() == 0:
            bands[name] = None
            continue
        q = torch.quantile(part, torch.tensor(BAND_QUANTILES, dtype=torch.float64))
        bands[name] = [float(q[0]), float(q[1])]
    return bands


def shape_recognisability(
    measures: dict[str, Tensor], bands: dict[str, list[float] | None], pixels: int
) -> dict[str, float]:
    """Summary of shape_fill measures (B, T) of videos against fill bands (fill_bands of real
    frames), shares in [0, 1]:

        single_object: frames showing one compact object (single_object);
        circle_like / square_like: frames showing one compact object whose fill lies in the
            circle / square band;
        recognisable: circle_like + square_like (the bands do not overlap for clean shapes);
        videos_recognisable: videos with at least VIDEO_AGREEMENT of their frames of one class
            (all circle-like, or all square-like);
        fill_median: the median fill of the single-object frames (NaN without any);
        read_circle / read_square: single-object frames whose object is nearer (IoU) the disc /
            the square template of its own area, at IoU >= READ_IOU (read_shape: read either
            way; a clean shape reads as itself, a blob between the two as neither);
        template_iou_median: the median IoU of the single-object frames' objects with their
            nearer template (~0.97-1 for clean shapes; 0.84 is what a disc scores against a
            square: the two shapes' own overlap).

    A round blob reads as a circle, so a generator that draws only blobs scores circle_like but
    no square_like: compare both with the real frames' shares (about half each for shapes).
    """
    fill = measures["fill"]
    if fill.dim() != 2:
        raise ValueError(f"expected measures (B, T), got {tuple(fill.shape)}")
    ok = single_object(measures, pixels)

    def within(band: list[float] | None) -> Tensor:
        if band is None:
            return torch.zeros_like(ok)
        return ok & (fill >= band[0]) & (fill <= band[1])

    circle, square = within(bands.get("circle")), within(bands.get("square"))
    agree = torch.maximum(circle.float().mean(dim=1), square.float().mean(dim=1))
    kept = fill[ok]
    reading = read_shapes(measures, pixels)
    nearest = torch.maximum(measures["iou_circle"], measures["iou_square"])[ok]
    return {
        "single_object": float(ok.float().mean()),
        "circle_like": float(circle.float().mean()),
        "square_like": float(square.float().mean()),
        "recognisable": float((circle | square).float().mean()),
        "videos_recognisable": float((agree >= VIDEO_AGREEMENT).float().mean()),
        "fill_median": float(kept.median()) if kept.numel() else float("nan"),
        "read_circle": float((reading == READ_CIRCLE).float().mean()),
        "read_square": float((reading == READ_SQUARE).float().mean()),
        "read_shape": float((reading != READ_NEITHER).float().mean()),
        "template_iou_median": float(nearest.median()) if nearest.numel() else float("nan"),
    }


READ_IOU = 0.9  # least IoU with the nearer template to read a shape (clean: >= 0.97; cross: 0.84)
READ_NEITHER, READ_CIRCLE, READ_SQUARE = 0, 1, 2


def read_shapes(measures: dict[str, Tensor], pixels: int, min_iou: float = READ_IOU) -> Tensor:
    """Per frame (long, like the measures): READ_CIRCLE or READ_SQUARE when the frame shows one
    compact object nearer that template, at IoU >= min_iou (0: whichever is nearer);
    READ_NEITHER otherwise."""
    ok = single_object(measures, pixels)
    ic, isq = measures["iou_circle"], measures["iou_square"]
    shape = torch.where(ic >= isq, READ_CIRCLE, READ_SQUARE)
    return torch.where(ok & (torch.maximum(ic, isq) >= min_iou), shape, READ_NEITHER)


__all__ += [
    "FIGURE_THRESHOLD",
    "FILL_CIRCLE",
    "FILL_SQUARE",
    "FILL_SPLIT",
    "READ_CIRCLE",
    "READ_IOU",
    "READ_NEITHER",
    "READ_SQUARE",
    "figure_masks",
    "fill_bands",
    "interior",
    "object_colours",
    "object_masks",
    "read_shapes",
    "shape_fill",
    "shape_recognisability",
    "single_object",
]
