"""Preview images and animations of uint8 videos, and reading generated files back.

`framecast generate` previews the videos it wrote (`preview.png`, `preview.gif`) and `framecast
evaluate` of a generator previews the videos it measured (`samples.png`, `samples.gif`): one
layout for both. Files are written whole or not at all (tmp + rename).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import av
import numpy as np

from pipeline.io.video import decode_frames, write_video


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through `.NAME.part` beside it, renamed into place: a reader (or a
    resumed run) sees the whole file or none; a left-over `.part` marks an interrupted write."""
    part = path.parent / f".{path.name}.part"
    with open(part, "wb") as f:
        f.write(data)
    os.replace(part, path)


def read_video(path: Path) -> np.ndarray:
    """Frames (T, H, W, C) uint8 of a generated file (npy, or decoded with PyAV)."""
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    return np.stack(list(decode_frames(str(path))))


def rgb(frames: np.ndarray) -> np.ndarray:
    """uint8 (..., C) with C 1 or 3 -> (..., 3): gray repeated into the three channels."""
    return np.repeat(frames, 3, axis=-1) if frames.shape[-1] == 1 else frames


def flow_to_rgb(flow: np.ndarray, max_px: float | None = None) -> np.ndarray:
    """Flows (..., 2, H, W) in pixels -> uint8 (..., H, W, 3) in the usual optical-flow colours:
    hue = direction, saturation = magnitude (white: no motion), full saturation at `max_px`
    (default: the largest magnitude shown, at least 1 px)."""
    dx, dy = flow[..., 0, :, :], flow[..., 1, :, :]
    magnitude = np.hypot(dx, dy)
    scale = (
        max(float(magnitude.max()) if magnitude.size else 0.0, 1.0) if max_px is None else max_px
    )
    hue = (np.arctan2(dy, dx) / (2 * np.pi)) % 1.0  # (..., H, W) in [0, 1)
    sat = np.clip(magnitude / scale, 0.0, 1.0)
    # HSV (value 1) -> RGB: channel k is 1 - s * clip(|6h - offset_k| ... ) in the hexcone
    k = (np.stack([5.0, 3.0, 1.0], axis=-1) + hue[..., None] * 6.0) % 6.0
    chroma = np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    out = 1.0 - sat[..., None] * chroma
    return (out * 255).round().astype(np.uint8)


def write_png(path: Path, image: np.ndarray) -> None:
    """A uint8 (H, W, 3) or (H, W, 1) image as PNG, encoded by PyAV's png encoder."""
    image = np.ascontiguousarray(rgb(image))
    ctx = av.CodecContext.create("png", "w")
    ctx.width, ctx.height, ctx.pix_fmt = image.shape[1], image.shape[0], "rgb24"
    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
    data = b"".join(bytes(p) for p in [*ctx.encode(frame), *ctx.encode(None)])
    write_atomic(path, data)


def write_previews(
    videos: list[np.ndarray], out: Path, fps: float, stem: str = "preview"
) -> dict[str, str]:
    """`stem`.png (a row of up to 16 frames per video, up to 8 videos) and `stem`.gif (every
    video tiled in a near-square grid, animated) of uint8 videos (T, H, W, C), into `out`."""
    videos = [rgb(v) for v in videos]
    steps = min(len(v) for v in videos)
    videos = [v[:steps] for v in videos]
    h, w = videos[0].shape[1:3]
    pad = 2
    shown = np.unique(np.linspace(0, steps - 1, min(steps, 16)).round().astype(int))
    strip_rows = []
    for v in videos[:8]:
        tiles = [np.pad(v[t], ((pad, pad), (pad, pad), (0, 0)), constant_values=255) for t in shown]
        strip_rows.append(np.concatenate(tiles, axis=1))
    png, gif = out / f"{stem}.png", out / f"{stem}.gif"
    write_png(png, np.concatenate(strip_rows, axis=0))
    cols = math.ceil(math.sqrt(len(videos)))
    grid_rows = math.ceil(len(videos) / cols)
    canvas = np.full((steps, grid_rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for k, v in enumerate(videos):
        y, x = pad + (k // cols) * (h + pad), pad + (k % cols) * (w + pad)
        canvas[:, y : y + h, x : x + w] = v
    scale = max(1, 256 // max(canvas.shape[1:3]))  # tiny frames: enlarge to ~256 px
    if scale > 1:
        canvas = canvas.repeat(scale, axis=1).repeat(scale, axis=2)
    write_video(str(gif), canvas, fps)
    return {f"{stem}_png": str(png), f"{stem}_gif": str(gif)}


__all__ = ["read_video", "rgb", "write_atomic", "write_png", "write_previews"]
