"""The one seed scheme of generated videos, for `framecast generate`, `framecast evaluate` and
`POST /v1/generate`: video i of a run seeded S is `Generator.sample(1, T, seed=S, start=i)`,
whose codes come from `video_rng(S, i)` (models/protocols.py). So the same (S, i) gives the same
video in every stage, whatever the batch size, the number of workers or an interruption.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.protocols import Generator, code_ids, video_rng, video_seed
from pipeline.core.frames import to_uint8


def sample_videos(
    generator: Generator,
    seed: int,
    start: int,
    n: int,
    length: int,
    category: int | Sequence[int] | None = None,
    fix: str | None = None,
) -> np.ndarray:
    """Videos start .. start+n-1 of the run seeded `seed`, uint8 (n, length, H, W, C)."""
    return to_uint8(generator.sample(n, length, category=category, seed=seed, fix=fix, start=start))


def video_categories(
    generator: Generator,
    seed: int,
    indices: Sequence[int],
    category: int | None = None,
    fix: str | None = None,
) -> list[int] | None:
    """The category of each video of the run: `category` when one is requested, else the one
    the video draws (None for an unconditional generator)."""
    if not generator.num_categories:
        return None
    if category is not None:
        return [int(category)] * len(indices)
    return generator.drawn_categories(seed, indices, fix)


__all__ = ["code_ids", "sample_videos", "video_categories", "video_rng", "video_seed"]
