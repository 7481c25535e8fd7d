"""Shape motion: the synthetic set of MoCoGAN (Tulyakov et al., CVPR 2018), with more motions.

One shape per video, a circle or an axis-aligned square, of random colour and size, moves on a
plain background of another random colour in one of six motion categories (``MOTIONS``; the
category's index is the video's label):

    0 left_right         back and forth along a horizontal line
    1 up_down            back and forth along a vertical line
    2 diagonal_down      back and forth along the main diagonal (top-left <-> bottom-right)
    3 diagonal_up        back and forth along the other diagonal (bottom-left <-> top-right)
    4 clockwise          around a circle, clockwise on screen
    5 counterclockwise   around a circle, counter-clockwise on screen

Rules, in pixels of a ``size`` x ``size`` frame (64 by default; lengths scale with size / 64):

- radius r (half the side, for a square) uniform in [lo, hi] * size, ``radius=(lo, hi)``
  (``RADIUS`` = (0.08, 0.16) by default; ``check_radius`` says which ranges fit a frame);
- the shape stays inside the frame with a margin of one pixel: its centre keeps to the box
  ``[r + 1, size - r - 1]`` per axis (the "room");
- linear motions: amplitude A uniform in [0.5, 1] of the room along the direction, a centre
  line offset at random where the whole segment fits, constant speed v uniform in [0.04, 0.07]
  * size per frame, reflected at both ends of the segment (a triangle wave); random start
  phase and direction;
- circular motions: radius R uniform in [0.5, 1] of the room (at least 0.12 * size), a centre
  where the whole circle fits, angular speed v / R (the same speed range), random start angle;
- colours: background uniform in {0..255}^3, shape colour drawn until it is at least 120 away
  from the background (Euclidean, RGB), so the shape is always visible;
- anti-aliasing: each frame is rendered at 4x resolution (a pixel is inside or outside the
  shape) and box-downsampled; the shape's coverage a in [0, 1] blends the colours,
  pixel = round((1 - a) * background + a * colour), so edge pixels take intermediate values.

Image coordinates: x to the right, y down. Positions are (y, x) = (row, column), like Moving
MNIST's. Video ``i`` of ``generate`` depends only on ``(seed, split, i)``, so shards of a large
set can be generated in parallel with identical results.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

FPS = 10
MOTIONS: tuple[str, ...] = (
    "left_right",
    "up_down",
    "diagonal_down",
    "diagonal_up",
    "clockwise",
    "counterclockwise",
)
SHAPES: tuple[str, ...] = ("circle", "square")
RADIUS: tuple[float, float] = (0.08, 0.16)  # default radius range, as fractions of the size
SUPERSAMPLE = 4  # sub-pixels per pixel and axis when rendering
LABELS = ("motion", "shape_motion")  # what a video's "label" attribute holds
MIN_COLOR_DISTANCE = 120.0  # shape vs background, Euclidean in RGB 0..255
_SPLIT_STREAM = {"train": 0, "test": 1}
# Unit direction (dy, dx) of each linear motion.
_DIRECTIONS = {
    "left_right": (0.0, 1.0),
    "up_down": (1.0, 0.0),
    "diagonal_down": (np.sqrt(0.5), np.sqrt(0.5)),
    "diagonal_up": (-np.sqrt(0.5), np.sqrt(0.5)),
}


def check_background(rgb: tuple[int, ...] | list[int]) -> tuple[int, int, int]:
    """A background colour as (r, g, b) ints in 0..255 (ValueError otherwise)."""
    values = list(rgb)
    if len(values) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in values):
        raise ValueError(f"background must be [r, g, b] with integers in 0..255, got {rgb}")
    return (values[0], values[1], values[2])


def check_radius(radius: tuple[float, float] | list[float], size: int) -> tuple[float, float]:
    """The radius range (lo, hi), fractions of `size`, as floats; ValueError unless
    0 < lo <= hi and the largest shape leaves its centre room to move inside the frame with the
    one-pixel margin: hi * size < (size - 1) / 2 - 1."""
    values = tuple(float(r) for r in radius)
    if len(values) != 2:
        raise ValueError(f"radius must be [min, max], got {list(radius)}")
    lo, hi = values
    if not 0.0 < lo <= hi:
        raise ValueError(f"radius {list(values)}: need 0 < min <= max")
    limit = ((size - 1) / 2.0 - 1.0) / size
    if hi >= limit:
        raise ValueError(
            f"radius {list(values)}: max * size = {hi * size:g} px does not fit a {size}x{size} "
            f"frame (need max < {limit:.4f}, room for the centre to move)"
        )
    return lo, hi


def _triangle(phase: np.ndarray) -> np.ndarray:
    """Triangle wave of period 1 in [-1, 1]: -1 at phase 0, +1 at 1/2."""
    frac = np.mod(phase, 1.0)
    return 4.0 * np.minimum(frac, 1.0 - frac) - 1.0


def trajectory(
    rng: np.random.Generator, motion: str, length: int, radius: float, size: int = 64
) -> np.ndarray:
    """Centres (length, 2) float64, (y, x) in pixels, of a shape of `radius` moving by `motion`.

    Draws from ``rng`` in this order: the motion's extent (A or R), its centre offsets (y, x),
    the speed, then the start phase (and, for linear motions, the direction sign).
    """
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}: expected one of {MOTIONS}")
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    centre = (size - 1) / 2.0  # pixel centres run 0 .. size - 1
    room = (size - 1) / 2.0 - radius - 1.0  # the centre may move this far from the frame's
    if room <= 0:
        raise ValueError(f"radius {radius} does not fit a {size}x{size} frame")
    t = np.arange(length, dtype=np.float64)
    if motion in _DIRECTIONS:
        dy, dx = _DIRECTIONS[motion]
        amplitude = room * float(rng.uniform(0.5, 1.0))  # half the segment's length
        # The segment's centre moves off the frame's centre as far as the segment still fits.
        free_y = room - amplitude * abs(dy)
        free_x = room - amplitude * abs(dx)
        cy = centre + float(rng.uniform(-free_y, free_y))
        cx = centre + float(rng.uniform(-free_x, free_x))
        speed = size * float(rng.uniform(0.04, 0.07))  # pixels per frame
        phase0 = float(rng.random())
        sign = 1.0 if rng.random() < 0.5 else -1.0
        # One period covers the segment twice: 4A pixels.
        s = amplitude * _triangle(phase0 + sign * t * speed / (4.0 * amplitude))
        return np.stack([cy + s * dy, cx + s * dx], axis=1)
    r_circle = max(room * float(rng.uniform(0.5, 1.0)), min(0.12 * size, room))
    free = room - r_circle
    cy = centre + float(rng.uniform(-free, free))
    cx = centre + float(rng.uniform(-free, free))
    speed = size * float(rng.uniform(0.04, 0.07))
    theta0 = float(rng.random()) * 2.0 * np.pi
    # y points down, so an increasing angle turns from +x (right) to +y (down): clockwise.
    turn = 1.0 if motion == "clockwise" else -1.0
    theta = theta0 + turn * t * speed / r_circle
    return np.stack([cy + r_circle * np.sin(theta), cx + r_circle * np.cos(theta)], axis=1)


def coverage(shape: str, centres: np.ndarray, radius: float, size: int = 64) -> np.ndarray:
    """Anti-aliased coverage (T, size, size) float32 in [0, 1] of the shape at each centre.

    Sub-pixel (j, k) of pixel (y, x) sits at (y - 1/2 + (j + 1/2) / s, ...) for s = SUPERSAMPLE;
    a pixel's coverage is the share of its s x s sub-pixels inside the shape.
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}: expected one of {SHAPES}")
    s = SUPERSAMPLE
    sub = (np.arange(size * s, dtype=np.float32) + 0.5) / s - 0.5  # sub-pixel coordinates
    centres = np.asarray(centres, dtype=np.float32)
    dy = sub[None, :] - centres[:, 0:1]  # (T, size * s)
    dx = sub[None, :] - centres[:, 1:2]
    if shape == "square":
        # Separable: inside iff |dy| <= r and |dx| <= r, so coverage is a product of 1-D ones.
        in_y = (np.abs(dy) <= radius).reshape(-1, size, s).mean(axis=2, dtype=np.float32)
        in_x = (np.abs(dx) <= radius).reshape(-1, size, s).mean(axis=2, dtype=np.float32)
        return in_y[:, :, None] * in_x[:, None, :]
    inside = dy[:, :, None] ** 2 + dx[:, None, :] ** 2 <= radius**2  # (T, size*s, size*s)
    return inside.reshape(-1, size, s, size, s).mean(axis=(2, 4), dtype=np.float32)


