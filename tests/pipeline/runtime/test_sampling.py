"""The one seed scheme: video i of a run depends on (seed, i) only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import build_task
from pipeline.runtime.sampling import sample_videos, video_categories, video_seed
from tests.pipeline.runtime.tiny_models import GAN

pytestmark = pytest.mark.usefixtures("one_thread")


def generator(num_categories: int = 0) -> torch.nn.Module:
    torch.manual_seed(0)
    task = build_task("mocogan", **GAN, num_categories=num_categories)
    return task.inference_model().eval()


def test_video_i_is_the_same_whatever_the_batch() -> None:
    g = generator()
    whole = sample_videos(g, 7, 0, 5, 6)
    assert whole.shape == (5, 6, 16, 16, 1) and whole.dtype == np.uint8
    for i in range(5):
        np.testing.assert_array_equal(sample_videos(g, 7, i, 1, 6)[0], whole[i])
    np.testing.assert_array_equal(sample_videos(g, 7, 2, 3, 6), whole[2:])
    assert not np.array_equal(sample_videos(g, 8, 0, 1, 6)[0], whole[0])  # another seed
    shorter = sample_videos(g, 7, 0, 5, 4)  # a longer video extends a shorter one
    np.testing.assert_array_equal(shorter, whole[:, :4])


def test_fix_content_and_fix_motion_share_draw_zero() -> None:
    g = generator()
    content = g.sample(3, 4, seed=1, fix="content")
    motion = g.sample(3, 4, seed=1, fix="motion")
    free = g.sample(3, 4, seed=1)
    assert torch.equal(content[0], free[0]) and torch.equal(motion[0], free[0])
    assert not torch.equal(content[1], free[1]) and not torch.equal(motion[1], free[1])
    with pytest.raises(ValueError, match="fix"):
        g.sample(1, 4, fix="both")


def test_categories_drawn_requested_and_unconditional() -> None:
    g = generator(num_categories=3)
    drawn = video_categories(g, 5, range(20))
    assert drawn is not None and set(drawn) <= {0, 1, 2} and len(set(drawn)) > 1
    assert video_categories(g, 5, [3, 4], category=2) == [2, 2]
    # a video asked for its own drawn category is the video drawn without asking
    i = 4
    np.testing.assert_array_equal(
        sample_videos(g, 5, i, 1, 4, category=drawn[i]), sample_videos(g, 5, i, 1, 4)
    )
    assert video_categories(generator(), 5, [0, 1]) is None


def test_video_seed_depends_on_seed_and_index_only() -> None:
    seeds = {video_seed(s, i) for s in range(4) for i in range(50)}
    assert len(seeds) == 200
    assert video_seed(3, 9) == video_seed(3, 9) and 0 <= video_seed(2**40, 1) < 2**63
