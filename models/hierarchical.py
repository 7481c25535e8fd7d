"""Hierarchical long-term video prediction (Villegas, Yang, Zou, Sohn, Lin & Lee, ICML 2017).

Pixel-level recurrent predictors blur within a second, because every predicted frame is fed
back and its errors compound. Villegas et al. predict the future of a low-dimensional
*structure* instead, 2-D keypoints p_t (K, 2), and draw every future frame from the last
observed frame by analogy, so no pixel error compounds:

    observed frames x_1..x_T ──detector──► p_1..p_T ──pose LSTM──► p̂_{T+1}, ..., p̂_{T+K'}
    x̂_{T+k} = G(x_T, p_T, p̂_{T+k})                          (image analogy, every k alike)

**Pose LSTM** (`PoseLSTM`). Keypoints in unit coordinates u = 2 p / (size - 1) - 1 ∈ [-1, 1],
with a visibility bit per joint (NaN keypoints = missing joints) -> a small linear layer -> an
LSTM -> a linear readout of the *change* of every joint:

    e_t = W_e [u_t (2K, NaN -> 0), v_t (K)] + b_e         v_t = 1 where joint visible
    h_t, c_t = LSTM(e_t, (h_{t-1}, c_{t-1}))
    û_{t+1} = ū_t + W_o h_t + b_o                           ū_t: each joint's last seen position

It reads the observed poses, then runs on a zero input (`pose_feedback="zeros"`, the official
code's and hierarchical.yaml's), the LSTM state alone carrying the motion, or on its own
predictions (`"own"`); any horizon works either way (trained 10 -> 32, run to 64-128 at
test). Loss: L2 over the visible joints of the target only.

**Image analogy** (`AnalogyGenerator`). Poses are drawn as Gaussian heatmaps P(p) (one map per
joint, one per limb: exp(-d² / 2σ²) with d the distance to the joint or the limb's segment).
With the same encoder pyramid shape for image and pose (features at 1, 1/2, 1/4, 1/8 scale):

    h^s = f^s_img(x_t) + f^s_pose(P(p_{t+n})) - f^s_pose(P(p_t))     at every scale s
    x̂_{t+n} = dec(h^0, ..., h^3)                                     (U-Net style decoder)

Here the analogy is applied at every scale of the U-Net's skip connections
(`analogy_scales="all"`, the default); the official code applies it at the bottleneck only,
to an encoder-decoder without skips (`"bottleneck"`: h^3 alone reaches the decoder). With
p_{t+n} = p_t the pose terms cancel exactly and G is an autoencoder of x_t. Losses: L2
‖x̂ - x_{t+n}‖², a feature loss (VGG16 relu3_3, only when the user supplies the weights file:
`feature_weights`) and an adversarial loss from a discriminator D on (image, pose map) pairs,
for which a generated image with its target pose and a real image with *another* sample's pose
are both fake (so the generator must draw the pose it was asked for). Pairs (t, t + n) come
from one clip, n uniform in [0, max_offset].

**Structure** (`structure=`):
- `landmarks`: keypoints stored with the videos (stick figures, labelled data). A keypoint
  detector (heatmaps -> soft-argmax) is trained on them beside the generator, so the predictor
  needs frames only at test time (the paper used a pretrained Hourglass network instead).
- `learned`: no labels. The detector is a keypoint bottleneck (Jakab et al. 2018, Minderer et
  al. 2019): image -> K heatmaps -> soft-argmax -> (x, y) -> Gaussian maps, trained only by the
  analogy generator's reconstruction of x_{t+n} from x_t and the keypoints of both frames.
- `keypointrcnn`: torchvision's Keypoint R-CNN (COCO, 17 keypoints, mapped to the 13 of Penn
  Action) labels the frames, frozen; its weights must be on disk (`keypointrcnn_weights`).

**Defaults and the paper** (configs/model/hierarchical_paper.yaml picks every paper value):

| option | default | the paper / official code | why the default |
|---|---|---|---|
| `adversarial_weight` | 0.01 | 1 (train_penn.py `gamma`) | see below |
| `pose_feedback` | zeros (measured) | zeros (det_lstm.py) | see below |
| `heatmap_sigma` | 0.025 | 0.0625 (σ = 8 px at 128 px) | see below |
| `analogy_scales` | all | bottleneck (model_analogy.py) | see below |
| `adversarial_to_detector` | true | (a frozen, pretrained detector) | see below |

`pose_feedback` was measured: on stick figures (300 videos of 60 frames, 64x64, 30 held out),
the pose LSTM alone (256 units, batch 32, 400 steps on the CPU, seeds 0 and 1) predicts the
held-out poses 10 -> 50 with a mean error of 2.85 / 2.84 px over steps 1-32 and 3.24 / 3.42 px
over 33-50 fed zeros, against 3.14 / 3.05 and 4.04 / 3.85 px fed its own predictions
(copy-last: 3.47 and 3.98 px), and trains 1.5x faster (one LSTM call for the whole rollout).
So hierarchical.yaml feeds zeros; a config without the key (a checkpoint made before it
existed) keeps feeding its own predictions, as it was trained. The other defaults are this
implementation's first choices, not measured against the paper's yet
(`MODELS='landmarks paper' bash bench/gpu/hierarchical.sh` trains both). The reasons they were
chosen: the official adversarial weight sits next to a loss of twice this L2's scale
(0.5 · mean over [-1, 1] pixels) *and* two feature losses (AlexNet and Hourglass features);
here the feature loss is optional (VGG16 weights the user supplies), and at 1 the adversarial
term would dominate the bare L2 from the first step, so it is a light sharpening term instead.
Narrow heatmaps are about as wide as the 64x64 stick figures' limbs (σ = 1.6 px against limbs
of about 1.9 px; the official 8 px at 128 px is 4 px at 64). The analogy at
every scale lets the U-Net's skips carry x_t's fine detail together with the pose change; the
bottleneck-only encoder-decoder must redraw every pixel from 1/8-scale features (8x8 at 64
px). In learned-keypoint mode the adversarial gradient shapes the keypoints as well as the
generator; `false` stops it there (the adversarial loss then trains the generator and the
discriminator only), as the paper's frozen detector never saw it.

**Stages** (`stage=`): `pose` trains the LSTM, `analogy` the generator (+ detector and
discriminator), `both` does one step of each per batch. Every optimiser exists in every
stage, so stages run in sequence in one run directory with `trainer.resume=true`.

Shapes: B batch, T observed, S predicted steps, K keypoints, P = K + limbs pose-map channels,
(C, H, W) a frame in [0, 1]. Keypoints are (x, y) pixel coordinates (x = column, y = row,
pixel centres at integers), NaN where missing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.task import MissingWeights, TrainingTask, UpdateFn, family_config

LSTMState = tuple[Tensor, Tensor]

# The 13 joints of Penn Action (the stick-figure dataset uses the same order) and the 14 limbs
# drawn between them (pipeline/datasets/stick_figures.py: JOINTS, LIMBS; a test keeps them equal).
PENN_JOINTS: tuple[str, ...] = (
    "head",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
PENN_LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2),
    (7, 8),
    (1, 7),
    (2, 8),
    (0, 1),
    (0, 2),
    (1, 3),
    (3, 5),
    (2, 4),
    (4, 6),
    (7, 9),
    (9, 11),
    (8, 10),
    (10, 12),
)
# COCO keypoint index of each Penn joint (the head is COCO's nose).
COCO_TO_PENN: tuple[int, ...] = (0, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16)
KEYPOINTRCNN_FILE = "keypointrcnn_resnet50_fpn_coco-fc266e95.pth"
KEYPOINTRCNN_URL = f"https://download.pytorch.org/models/{KEYPOINTRCNN_FILE}"
VGG16_FILE = "vgg16-397923af.pth"


@dataclass
class HierarchicalConfig:
    """Options of the family; the fields are the keys of configs/model/hierarchical.yaml."""

    name: str = "hierarchical"  # registry key (models.FAMILIES)
    frame_size: int = 64  # H = W of a frame, in pixels (a multiple of 8)
    channels: int = 3  # C
    structure: str = "landmarks"  # "landmarks" | "learned" | "keypointrcnn" (module doc)
    stage: str = "both"  # "pose" | "analogy" | "both": which networks a training step updates
    num_keypoints: int = 13  # K: the store's joints (landmarks), the bottleneck's (learned)
    limbs: bool = True  # also draw the 14 Penn Action limbs as heatmaps (needs K = 13, labels)
    context: int = 10  # T: observed frames (poses) before the pose LSTM predicts
    horizon: int = 32  # S: future poses the pose LSTM is trained on (any horizon at test)
    pose_embed: int = 128  # width of the linear layer between keypoints and the LSTM
    pose_hidden: int = 1024  # LSTM units per layer (the paper: 1024)
    pose_layers: int = 1  # stacked LSTM layers
    heatmap_sigma: float = 0.025  # σ of the Gaussian joint/limb maps, fraction of frame_size
    # pose LSTM input after the observed poses: "own" | "zeros" (hierarchical.yaml: zeros,
    # measured; "own" here for checkpoints made before the option, trained that way)
    pose_feedback: str = "own"
    analogy_scales: str = "all"  # pose analogy at "all" scales (U-Net) | the "bottleneck" only
    adversarial_to_detector: bool = True  # learned: the adversarial gradient reaches the detector
    gen_channels: int = 64  # generator width at full resolution (x1, x2, x4, x4 per scale)
    detector_channels: int = 32  # keypoint detector width (landmarks, learned)
    disc_channels: int = 64  # discriminator width
    max_offset: int = 32  # analogy pairs (t, t+n): n uniform in [0, max_offset] (<= clip - 1)
    l2_weight: float = 1.0  # weight of the pixel L2 loss of the analogy
    feature_weights: str | None = None  # VGG16 state dict (.pth): turns the feature loss on
    feature_weight: float = 1.0  # weight of that feature loss (only with feature_weights)
    adversarial_weight: float = 0.01  # generator's adversarial loss weight; 0: no discriminator
    detector_weight: float = 1.0  # landmarks: weight of the detector's supervised keypoint loss
    keypointrcnn_weights: str | None = None  # keypointrcnn: path of torchvision's COCO weights
    keypointrcnn_score: float = 0.5  # keypointrcnn: minimum person score of a detection
    lr: float = 2e-4  # Adam learning rate of generator, detector and discriminator
    pose_lr: float = 1e-3  # Adam learning rate of the pose LSTM

    def __post_init__(self) -> None:
        choices = {
            "structure": ("landmarks", "learned", "keypointrcnn"),
            "stage": ("pose", "analogy", "both"),
            "pose_feedback": ("own", "zeros"),
            "analogy_scales": ("all", "bottleneck"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"model.{key}={getattr(self, key)!r}: expected one of {allowed}")
        for key in ("channels", "context", "horizon", "num_keypoints", "pose_embed", "pose_hidden"):
            if getattr(self, key) < 1:
                raise ValueError(f"model.{key}={getattr(self, key)} must be at least 1")
        if self.frame_size < 16 or self.frame_size % 8:
            raise ValueError(f"model.frame_size={self.frame_size}: a multiple of 8, at least 16")
        if self.structure == "keypointrcnn" and self.num_keypoints != len(PENN_JOINTS):
            raise ValueError("model.structure=keypointrcnn gives the 13 Penn Action joints")
        if self.max_offset < 0 or self.heatmap_sigma <= 0:
            raise ValueError("model.max_offset must be >= 0 and model.heatmap_sigma > 0")

    @property
    def limb_pairs(self) -> tuple[tuple[int, int], ...]:
        """Limbs drawn as heatmaps: the Penn skeleton for 13 labelled joints, else none."""
        labelled = self.structure != "learned" and self.num_keypoints == len(PENN_JOINTS)
        return PENN_LIMBS if self.limbs and labelled else ()

    @property
    def sigma_px(self) -> float:
        return self.heatmap_sigma * self.frame_size


# ---------------------------------------------------------------------------------------------
# Keypoints <-> heatmaps


def to_unit(keypoints: Tensor, size: int) -> Tensor:
    """(x, y) pixels -> [-1, 1] (pixel centres 0 and size - 1 at -1 and 1); NaN stays NaN."""
    return keypoints * (2.0 / (size - 1)) - 1.0


def from_unit(u: Tensor, size: int) -> Tensor:
    """The inverse of to_unit."""
    return (u + 1.0) * ((size - 1) / 2.0)


def visible(keypoints: Tensor) -> Tensor:
    """(..., K, 2) -> (..., K) bool: the joint has finite coordinates."""
    return torch.isfinite(keypoints).all(dim=-1)


def gaussian_maps(
    keypoints: Tensor,
    size: int,
    sigma: float,
    limbs: tuple[tuple[int, int], ...] = (),
) -> Tensor:
    """Pose heatmaps (..., K + L, size, size) of keypoints (..., K, 2) (x, y) pixels.

    Joint k: exp(-((x - x_k)² + (y - y_k)²) / 2σ²) (separable); limb (i, j): exp(-d² / 2σ²),
    d the distance to the segment from joint i to joint j. A missing (NaN) joint draws an empty
    map, and so do the limbs that touch it. Differentiable in the keypoints (learned structure).
    """
    keypoints = keypoints.float()
    vis = visible(keypoints)  # (..., K)
    kp = torch.where(vis.unsqueeze(-1), keypoints, torch.zeros_like(keypoints))
    grid = torch.arange(size, device=kp.device, dtype=kp.dtype)
    inv = -0.5 / sigma**2
    gx = torch.exp(inv * (grid - kp[..., 0:1]) ** 2)  # (..., K, W)
    gy = torch.exp(inv * (grid - kp[..., 1:2]) ** 2)  # (..., K, H)
    joints = gy.unsqueeze(-1) * gx.unsqueeze(-2) * vis[..., None, None].to(kp.dtype)
    if not limbs:
        return joints
    i, j = (torch.tensor(idx, device=kp.device) for idx in zip(*limbs))
    a, b = kp[..., i, :], kp[..., j, :]  # (..., L, 2)
    ys, xs = torch.meshgrid(grid, grid, indexing="ij")
    pix = torch.stack([xs, ys], dim=-1)  # (H, W, 2) as (x, y)
    ab = (b - a)[..., None, None, :]  # (..., L, 1, 1, 2)
    ap = pix - a[..., None, None, :]  # (..., L, H, W, 2)
    s = ((ap * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-6)).clamp(0.0, 1.0)
    d2 = (ap - s.unsqueeze(-1) * ab).square().sum(-1)
    limb_vis = (vis[..., i] & vis[..., j])[..., None, None].to(kp.dtype)
    return torch.cat([joints, torch.exp(inv * d2) * limb_vis], dim=-3)


def soft_argmax(logits: Tensor, stride: int = 1) -> Tensor:
    """Expected (x, y) (..., K, 2) in pixels under softmax(logits) over each map (..., K, h, w).

    Cell (i, j) of a map at `stride` covers pixels [j·s, (j+1)·s) x [i·s, (i+1)·s) and sits at
    its centre (j·s + (s - 1)/2, i·s + (s - 1)/2). Differentiable (Jakab et al.'s bottleneck)."""
    h, w = logits.shape[-2:]
    probs = logits.float().flatten(-2).softmax(-1).unflatten(-1, (h, w))
    offset = (stride - 1) / 2.0
    xs = torch.arange(w, device=logits.device, dtype=probs.dtype) * stride + offset
    ys = torch.arange(h, device=logits.device, dtype=probs.dtype) * stride + offset
    x = (probs.sum(-2) * xs).sum(-1)
    y = (probs.sum(-1) * ys).sum(-1)
    return torch.stack([x, y], dim=-1)


def heatmap_keypoints(maps: Tensor) -> Tensor:
    """Centre of mass (x, y) (..., K, 2) of non-negative heatmaps (..., K, H, W) (the inverse
    of gaussian_maps for joints away from the border); NaN for an empty map."""
    maps = maps.float().clamp_min(0.0)
    total = maps.sum(dim=(-2, -1))
    h, w = maps.shape[-2:]
    xs = torch.arange(w, device=maps.device, dtype=maps.dtype)
    ys = torch.arange(h, device=maps.device, dtype=maps.dtype)
    x = (maps.sum(-2) * xs).sum(-1) / total
    y = (maps.sum(-1) * ys).sum(-1) / total
    out = torch.stack([x, y], dim=-1)
    return torch.where((total > 0).unsqueeze(-1), out, torch.full_like(out, float("nan")))


def masked_l2(pred: Tensor, target: Tensor) -> Tensor:
    """Mean over visible target joints of the squared error summed over (x, y): targets
    (..., K, 2) may hold NaN (missing joints), which contribute nothing."""
    mask = visible(target)
    diff = (pred.float() - torch.nan_to_num(target.float())).square().sum(-1)
    return (diff * mask).sum() / mask.sum().clamp_min(1)


# ---------------------------------------------------------------------------------------------
# Networks


def conv_block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.2))


