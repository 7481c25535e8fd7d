"""A small 3-D convolutional video classifier, trained by framecast on real labelled videos.

It is the measuring instrument of generator evaluation (MoCoGAN, Tulyakov et al. 2018): the
accuracy of its predictions on generated videos against the category they were generated for,
the Inception Score of its posteriors p(y | x) = softmax(logits), and the Fréchet distance of
generated vs real videos in its feature space (`pipeline/stages/evaluate/generator.py`).
Trained on motion categories, its features encode motion more than content, so they are not
ACD's descriptor (ACD uses the object's colour). Trained with
`framecast train model=video_classifier store=...` on a store whose videos carry a "label".

    (B, T, C, S, S) in [0, 1] -> (B, C, T, S, S) -> `levels` blocks of
        Conv3d 3x3x3, stride (1, 2, 2), padding 1 -> BatchNorm3d -> ReLU
    down to a 4x4 map (S = 64: 32 @ 32x32, 64 @ 16x16, 128 @ 8x8, 128 @ 4x4 with width 32)
    -> spatial mean: per-frame features (B, T, D) -> temporal mean: clip features (B, D)
    -> dropout -> Linear -> logits (B, K)

Time keeps its length through every layer (each output frame sees 2·levels + 1 input frames),
so any clip length works at inference and every frame has a feature vector of its own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.task import TrainingTask, UpdateFn, family_config


@dataclass
class VideoClassifierConfig:
    """Options of the family; the fields are the keys of configs/model/video_classifier.yaml."""

    name: str = "video_classifier"  # registry key (models.FAMILIES)
    frame_size: int = 64  # S = H = W of a frame: a power of two >= 8
    channels: int = 3  # C: 3 for RGB, 1 for Moving MNIST
    length: int = 16  # T: frames of a training clip (inference takes any length)
    num_categories: int = 6  # K: classes (the store's distinct "label" values); >= 2
    width: int = 32  # channels of the first block (x2 per block, at most x4)
    dropout: float = 0.2  # dropout on the clip features before the linear head
    lr: float = 1e-3  # Adam learning rate
    weight_decay: float = 0.0  # Adam L2 weight decay

    def __post_init__(self) -> None:
        size = self.frame_size
        if size < 8 or size & (size - 1):
            raise ValueError(f"model.frame_size={size} must be a power of two >= 8")
        for key in ("channels", "length", "width"):
            if getattr(self, key) < 1:
                raise ValueError(f"model.{key}={getattr(self, key)} must be at least 1")
        if self.num_categories < 2:
            raise ValueError(
                f"model.num_categories={self.num_categories}: a classifier needs >= 2 categories"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout={self.dropout} must be in [0, 1)")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError("model.lr must be > 0 and model.weight_decay >= 0")


class VideoClassifier(nn.Module):
    """The network: `forward(x)` -> logits (B, K); `features(x)` -> (B, D) clip features;
    `frame_features(x)` -> (B, T, D) per-frame features. x (B, T, C, S, S) in [0, 1]."""

    def __init__(self, cfg: VideoClassifierConfig) -> None:
        super().__init__()
        self.cfg = cfg
        levels = max(1, cfg.frame_size.bit_length() - 1 - 2)  # S -> 4x4
        layers: list[nn.Module] = []
        c_in = cfg.channels
        for k in range(levels):
            c_out = cfg.width * min(4, 2**k)
            layers += [
                nn.Conv3d(c_in, c_out, 3, (1, 2, 2), 1, bias=False),
                nn.BatchNorm3d(c_out),
                nn.ReLU(inplace=True),
            ]
            c_in = c_out
        self.trunk = nn.Sequential(*layers)
        self.feature_dim = c_in
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(c_in, cfg.num_categories)

    def _check(self, x: Tensor) -> Tensor:
        cfg = self.cfg
        expected = (cfg.channels, cfg.frame_size, cfg.frame_size)
        if x.dim() != 5 or tuple(x.shape[2:]) != expected:
            raise ValueError(
                f"expected videos (B, T, {', '.join(map(str, expected))}), got {tuple(x.shape)}"
            )
        return x

    def frame_features(self, x: Tensor) -> Tensor:
        """Per-frame features (B, T, D): the trunk's map averaged over space."""
        h = self.trunk(self._check(x).transpose(1, 2) * 2.0 - 1.0)  # (B, D, T, s, s)
        return h.mean(dim=(3, 4)).transpose(1, 2)

    def features(self, x: Tensor) -> Tensor:
        """Clip features (B, D): the space for Fréchet distances between sets of videos."""
        return self.frame_features(x).mean(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.features(x)))


class VideoClassifierTask(TrainingTask):
    """Cross-entropy training of the classifier on labelled clips: batches are
    {"frames": (B, T, C, S, S) in [0, 1], "label": (B,) long}; one Adam optimiser."""

    needs_labels = True

    def __init__(self, **options: Any) -> None:
        self.cfg = family_config(VideoClassifierConfig, "video_classifier", options)
        self.clip_length = self.cfg.length
        self.num_categories = self.cfg.num_categories
        self.networks = nn.ModuleDict({"classifier": VideoClassifier(self.cfg)})

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        params = self.networks["classifier"].parameters()
        return {
            "classifier": torch.optim.Adam(
                params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay
            )
        }

    def training_step(
        self, batch: Tensor | dict[str, Tensor], step: int, update: UpdateFn
    ) -> dict[str, float]:
        """One Adam step on the cross-entropy; logs "loss" and "accuracy" (of this batch)."""
        if not isinstance(batch, dict) or "label" not in batch:
            raise ValueError(
                "video_classifier trains on labelled clips: a batch is {'frames': (B, T, C, H, "
                "W), 'label': (B,) long} (a store whose videos carry a 'label' attribute)"
            )
        frames = batch["frames"][:, : self.cfg.length]
        labels = torch.as_tensor(batch["label"], device=frames.device).long().reshape(-1)
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.cfg.num_categories):
            raise ValueError(
                f"labels must be in [0, {self.cfg.num_categories - 1}] for "
                f"model.num_categories={self.cfg.num_categories}"
            )
        logits = self.networks["classifier"](frames).float()
        loss = F.cross_entropy(logits, labels)
        update(loss, "classifier")
        accuracy = (logits.argmax(dim=1) == labels).float().mean()
        values = torch.stack([loss.detach(), accuracy]).tolist()  # one sync
        return {"loss": values[0], "accuracy": values[1]}

    def inference_model(self) -> VideoClassifier:
        return self.unwrap("classifier")  # type: ignore[return-value]

    def config(self) -> dict[str, Any]:
        return asdict(self.cfg)


__all__ = ["VideoClassifier", "VideoClassifierConfig", "VideoClassifierTask"]
