"""The one uint8 <-> model tensor conversion: layouts, range, exact round trip, rounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.core.frames import to_model, to_uint8


def test_uint8_frames_round_trip_exactly_through_model_tensors() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 3, 5, 7, 3), dtype=np.uint8)  # (B, T, H, W, C)
    x = to_model(frames)
    assert x.shape == (2, 3, 3, 5, 7) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert torch.equal(x[1, 2, 0], torch.from_numpy(frames[1, 2, :, :, 0]).float() / 255)
    back = to_uint8(x)
    assert back.dtype == np.uint8 and back.shape == frames.shape
    np.testing.assert_array_equal(back, frames)


def test_to_uint8_clamps_and_rounds_to_nearest() -> None:
    x = torch.tensor([-0.5, 0.0, 0.5 / 255, 0.6 / 255, 254.4 / 255, 1.0, 7.0]).reshape(1, 1, 7)
    out = to_uint8(x)[:, :, 0]  # (C=1, H=1, W=7) -> (H, W, C)
    assert out.reshape(-1).tolist() == [0, 0, 0, 1, 254, 255, 255]
    half = to_uint8(torch.full((1, 2, 2), 0.5, dtype=torch.bfloat16))  # any float dtype
    assert half.reshape(-1).tolist() == [128] * 4


def test_to_model_takes_tensors_and_refuses_floats() -> None:
    t = torch.full((4, 4, 1), 255, dtype=torch.uint8)
    assert to_model(t).shape == (1, 4, 4) and float(to_model(t).max()) == 1.0
    with pytest.raises(TypeError, match="uint8"):
        to_model(np.zeros((4, 4, 1), np.float32))