class PoseLSTM(nn.Module):
    """Observed keypoints -> small linear layer -> LSTM -> future keypoints (module doc).

    Works in unit coordinates (to_unit); `forward(u_obs (B, T, K, 2), horizon)` -> (B, S, K, 2).
    `feedback`: what the LSTM reads after the observed poses, "own" (its predictions, embedded)
    or "zeros" (a zero input: the official code's).
    """

    def __init__(
        self, num_keypoints: int, embed: int, hidden: int, layers: int, feedback: str = "own"
    ) -> None:
        super().__init__()
        self.num_keypoints = num_keypoints
        self.feedback = feedback
        self.embed = nn.Linear(3 * num_keypoints, embed)
        self.lstm = nn.LSTM(embed, hidden, layers, batch_first=True)
        self.readout = nn.Linear(hidden, 2 * num_keypoints)
        # Zero readout: an untrained LSTM predicts "no motion" (copy-last pose), a sane start.
        nn.init.zeros_(self.readout.weight)
        nn.init.zeros_(self.readout.bias)

    def inputs(self, u: Tensor) -> Tensor:
        """(B, T, K, 2) unit keypoints, NaN = missing -> embedded inputs (B, T, embed)."""
        vis = visible(u)
        coords = torch.where(vis.unsqueeze(-1), u, torch.zeros_like(u)).flatten(-2)
        return self.embed(torch.cat([coords, vis.to(coords.dtype)], dim=-1))

    def observe(self, u: Tensor, state: LSTMState | None = None) -> tuple[Tensor, LSTMState]:
        """Read poses (B, T, K, 2); returns top-layer outputs (B, T, hidden) and the state."""
        return self.lstm(self.inputs(u), state)

    def delta(self, h: Tensor) -> Tensor:
        return self.readout(h).unflatten(-1, (self.num_keypoints, 2))

    def rollout(self, state: LSTMState, h_last: Tensor, base: Tensor, horizon: int) -> Tensor:
        """Predict `horizon` poses (B, S, K, 2) from the state after the last observed pose,
        its top output h_last (B, hidden) and each joint's last seen position `base`."""
        u = base + self.delta(h_last).to(base.dtype)
        if self.feedback == "zeros" and horizon > 1:
            # û_{k+1} = û_k + W_o h_k, h_k from zero inputs: every input known, one LSTM call
            zeros = h_last.new_zeros(h_last.shape[0], horizon - 1, self.lstm.input_size)
            out, _ = self.lstm(zeros, state)  # (B, S - 1, hidden)
            steps = self.delta(out).to(base.dtype).cumsum(1)  # (B, S - 1, K, 2)
            return torch.cat([u.unsqueeze(1), u.unsqueeze(1) + steps], dim=1)
        preds = []
        for k in range(horizon):
            preds.append(u)
            if k + 1 == horizon:
                break
            out, state = self.lstm(self.inputs(u.unsqueeze(1)), state)
            u = u + self.delta(out[:, 0]).to(u.dtype)
        return torch.stack(preds, dim=1)

    def forward(self, u_obs: Tensor, horizon: int) -> Tensor:
        out, state = self.observe(u_obs)
        return self.rollout(state, out[:, -1], last_seen(u_obs), horizon)