def render(
    shape: str,
    centres: np.ndarray,
    radius: float,
    color: np.ndarray,
    background: np.ndarray,
    size: int = 64,
) -> np.ndarray:
    """Frames (T, size, size, 3) uint8: the shape (RGB `color`) at each centre on `background`."""
    alpha = coverage(shape, centres, radius, size)[..., None]  # (T, H, W, 1)
    fg = np.asarray(color, dtype=np.float32)
    bg = np.asarray(background, dtype=np.float32)
    frames = bg + alpha * (fg - bg)
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def shapes_video(
    rng: np.random.Generator,
    length: int,
    size: int = 64,
    *,
    motion: str | None = None,
    shape: str | None = None,
    radius: tuple[float, float] = RADIUS,
    background_rgb: tuple[int, int, int] | None = None,
) -> tuple[np.ndarray, dict]:
    """One shape-motion video: frames (length, size, size, 3) uint8 and its info.

    info: ``{"label", "motion", "shape", "color", "background", "radius", "trajectory"}``
    (trajectory: the centres, [[y, x] per frame] in pixels). Draws from ``rng``: the motion
    category, the shape, the radius (uniform in `radius` * size, see ``check_radius``), the
    background, the colour (rejection), then the
    trajectory; a given `motion` or `shape` is still drawn (and then replaced), so the other
    draws do not change. A given `background_rgb` (0..255 each) replaces the drawn background
    before the colour is drawn against it.
    """
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    lo, hi = check_radius(radius, size)
    label = int(rng.integers(len(MOTIONS)))
    shape_index = int(rng.integers(len(SHAPES)))
    if motion is not None:
        if motion not in MOTIONS:
            raise ValueError(f"unknown motion {motion!r}: expected one of {MOTIONS}")
        label = MOTIONS.index(motion)
    if shape is not None:
        if shape not in SHAPES:
            raise ValueError(f"unknown shape {shape!r}: expected one of {SHAPES}")
        shape_index = SHAPES.index(shape)
    r = size * float(rng.uniform(lo, hi))
    background = rng.integers(0, 256, 3)
    if background_rgb is not None:
        background = np.asarray(background_rgb, dtype=np.int64)
    color = rng.integers(0, 256, 3)
    while np.linalg.norm(color - background) < MIN_COLOR_DISTANCE:
        color = rng.integers(0, 256, 3)
    centres = trajectory(rng, MOTIONS[label], length, r, size)
    frames = render(SHAPES[shape_index], centres, r, color, background, size)
    info = {
        "label": label,
        "motion": MOTIONS[label],
        "shape": SHAPES[shape_index],
        "color": [int(c) for c in color],
        "background": [int(c) for c in background],
        "radius": r,
        "trajectory": centres.tolist(),
    }
    return frames, info


