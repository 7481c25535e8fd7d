"""What both paths of `framecast evaluate` (predictors in `__init__`, generators in
`generator.py`) share: the `evaluate:` keys and the default output folder. A module of its own
so that the two paths import it without importing each other."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class EvaluateConfig:
    """The `evaluate:` keys of configs/evaluate.yaml (documented there)."""

    context: int | None = None
    horizon: int | None = None
    batch_size: int = 64
    max_sequences: int | None = None
    split: str = "test"
    device: str = "auto"
    out: str | None = None
    grid_sequences: int = 4
    baseline: str | None = None  # another predictor checkpoint, evaluated on the same sequences
    # generator checkpoints (generator.py)
    classifier: str | None = None
    i3d: str | None = None
    i3d_size: int = 224
    num_videos: int = 256
    seed: int = 0
    length: int | None = None


def default_out(ckpt_path: str) -> Path:
    """RUN/evaluate for RUN/checkpoints/X.pt, else a folder beside the checkpoint."""
    p = Path(ckpt_path)
    if p.parent.name == "checkpoints":
        return p.parent.parent / "evaluate"
    return p.with_name(f"{p.stem}-evaluate")


__all__ = ["EvaluateConfig", "default_out"]