def last_seen(u: Tensor) -> Tensor:
    """(B, T, K, 2) -> (B, K, 2): each joint's last finite position (0 if never seen)."""
    base = torch.zeros_like(u[:, 0])
    for t in range(u.shape[1]):
        base = torch.where(visible(u[:, t]).unsqueeze(-1), u[:, t], base)
    return base


class PyramidEncoder(nn.Module):
    """Image (N, Cin, H, W) -> features at scales 1, 1/2, 1/4, 1/8: widths (c, 2c, 4c, 4c)."""

    def __init__(self, cin: int, c: int) -> None:
        super().__init__()
        self.widths = (c, 2 * c, 4 * c, 4 * c)
        w = self.widths
        self.stages = nn.ModuleList(
            [nn.Sequential(conv_block(cin, w[0]), conv_block(w[0], w[0]))]
            + [
                nn.Sequential(conv_block(w[i - 1], w[i], stride=2), conv_block(w[i], w[i]))
                for i in range(1, 4)
            ]
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class PyramidDecoder(nn.Module):
    """Features at 4 scales -> frame (N, C, H, W) in [0, 1]: upsample, concatenate the skip,
    convolve; a sigmoid output. `skips=False`: an encoder-decoder that reads the coarsest
    features only (feats[3]; the finer ones may be None)."""

    def __init__(self, widths: tuple[int, ...], channels: int, skips: bool = True) -> None:
        super().__init__()
        self.skips = skips
        self.ups = nn.ModuleList(
            nn.Sequential(
                conv_block(widths[i + 1] + (widths[i] if skips else 0), widths[i]),
                conv_block(widths[i], widths[i]),
            )
            for i in range(3)
        )
        self.out = nn.Conv2d(widths[0], channels, 3, padding=1)

    def forward(self, feats: list[Tensor | None]) -> Tensor:
        x = feats[3]
        assert x is not None
        for i in (2, 1, 0):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            skip = feats[i]
            x = self.ups[i](torch.cat([x, skip], dim=1) if self.skips and skip is not None else x)
        return torch.sigmoid(self.out(x))


class AnalogyGenerator(nn.Module):
    """x̂_{t+n} = dec(f_img(x_t) + f_pose(P_{t+n}) - f_pose(P_t)) at every scale (module doc);
    `scales="bottleneck"`: at the coarsest scale only, decoded without skips (official code)."""

    def __init__(self, channels: int, pose_channels: int, width: int, scales: str = "all") -> None:
        super().__init__()
        self.scales = scales
        self.f_img = PyramidEncoder(channels, width)
        self.f_pose = PyramidEncoder(pose_channels, width)
        self.dec = PyramidDecoder(self.f_img.widths, channels, skips=scales == "all")

    def forward(self, frame: Tensor, pose_from: Tensor, pose_to: Tensor) -> Tensor:
        """frame (N, C, H, W) in [0, 1]; pose maps (N, P, H, W) of its pose and the target's."""
        n = frame.shape[0]
        pose_feats = self.f_pose(torch.cat([pose_to, pose_from]).to(frame.dtype))
        feats: list[Tensor | None] = [
            img + pf[:n] - pf[n:] for img, pf in zip(self.f_img(frame), pose_feats, strict=True)
        ]
        if self.scales == "bottleneck":
            feats[:3] = [None, None, None]
        return self.dec(feats)


class PairDiscriminator(nn.Module):
    """(image, pose maps) -> one logit per pair: real iff the image is real *and* shows the pose.
    Patch logits (stride 8) averaged."""

    def __init__(self, channels: int, pose_channels: int, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            conv_block(channels + pose_channels, width, stride=2),
            conv_block(width, 2 * width, stride=2),
            conv_block(2 * width, 4 * width, stride=2),
            nn.Conv2d(4 * width, 1, 3, padding=1),
        )

    def forward(self, frame: Tensor, pose_maps: Tensor) -> Tensor:
        return self.net(torch.cat([frame, pose_maps.to(frame.dtype)], dim=1)).mean(dim=(1, 2, 3))


class KeypointDetector(nn.Module):
    """Frame (N, C, H, W) -> K heatmap logits at 1/4 resolution -> soft-argmax -> (N, K, 2)
    (x, y) pixels. Supervised (landmarks) or the unsupervised bottleneck (learned)."""

    stride = 4

    def __init__(self, channels: int, num_keypoints: int, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            conv_block(channels, width),
            conv_block(width, width, stride=2),
            conv_block(width, 2 * width),
            conv_block(2 * width, 2 * width, stride=2),
            conv_block(2 * width, 4 * width),
            conv_block(4 * width, 4 * width),
            nn.Conv2d(4 * width, num_keypoints, 1),
        )

    def forward(self, frames: Tensor) -> Tensor:
        return soft_argmax(self.net(frames), self.stride)


def missing_weights(name: str, given: str | None, default: str | None) -> MissingWeights:
    """The error for pretrained weights not on disk: what to download and where to put it.

    `name`: "keypointrcnn" or "features"; `given`: the user's option (a path, or None);
    `default`: where the Keypoint R-CNN file was looked for when `given` is None."""
    if name == "features":
        return MissingWeights(
            f"model.feature_weights={given} does not exist: give the path of torchvision's "
            f"VGG16 ImageNet weights ({VGG16_FILE} from https://download.pytorch.org/"
            "models/), or set model.feature_weights=null to train without the feature loss"
        )
    where = f"model.keypointrcnn_weights={given} does not exist" if given else "no weights found"
    put = f"put it at {default}" if default else "put it in PyTorch Hub's checkpoints directory"
    return MissingWeights(
        f"model.structure=keypointrcnn needs torchvision's Keypoint R-CNN weights ({where}). "
        f"Download {KEYPOINTRCNN_URL} on a machine with internet access and either {put} "
        f"or pass its path as model.keypointrcnn_weights=/path/to/{KEYPOINTRCNN_FILE}. "
        "Without labels, use model.structure=learned instead."
    )


class KeypointRCNNDetector(nn.Module):
    """Frozen torchvision Keypoint R-CNN: frames (N, 3, H, W) in [0, 1] -> (N, 13, 2) Penn
    joints (x, y) of the highest-scoring person; NaN where nobody scores >= `min_score`."""

    def __init__(self, state_dict: dict[str, Tensor], min_score: float = 0.5) -> None:
        super().__init__()
        from torchvision.models.detection import keypointrcnn_resnet50_fpn

        model = keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None)
        model.load_state_dict(state_dict)
        self.model = model.eval().requires_grad_(False)
        self.min_score = min_score

    def train(self, mode: bool = True) -> KeypointRCNNDetector:
        return super().train(False)  # always in inference mode

    @torch.no_grad()
    def forward(self, frames: Tensor) -> Tensor:
        if frames.shape[1] == 1:
            frames = frames.expand(-1, 3, -1, -1)
        out = torch.full((len(frames), len(COCO_TO_PENN), 2), float("nan"), device=frames.device)
        index = torch.tensor(COCO_TO_PENN, device=frames.device)
        for n, det in enumerate(self.model(list(frames.float()))):
            if len(det["scores"]) and det["scores"][0] >= self.min_score:
                out[n] = det["keypoints"][0, index, :2]
        return out


