"""What a trained family offers: the only interface the pipeline's stages rely on.

A registry entry (`models/__init__.py`) names a family's training task and its *kind*; the
task's `inference_model()` implements the protocol of that kind:

- "predictor": `Predictor` (`predict` a future, and `stream` live sessions). Families that
  predict a structure first (poses, keypoints) also implement `StructurePredictor`, which
  evaluate uses for pose metrics.
- "generator": `Generator` (`sample` videos of a seeded run).
- "classifier": `Classifier` (logits and features of clips; evaluate's generator metrics).

Frames are float tensors in [0, 1], (B, T, C, H, W) for clips and (B, C, H, W) for one frame.

The seed scheme of generators is here, beside the protocol that promises it: video i of a run
seeded S draws its codes from a CPU `torch.Generator` seeded with `video_seed(S, i)`, so it
depends on (S, i) alone, not on how many videos are drawn at once, on which device or worker.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

Kind = Literal["predictor", "generator", "classifier"]
KINDS: tuple[Kind, ...] = ("predictor", "generator", "classifier")
FIXES = (None, "content", "motion")


@runtime_checkable
class StreamSession(Protocol):
    """A live session over `batch_size` streams: `step` one frame each, `predict` the future
    from what was seen without changing the state. After step(x_1) ... step(x_T),
    predict(h) equals Predictor.predict(x_1..T, h).

    The batching hooks let a server step many sessions as one batch: sessions with equal
    `batch_key()` `merge` into one (row i is session i), step together and `split` back;
    the result equals stepping each alone.
    """

    batch_size: int
    frames_seen: int

    def step(self, frames: Tensor) -> None:
        """Feed one frame per stream, (B, C, H, W) in [0, 1]."""
        ...

    def predict(self, horizon: int) -> Tensor:
        """The next `horizon` frames (B, horizon, C, H, W) in [0, 1]."""
        ...

    def batch_key(self) -> Hashable:
        """Sessions with equal keys can merge."""
        ...

    @classmethod
    def merge(cls, sessions: list[StreamSession]) -> StreamSession:
        """One session whose batch is the sessions' batches side by side."""
        ...

    def split(self) -> list[StreamSession]:
        """The inverse of merge."""
        ...


@runtime_checkable
class Predictor(Protocol):
    """A video predictor: the future of observed frames."""

    def predict(self, observed: Tensor, horizon: int) -> Tensor:
        """Future frames (B, horizon, C, H, W) in [0, 1] from observed (B, T, C, H, W)."""
        ...

    def stream(self, batch_size: int = 1) -> StreamSession:
        """A live session over `batch_size` streams (ValueError if this model cannot stream)."""
        ...


@runtime_checkable
class StructurePredictor(Predictor, Protocol):
    """A predictor that forecasts a low-dimensional structure (K 2-D keypoints) and draws
    frames from it (Villegas et al. 2017)."""

    # True when the keypoints are in the store's labelled layout (PCK against them is
    # meaningful); False for keypoints learned without labels.
    predicts_keypoints: bool

    def forecast(
        self, observed: Tensor, horizon: int, observed_keypoints: Tensor | None = None
    ) -> dict[str, Tensor]:
        """{"frames" (B, S, C, H, W), "keypoints" (B, S, K, 2) pixels, "observed_keypoints"}."""
        ...

    def render(self, last_frame: Tensor, last_pose: Tensor, future_poses: Tensor) -> Tensor:
        """Frames (B, S, C, H, W) drawn from last_frame (B, C, H, W) with pose (B, K, 2) moved
        to future_poses (B, S, K, 2)."""
        ...

    def detect(self, frames: Tensor) -> Tensor:
        """Keypoints (..., K, 2) pixels of frames (..., C, H, W)."""
        ...


@runtime_checkable
class MotionPredictor(Predictor, Protocol):
    """A predictor that can show how it predicted: a motion-compensated head's flow and mask."""

    def explain(self, observed: Tensor, horizon: int) -> dict[str, Tensor]:
        """predict(), with how: {"frames" (B, S, C, H, W), and for a motion-compensated head
        "flow" (B, S, 2, H, W) in pixels (where each pixel is sampled from in the previous
        frame) and "mask" (B, S, 1, H, W) (1: new appearance, 0: the moved previous frame)}."""
        ...


@runtime_checkable
class Generator(Protocol):
    """A video generator whose videos are indexed within a seeded run."""

    num_categories: int  # 0: unconditional

    def sample(
        self,
        n: int,
        length: int,
        category: int | Sequence[int] | None = None,
        seed: int = 0,
        fix: str | None = None,
        start: int = 0,
    ) -> Tensor:
        """Videos start .. start+n-1 of the run seeded `seed`, (n, length, C, H, W) in [0, 1].

        Video i depends only on (seed, i) (see `code_ids` for `fix`). category: one index for
        all, one per video, or None (each video its own, drawn with its motion).
        """
        ...

    def drawn_categories(
        self, seed: int, indices: Sequence[int], fix: str | None = None
    ) -> list[int] | None:
        """The category video i of the run would have with category=None (None when
        unconditional): what a manifest records without rendering."""
        ...


@runtime_checkable
class Classifier(Protocol):
    """A clip classifier: logits (accuracy, Inception Score) and the features Fréchet distance is
    measured in."""

    def forward(self, clips: Tensor) -> Tensor:
        """Logits (B, num_categories) of clips (B, T, C, H, W)."""
        ...

    def features(self, clips: Tensor) -> Tensor:
        """Clip features (B, F)."""
        ...

    def frame_features(self, clips: Tensor) -> Tensor:
        """Per-frame features (B, T, F)."""
        ...


PROTOCOLS: dict[Kind, type] = {
    "predictor": Predictor,
    "generator": Generator,
    "classifier": Classifier,
}


def video_seed(seed: int, index: int) -> int:
    """The seed of video `index`'s codes in a run seeded `seed`: depends on (seed, index) only
    (a numpy SeedSequence of the pair, so neighbouring seeds give unrelated streams)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(index)]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def video_rng(seed: int, index: int) -> torch.Generator:
    """The CPU generator video `index` of a run seeded `seed` draws its codes from."""
    return torch.Generator().manual_seed(video_seed(seed, index))


def code_ids(index: int, fix: str | None) -> tuple[int, int]:
    """(content draw, motion draw) of video `index`: its own draw for both normally;
    fix="content" gives every video the content of draw 0 (one content, many motions),
    fix="motion" the motion of draw 0 (many contents, one motion)."""
    if fix not in FIXES:
        raise ValueError(f"fix={fix!r}: use content, motion or None")
    if fix == "content":
        return 0, index
    if fix == "motion":
        return index, 0
    return index, index