def generate(
    num_videos: int,
    length: int,
    *,
    split: str = "train",
    seed: int = 0,
    start: int = 0,
    size: int = 64,
    radius: tuple[float, float] = RADIUS,
    background: tuple[int, int, int] | None = None,
    label: str = "motion",
) -> Iterator[tuple[str, np.ndarray, dict]]:
    """Yield ``(video_id, frames (length, size, size, 3) uint8, attrs)`` for videos
    ``start .. num_videos - 1``.

    ``video_id`` is ``f"shapes-{split}-{i:06d}"``; video ``i`` uses ``np.random.default_rng([seed,
    s, i])`` (s = 0 for train, 1 for test), so it is the same whatever ``start`` is. ``attrs`` is
    JSON-serialisable: source ("shapes"), split, num_frames, fps, label (the motion category's
    index in ``MOTIONS``), motion, shape, color and background ([r, g, b]), radius (pixels),
    size, seed, index. ``radius``: the range (min, max) of the shapes' radius as fractions of
    ``size`` (ValueError where it does not fit, see ``check_radius``). ``background``: one RGB
    background for every video (None: each draws its own). ``label``: what the "label"
    attribute holds, the motion category (``"motion"``, 0..5) or shape and motion together
    (``"shape_motion"``: shape index * 6 + motion, 0..11, circles first; what a generator
    conditioned on the shape trains on).
    """
    if length < 1 or size < 16:
        raise ValueError(f"need length >= 1 and size >= 16, got {length}, {size}")
    if num_videos < 0 or start < 0:
        raise ValueError(f"need num_videos >= 0 and start >= 0, got {num_videos}, {start}")
    if split not in _SPLIT_STREAM:
        raise ValueError(f"unknown split {split!r}: expected 'train' or 'test'")
    radius = check_radius(radius, size)
    if background is not None:
        background = check_background(background)
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r}: expected one of {LABELS}")
    return _generate(num_videos, length, split, seed, start, size, radius, background, label)


def _generate(
    num_videos: int,
    length: int,
    split: str,
    seed: int,
    start: int,
    size: int,
    radius: tuple[float, float],
    background: tuple[int, int, int] | None = None,
    label: str = "motion",
) -> Iterator[tuple[str, np.ndarray, dict]]:
    for i in range(start, num_videos):
        rng = np.random.default_rng([seed, _SPLIT_STREAM[split], i])
        frames, info = shapes_video(rng, length, size, radius=radius, background_rgb=background)
        attrs = {
            "source": "shapes",
            "split": split,
            "num_frames": length,
            "fps": FPS,
            "label": info["label"]
            + (SHAPES.index(info["shape"]) * len(MOTIONS) if label == "shape_motion" else 0),
            "motion": info["motion"],
            "shape": info["shape"],
            "color": info["color"],
            "background": info["background"],
            "radius": round(info["radius"], 3),
            "size": size,
            "seed": seed,
            "index": i,
        }
        yield f"shapes-{split}-{i:06d}", frames, attrs


__all__ = [
    "FPS",
    "LABELS",
    "MOTIONS",
    "RADIUS",
    "SHAPES",
    "check_background",
    "check_radius",
    "coverage",
    "generate",
    "render",
    "shapes_video",
    "trajectory",
]