class VGGFeatures(nn.Module):
    """Frozen VGG16 up to relu3_3, for the feature (perceptual) loss; `state_dict`: the
    ImageNet weights of torchvision's vgg16 (loaded from the user's file by the pipeline)."""

    def __init__(self, state_dict: dict[str, Tensor]) -> None:
        super().__init__()
        from torchvision.models import vgg16

        vgg = vgg16(weights=None)
        vgg.load_state_dict(state_dict)
        self.features = vgg.features[:16].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.features((x - self.mean.to(x.dtype)) / self.std.to(x.dtype))


# ---------------------------------------------------------------------------------------------
# The predictor (inference): the shared predictor interface


class HierarchicalPredictor(nn.Module):
    """Detector + pose LSTM + analogy generator, for evaluate / predict / serve / stream.

    `predict(observed (B, T, C, H, W), horizon)` -> (B, horizon, C, H, W) in [0, 1];
    `forecast` also returns the predicted keypoints; `render` draws frames for given poses
    (the oracle "analogy given the true future poses"); `stream()` runs incrementally.
    """

    RENDER_CHUNK = 8  # future steps rendered per generator call (bounds memory at long horizons)

    def __init__(
        self,
        cfg: HierarchicalConfig,
        detector: nn.Module,
        pose: PoseLSTM,
        generator: AnalogyGenerator,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.detector = detector
        self.pose = pose
        self.generator = generator
        # Predicted keypoints are in the labelled layout (PCK against the store's is meaningful).
        self.predicts_keypoints = cfg.structure != "learned"

    @torch.no_grad()
    def detect(self, frames: Tensor) -> Tensor:
        """Keypoints (..., K, 2) (x, y) pixels of frames (..., C, H, W)."""
        self.detector.to(frames.device)
        flat = frames.flatten(0, -4)
        return self.detector(flat).float().unflatten(0, frames.shape[:-3])

    def pose_maps(self, keypoints: Tensor) -> Tensor:
        cfg = self.cfg
        return gaussian_maps(keypoints, cfg.frame_size, cfg.sigma_px, cfg.limb_pairs)

    @torch.no_grad()
    def render(self, last_frame: Tensor, last_pose: Tensor, future_poses: Tensor) -> Tensor:
        """Frames (B, S, C, H, W): x_T (B, C, H, W) with pose p_T (B, K, 2) moved to each of
        future_poses (B, S, K, 2) by analogy."""
        batch, steps = future_poses.shape[:2]
        maps_from = self.pose_maps(last_pose)
        out = []
        for s0 in range(0, steps, self.RENDER_CHUNK):
            chunk = future_poses[:, s0 : s0 + self.RENDER_CHUNK]  # (B, s, K, 2)
            n = chunk.shape[1]
            frames = last_frame.unsqueeze(1).expand(-1, n, -1, -1, -1).flatten(0, 1)
            maps_to = self.pose_maps(chunk.flatten(0, 1))
            maps_src = maps_from.unsqueeze(1).expand(-1, n, -1, -1, -1).flatten(0, 1)
            out.append(self.generator(frames, maps_src, maps_to).unflatten(0, (batch, n)))
        return torch.cat(out, dim=1).to(last_frame.dtype)

    @torch.no_grad()
    def predict_poses(self, observed_keypoints: Tensor, horizon: int) -> Tensor:
        """Future keypoints (B, S, K, 2) pixels from observed keypoints (B, T, K, 2)."""
        size = self.cfg.frame_size
        u = to_unit(observed_keypoints.float(), size)
        return from_unit(self.pose(u, horizon).float(), size)

    @torch.no_grad()
    def forecast(
        self, observed: Tensor, horizon: int, observed_keypoints: Tensor | None = None
    ) -> dict[str, Tensor]:
        """{"frames": (B, S, C, H, W), "keypoints": (B, S, K, 2), "observed_keypoints"}; the
        observed keypoints are detected unless given (e.g. the store's labels)."""
        kp = self.detect(observed) if observed_keypoints is None else observed_keypoints.float()
        future = self.predict_poses(kp, horizon)
        frames = self.render(observed[:, -1], kp[:, -1], future)
        return {"frames": frames, "keypoints": future, "observed_keypoints": kp}

    @torch.no_grad()
    def predict(self, observed: Tensor, horizon: int) -> Tensor:
        """Future frames (B, horizon, C, H, W) in [0, 1] from observed (B, T, C, H, W)."""
        return self.forecast(observed, horizon)["frames"]

    def stream(self, batch_size: int = 1) -> HierarchicalStream:
        return HierarchicalStream(self, batch_size)


class HierarchicalStream:
    """Incremental inference: `step(frame)` detects the frame's keypoints and advances the pose
    LSTM by one pose; `predict(h)` rolls the LSTM from the current state (unchanged) and draws
    h frames from the last frame by analogy. Over the same frames, step()... then predict(h)
    equals HierarchicalPredictor.predict(frames, h)."""

    def __init__(self, model: HierarchicalPredictor, batch_size: int = 1) -> None:
        self.model = model
        self.batch_size = batch_size
        self.state: LSTMState | None = None
        self.h_last: Tensor | None = None  # (B, hidden) top LSTM output after the last pose
        self.base: Tensor | None = None  # (B, K, 2) unit: each joint's last seen position
        self.last_frame: Tensor | None = None
        self.last_pose: Tensor | None = None  # (B, K, 2) pixels
        self.frames_seen = 0
        self.parts = [(batch_size, 0)]  # (batch size, frames seen) of the streams merged here

    @torch.no_grad()
    def step(self, frame: Tensor, keypoints: Tensor | None = None) -> None:
        """Feed one frame (B, C, H, W) in [0, 1] (and its keypoints (B, K, 2), else detected)."""
        if frame.shape[0] != self.batch_size:
            raise ValueError(f"frame batch {frame.shape[0]} != stream batch {self.batch_size}")
        kp = self.model.detect(frame) if keypoints is None else keypoints.float()
        u = to_unit(kp, self.model.cfg.frame_size)
        out, self.state = self.model.pose.observe(u.unsqueeze(1), self.state)
        self.h_last = out[:, 0]
        base = torch.zeros_like(u) if self.base is None else self.base
        self.base = torch.where(visible(u).unsqueeze(-1), u, base)
        self.last_frame, self.last_pose = frame, kp
        self.frames_seen += 1

    @torch.no_grad()
    def predict(self, horizon: int) -> Tensor:
        """The next `horizon` frames (B, horizon, C, H, W) in [0, 1]."""
        if self.state is None or self.h_last is None or self.base is None:
            raise RuntimeError("HierarchicalStream.predict() before any step(frame)")
        assert self.last_frame is not None and self.last_pose is not None
        u = self.model.pose.rollout(self.state, self.h_last, self.base, horizon)
        future = from_unit(u.float(), self.model.cfg.frame_size)
        return self.model.render(self.last_frame, self.last_pose, future)

    # Cross-session batching, as LSTMStream: row i of a merged stream is stream i.
    _ROWS = ("h_last", "base", "last_frame", "last_pose")  # (B, ...) tensors

    def batch_key(self) -> tuple[int]:
        """Streams with equal keys can merge (all started, or all fresh)."""
        return (min(self.frames_seen, 1),)

    @classmethod
    def merge(cls, streams: list[HierarchicalStream]) -> HierarchicalStream:
        """One stream whose batch is the streams' batches side by side (equal batch_key)."""
        merged = cls(streams[0].model, sum(s.batch_size for s in streams))
        if streams[0].state is not None:
            h, c = zip(*(s.state for s in streams if s.state is not None), strict=True)
            merged.state = (torch.cat(h, dim=1), torch.cat(c, dim=1))  # (layers, B, hidden)
            for name in cls._ROWS:
                setattr(merged, name, torch.cat([getattr(s, name) for s in streams]))
        merged.parts = [(s.batch_size, s.frames_seen) for s in streams]
        return merged

    def split(self) -> list[HierarchicalStream]:
        """The inverse of merge (copies, so the merged batch can be freed)."""
        out, start = [], 0
        for n, seen in self.parts:
            rows = slice(start, start + n)
            s = HierarchicalStream(self.model, n)
            if self.state is not None:
                s.state = (self.state[0][:, rows].clone(), self.state[1][:, rows].clone())
                for name in self._ROWS:
                    setattr(s, name, getattr(self, name)[rows].clone())
            s.frames_seen = seen + self.frames_seen  # its own count, plus steps taken merged
            out.append(s)
            start += n
        return out


# ---------------------------------------------------------------------------------------------
# The training task


class HierarchicalTask(TrainingTask):
    """Trains the pose LSTM and/or the analogy generator (with its detector and discriminator).

    Networks: "pose", "generator", "detector" (landmarks, learned), "discriminator" (when
    adversarial_weight > 0). Optimisers: "pose" (pose_lr), "generator" (generator + detector),
    "discriminator". A batch is {"frames", "keypoints"} for landmarks, else frames only.

    `pretrained` (not an option: never in `config()`) holds the state dicts of the frozen
    networks the options need, by the names of `pretrained_files`;
    `pipeline.runtime.checkpoint.build` loads them from the user's files.
    """

    default_files = {"keypointrcnn": KEYPOINTRCNN_FILE}  # in PyTorch Hub's checkpoint cache

    @staticmethod
    def pretrained_files(options: dict[str, Any]) -> dict[str, str | None]:
        files: dict[str, str | None] = {}
        if options.get("structure") == "keypointrcnn":
            files["keypointrcnn"] = options.get("keypointrcnn_weights")
        if options.get("feature_weights"):
            files["features"] = options["feature_weights"]
        return files

    missing_weights = staticmethod(missing_weights)

    def __init__(
        self, *, pretrained: dict[str, dict[str, Tensor]] | None = None, **options: Any
    ) -> None:
        self.cfg = cfg = family_config(HierarchicalConfig, "hierarchical", options)
        pretrained = pretrained or {}
        for name, given in self.pretrained_files(options).items():
            if name not in pretrained:
                raise missing_weights(name, given, None)
        self.clip_length = cfg.context + cfg.horizon
        self.needs_keypoints = cfg.structure == "landmarks"
        pose_channels = cfg.num_keypoints + len(cfg.limb_pairs)
        nets: dict[str, nn.Module] = {
            "pose": PoseLSTM(
                cfg.num_keypoints,
                cfg.pose_embed,
                cfg.pose_hidden,
                cfg.pose_layers,
                cfg.pose_feedback,
            ),
            "generator": AnalogyGenerator(
                cfg.channels, pose_channels, cfg.gen_channels, cfg.analogy_scales
            ),
        }
        if cfg.adversarial_weight > 0:
            nets["discriminator"] = PairDiscriminator(
                cfg.channels, pose_channels, cfg.disc_channels
            )
        # Frozen pretrained networks live outside `networks`: not checkpointed, built from the
        # user's weights on every build (they are moved to the batch's device on use).
        self.frozen_detector: nn.Module | None = None
        if cfg.structure == "keypointrcnn":
            self.frozen_detector = KeypointRCNNDetector(
                pretrained["keypointrcnn"], cfg.keypointrcnn_score
            )
        else:
            nets["detector"] = KeypointDetector(
                cfg.channels, cfg.num_keypoints, cfg.detector_channels
            )
        self.feature_net = VGGFeatures(pretrained["features"]) if cfg.feature_weights else None
        self.networks = nn.ModuleDict(nets)

    # ------------------------------------------------------------------ optimisers
    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.cfg
        gen_params = list(self.networks["generator"].parameters())
        if "detector" in self.networks:
            gen_params += list(self.networks["detector"].parameters())
        opts = {
            "pose": torch.optim.Adam(self.networks["pose"].parameters(), lr=cfg.pose_lr),
            "generator": torch.optim.Adam(gen_params, lr=cfg.lr, betas=(0.5, 0.999)),
        }
        if "discriminator" in self.networks:
            opts["discriminator"] = torch.optim.Adam(
                self.networks["discriminator"].parameters(), lr=cfg.lr, betas=(0.5, 0.999)
            )
        return opts

    # ------------------------------------------------------------------ helpers
    def detector(self) -> nn.Module:
        """The keypoint detector without any DDP wrapper (frozen R-CNN or the trained one)."""
        if self.frozen_detector is not None:
            return self.frozen_detector
        return self.unwrap("detector")

    def pose_maps(self, keypoints: Tensor) -> Tensor:
        cfg = self.cfg
        return gaussian_maps(keypoints, cfg.frame_size, cfg.sigma_px, cfg.limb_pairs)

    def _detect_all(self, frames: Tensor) -> Tensor:
        """Keypoints (B, L, K, 2) of every frame, without gradients (pose stage targets)."""
        det = self.detector().to(frames.device)
        with torch.no_grad():
            return det(frames.flatten(0, 1)).float().unflatten(0, frames.shape[:2])

    @staticmethod
    def _unpack(batch: Tensor | dict[str, Tensor]) -> tuple[Tensor, Tensor | None]:
        if isinstance(batch, dict):
            return batch["frames"], batch.get("keypoints")
        return batch, None

    # ------------------------------------------------------------------ steps
    def analogy_losses(
        self, frames: Tensor, keypoints: Tensor | None, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """Generator-side losses on random pairs (t, t+n) of each clip; also returns the pair
        ("fake", "target", "maps_to") for the discriminator step."""
        cfg = self.cfg
        batch, length = frames.shape[:2]
        dev = frames.device
        max_n = min(cfg.max_offset, length - 1)
        n = torch.randint(0, max_n + 1, (batch,), generator=generator).to(dev)
        t = (torch.rand(batch, generator=generator).to(dev) * (length - n)).long()
        rows = torch.arange(batch, device=dev)
        src, dst = frames[rows, t], frames[rows, t + n]
        terms: dict[str, Tensor] = {}
        if cfg.structure == "landmarks":
            if keypoints is None:
                raise ValueError("model.structure=landmarks needs keypoints in the batch")
            p_src, p_dst = keypoints[rows, t], keypoints[rows, t + n]
            detected = self.networks["detector"](torch.cat([src, dst]))
            target = to_unit(torch.cat([p_src, p_dst]), cfg.frame_size)
            terms["detector"] = masked_l2(to_unit(detected, cfg.frame_size), target)
        elif cfg.structure == "learned":
            p_src, p_dst = self.networks["detector"](torch.cat([src, dst])).chunk(2)
        else:
            with torch.no_grad():
                p_src, p_dst = self.detector().to(dev)(torch.cat([src, dst])).chunk(2)
        maps_from, maps_to = self.pose_maps(p_src), self.pose_maps(p_dst)
        fake = self.networks["generator"](src, maps_from, maps_to)
        terms["l2"] = F.mse_loss(fake.float(), dst.float())
        total = cfg.l2_weight * terms["l2"]
        if self.feature_net is not None:
            feats = self.feature_net.to(dev)
            terms["feature"] = F.mse_loss(feats(fake).float(), feats(dst).float())
            total = total + cfg.feature_weight * terms["feature"]
        if "discriminator" in self.networks:
            judged, judged_maps = fake, maps_to
            if cfg.structure == "learned" and not cfg.adversarial_to_detector:
                # the same image again from detached keypoints: the adversarial gradient trains
                # the generator, the L2 one alone shapes the keypoint detector
                judged_maps = maps_to.detach()
                judged = self.networks["generator"](src, maps_from.detach(), judged_maps)
            logits = self.networks["discriminator"](judged, judged_maps)
            terms["adversarial"] = F.binary_cross_entropy_with_logits(
                logits.float(), torch.ones_like(logits, dtype=torch.float32)
            )
            total = total + cfg.adversarial_weight * terms["adversarial"]
        if "detector" in terms:
            total = total + cfg.detector_weight * terms["detector"]
        terms["analogy"] = total
        terms["fake"], terms["target"], terms["maps_to"] = fake, dst, maps_to
        return terms

    def discriminator_loss(self, fake: Tensor, real: Tensor, maps: Tensor) -> Tensor:
        """Real pairs (x_{t+n}, P_{t+n}) -> 1; generated (x̂, P_{t+n}) and mismatched
        (x_{t+n}, P of another clip) -> 0 (each fake kind weighted 1/2)."""
        disc = self.networks["discriminator"]
        maps = maps.detach()

        def bce(logits: Tensor, value: float) -> Tensor:
            return F.binary_cross_entropy_with_logits(
                logits.float(), torch.full_like(logits, value, dtype=torch.float32)
            )

        real_loss = bce(disc(real, maps), 1.0)
        fake_loss = bce(disc(fake.detach(), maps), 0.0)
        mismatch_loss = bce(disc(real, maps.roll(1, dims=0)), 0.0)
        return real_loss + 0.5 * (fake_loss + mismatch_loss)

    def pose_loss(self, frames: Tensor, keypoints: Tensor | None) -> dict[str, Tensor]:
        """Masked L2 of the predicted future poses (unit coordinates) and the mean error in
        pixels; observed and future poses: the store's (landmarks) or detected."""
        cfg = self.cfg
        if keypoints is None:
            keypoints = self._detect_all(frames)
        u = to_unit(keypoints[:, : self.clip_length].float(), cfg.frame_size)
        observed, future = u[:, : cfg.context], u[:, cfg.context :]
        pred = self.networks["pose"](observed, future.shape[1]).float()
        loss = masked_l2(pred, future)
        with torch.no_grad():
            mask = visible(future)
            err = (pred - torch.nan_to_num(future)).norm(dim=-1) * ((cfg.frame_size - 1) / 2.0)
            px = (err * mask).sum() / mask.sum().clamp_min(1)
        return {"pose": loss, "pose_error_px": px}

    def training_step(
        self, batch: Tensor | dict[str, Tensor], step: int, update: UpdateFn
    ) -> dict[str, float]:
        """One step of the configured stage(s) on clips (B, context + horizon, C, H, W).

        Logs: "loss" (analogy objective + pose loss of the stages run), "l2", "adversarial",
        "feature", "detector", "discriminator" (analogy); "pose", "pose_error_px" (pose)."""
        frames, keypoints = self._unpack(batch)
        if frames.shape[1] < self.clip_length:
            raise ValueError(
                f"clip of {frames.shape[1]} frames, need context + horizon = {self.clip_length}"
            )
        cfg = self.cfg
        logs: dict[str, Tensor] = {}
        total = frames.new_zeros((), dtype=torch.float32)
        if cfg.stage in ("analogy", "both"):
            terms = self.analogy_losses(frames, keypoints)
            update(terms["analogy"], "generator")
            if "discriminator" in self.networks:
                d_loss = self.discriminator_loss(terms["fake"], terms["target"], terms["maps_to"])
                update(d_loss, "discriminator")
                logs["discriminator"] = d_loss
            for k in ("l2", "adversarial", "feature", "detector"):
                if k in terms:
                    logs[k] = terms[k]
            total = total + terms["analogy"].float()
        if cfg.stage in ("pose", "both"):
            terms = self.pose_loss(frames, keypoints)
            update(terms["pose"], "pose")
            logs.update(terms)
            total = total + terms["pose"].float()
        logs["loss"] = total
        names = list(logs)
        values = torch.stack([logs[k].detach().float() for k in names]).tolist()  # one sync
        return dict(zip(names, values))

    def inference_model(self) -> HierarchicalPredictor:
        return HierarchicalPredictor(
            self.cfg, self.detector(), self.unwrap("pose"), self.unwrap("generator")
        )

    def config(self) -> dict[str, Any]:
        return asdict(self.cfg)


__all__ = [
    "AnalogyGenerator",
    "COCO_TO_PENN",
    "HierarchicalConfig",
    "HierarchicalPredictor",
    "HierarchicalStream",
    "HierarchicalTask",
    "KeypointDetector",
    "KeypointRCNNDetector",
    "MissingWeights",
    "PENN_JOINTS",
    "PENN_LIMBS",
    "PairDiscriminator",
    "PoseLSTM",
    "from_unit",
    "gaussian_maps",
    "heatmap_keypoints",
    "missing_weights",
    "last_seen",
    "masked_l2",
    "soft_argmax",
    "to_unit",
    "visible",
]
