"""The only conversions between stored frames and model tensors.

Stores, videos and the wire hold uint8 frames channels-last, (..., H, W, C); models take float
frames channels-first in [0, 1], (..., C, H, W). Every stage converts through these two
functions, so rounding and clamping are the same everywhere (a frame round-trips exactly).
"""

from __future__ import annotations

import numpy as np
import torch


def to_model(
    frames: np.ndarray | torch.Tensor, device: torch.device | str | None = None
) -> torch.Tensor:
    """uint8 (..., H, W, C) -> float32 (..., C, H, W) in [0, 1], converted on `device` (the
    uint8 copy is what crosses to the device: 4x fewer bytes than float)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if x.dtype != torch.uint8:
        raise TypeError(f"to_model: frames must be uint8, got {x.dtype}")
    if device is not None:
        x = x.to(device, non_blocking=True)
    return x.movedim(-1, -3).float().div_(255.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (..., C, H, W) in [0, 1] (any dtype, any device) -> uint8 (..., H, W, C) numpy:
    clamped to [0, 1], scaled and rounded to nearest."""
    u8 = x.detach().float().clamp(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
    return u8.movedim(-3, -1).cpu().numpy()
