"""Moving MNIST, made as Srivastava, Mansimov and Salakhutdinov (ICML 2015) made it.

Rules (from the authors' generator):

- a ``canvas`` x ``canvas`` frame (64 x 64) and 28 x 28 digits;
- each digit's top-left corner lives in the unit square, which maps to pixels
  ``[0, canvas - 28]`` per axis: pixel = round(position * (canvas - 28));
- the start position is uniform in the unit square, the direction theta uniform in [0, 2 pi), the
  velocity ``speed * (cos theta, sin theta)`` (speed 0.1 of the unit square per frame);
- each frame: take one step, then bounce: a coordinate at or beyond 0 or 1 is clamped to the wall
  and that velocity component flips. As in the original code, frame 0 is the position after the
  first step;
- digits are drawn independently (with replacement) from the digit set and combined by
  pixel-wise max.

Positions are ``(y, x)`` = (row, column) pairs. Video ``i`` of ``generate`` depends only on
``(seed, split, i)``, so shards of a large set can be generated in parallel with identical results.

``iter_npy_sequences`` reads the public ``mnist_test_seq.npy`` (uint8, (T, N, 64, 64)).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import torch

from pipeline.datasets.mnist import load_digits, split_indices

FPS = 10
DIGIT_SIZE = 28
_SPLIT_STREAM = {"train": 0, "test": 1}


def bounce_trajectory(
    rng: np.random.Generator,
    length: int,
    speed: float = 0.1,
    *,
    start: tuple[float, float] | None = None,
    theta: float | None = None,
) -> np.ndarray:
    """Positions (length, 2) float64 of one digit in the unit square, as (y, x) per frame.

    ``start`` (y, x) and ``theta`` (radians; velocity = speed * (sin theta, cos theta) in (y, x))
    are drawn from ``rng`` when not given: first the start (y, then x), then theta.
    """
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    if start is None:
        y, x = float(rng.random()), float(rng.random())
    else:
        y, x = float(start[0]), float(start[1])
    if theta is None:
        theta = float(rng.random()) * 2.0 * np.pi
    vy, vx = np.sin(theta) * speed, np.cos(theta) * speed
    out = np.empty((length, 2), dtype=np.float64)
    for t in range(length):
        y += vy
        x += vx
        if x <= 0.0:
            x, vx = 0.0, -vx
        if x >= 1.0:
            x, vx = 1.0, -vx
        if y <= 0.0:
            y, vy = 0.0, -vy
        if y >= 1.0:
            y, vy = 1.0, -vy
        out[t] = (y, x)
    return out


def to_pixels(positions: np.ndarray, canvas: int = 64, digit_size: int = DIGIT_SIZE) -> np.ndarray:
    """Top-left pixel (row, col) int64 of unit-square positions: round(position * (canvas - 28))."""
    return np.rint(np.asarray(positions) * (canvas - digit_size)).astype(np.int64)


def render(digit_images: np.ndarray, trajectories: np.ndarray, canvas: int = 64) -> np.ndarray:
    """Frames (T, canvas, canvas, 1) uint8: each digit (K, h, w) pasted at its trajectory
    (K, T, 2, unit square) and all combined by pixel-wise max."""
    digit_images = np.asarray(digit_images, dtype=np.uint8)
    k, h, w = digit_images.shape
    if h != w:
        raise ValueError(f"digits must be square, got {h}x{w}")
    if canvas < h:
        raise ValueError(f"canvas {canvas} is smaller than the digits ({h}x{w})")
    length = trajectories.shape[1]
    frames = np.zeros((length, canvas, canvas), dtype=np.uint8)
    pix = to_pixels(trajectories, canvas, h)
    for j in range(k):
        img = digit_images[j]
        for t in range(length):
            r, c = pix[j, t]
            win = frames[t, r : r + h, c : c + w]
            np.maximum(win, img, out=win)
    return frames[..., None]


def moving_mnist_video(
    rng: np.random.Generator,
    digits: np.ndarray,
    labels: np.ndarray,
    length: int,
    num_digits: int = 2,
    canvas: int = 64,
    speed: float = 0.1,
) -> tuple[np.ndarray, dict]:
    """One Moving MNIST video.

    Returns frames (length, canvas, canvas, 1) uint8 and info ``{"digit_labels": [int],
    "digit_indices": [int] (rows of ``digits``), "trajectory": [[[y, x] per frame] per digit]}``
    (unit-square top-left positions). Draws from ``rng``: per digit, its index, then its start
    (y, x) and direction.
    """
    if num_digits < 1:
        raise ValueError(f"num_digits must be >= 1, got {num_digits}")
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    if len(digits) == 0 or len(digits) != len(labels):
        raise ValueError(
            f"need a non-empty digit set with one label each, got "
            f"{len(digits)} digits and {len(labels)} labels"
        )
    indices, trajs = [], []
    for _ in range(num_digits):
        indices.append(int(rng.integers(len(digits))))
        trajs.append(bounce_trajectory(rng, length, speed))
    traj = np.stack(trajs)
    frames = render(digits[indices], traj, canvas)
    info = {
        "digit_labels": [int(labels[i]) for i in indices],
        "digit_indices": indices,
        "trajectory": traj.tolist(),
    }
    return frames, info


def generate(
    num_videos: int,
    length: int,
    *,
    num_digits: int = 2,
    split: str = "train",
    seed: int = 0,
    root: str | None = None,
    start: int = 0,
) -> Iterator[tuple[str, np.ndarray, dict]]:
    """Yield ``(video_id, frames, attrs)`` for videos ``start .. num_videos - 1``.

    ``video_id`` is ``f"mm-{split}-{i:06d}"``; video ``i`` uses ``np.random.default_rng([seed,
    s, i])`` (s = 0 for train, 1 for test), so it is the same whatever ``start`` is, and train
    and test never share motions. Digits come from ``load_digits(split, root)``. ``attrs`` is
    JSON-serialisable: source, split, num_frames, fps, label (the digit's class for one-digit
    videos, else None), digits (labels), num_digits, seed, index, and digit_indices: rows in the
    packaged ``mnist_5k.npz`` (``root=None``) or in torchvision's MNIST split (``root`` given).
    """
    if num_digits < 1 or length < 1:
        raise ValueError(f"need num_digits >= 1 and length >= 1, got {num_digits}, {length}")
    if num_videos < 0 or start < 0:
        raise ValueError(f"need num_videos >= 0 and start >= 0, got {num_videos}, {start}")
    if split not in _SPLIT_STREAM:
        raise ValueError(f"unknown split {split!r}: expected 'train' or 'test'")
    digits, labels = load_digits(split, root)
    rows = split_indices(split) if root is None else np.arange(len(digits))
    # Arguments are checked and digits loaded now, at the call, not at the first next().
    return _generate(num_videos, length, num_digits, split, seed, start, digits, labels, rows)


def _generate(
    num_videos: int,
    length: int,
    num_digits: int,
    split: str,
    seed: int,
    start: int,
    digits: np.ndarray,
    labels: np.ndarray,
    rows: np.ndarray,
) -> Iterator[tuple[str, np.ndarray, dict]]:
    for i in range(start, num_videos):
        rng = np.random.default_rng([seed, _SPLIT_STREAM[split], i])
        frames, info = moving_mnist_video(rng, digits, labels, length, num_digits)
        attrs = {
            "source": "moving_mnist",
            "split": split,
            "num_frames": length,
            "fps": FPS,
            "label": info["digit_labels"][0] if num_digits == 1 else None,
            "digits": info["digit_labels"],
            "digit_indices": [int(rows[j]) for j in info["digit_indices"]],
            "num_digits": num_digits,
            "seed": seed,
            "index": i,
        }
        yield f"mm-{split}-{i:06d}", frames, attrs


def iter_npy_sequences(path: str, mmap: bool = True) -> Iterator[tuple[str, np.ndarray, dict]]:
    """Yield ``(f"npy-{i:06d}", frames (T, H, W, 1) uint8, attrs)`` for each sequence of a
    Moving MNIST ``.npy`` file laid out (T, N, H, W) uint8, such as ``mnist_test_seq.npy``
    (20 x 10000 x 64 x 64). ``attrs``: source (the path), index, num_frames, fps.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Moving MNIST file not found: {path}")
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise ValueError(f"{path}: not a readable .npy array ({e})") from e
    if not isinstance(arr, np.ndarray):
        arr.close()
        raise ValueError(f"{path}: expected a single .npy array, got an archive of arrays")
    if arr.dtype != np.uint8:
        raise ValueError(f"{path}: expected dtype uint8, got {arr.dtype}")
    if arr.ndim != 4:
        raise ValueError(
            f"{path}: expected 4 dimensions (T, N, H, W) like mnist_test_seq.npy, "
            f"got shape {arr.shape}"
        )
    return _iter_npy(path, arr)


def _iter_npy(path: str, arr: np.ndarray) -> Iterator[tuple[str, np.ndarray, dict]]:
    t, n = arr.shape[:2]
    for i in range(n):
        frames = np.ascontiguousarray(arr[:, i])[..., None]
        yield f"npy-{i:06d}", frames, {"source": path, "index": i, "num_frames": t, "fps": FPS}


class MovingMNISTStream(torch.utils.data.IterableDataset):
    """Endless batches of fresh training sequences, generated on the fly as Srivastava et al.
    trained (no sequence is seen twice): uint8 (B, length, 64, 64, 1), like `ClipDataset`.

    Sequence i of batch b is drawn from ``default_rng([seed, 2, b, i])`` (stream 2: never a
    stored video's), so the sequence of batches is the same for any number of DataLoader
    workers, a resumed run (`skip_batches`) continues it exactly, and `rows=(start, stop)` makes
    only those sequences of every batch, the same as the full batch's rows: a data-parallel
    rank makes its own slice, not the global batch. Digits are the training digits only.
    """

    def __init__(
        self,
        length: int,
        batch_size: int,
        *,
        num_digits: int = 2,
        seed: int = 0,
        root: str | None = None,
        skip_batches: int = 0,
        rows: tuple[int, int] | None = None,
    ) -> None:
        self.length, self.batch_size, self.num_digits = length, batch_size, num_digits
        self.seed, self.root, self.skip_batches = seed, root, skip_batches
        start, stop = rows if rows is not None else (0, batch_size)
        if not 0 <= start < stop <= batch_size:
            raise ValueError(f"rows={rows}: need 0 <= start < stop <= batch_size={batch_size}")
        self.rows = (start, stop)
        self.categories: list = []  # no labels: two-digit sequences have no single class
        self._digits: tuple[np.ndarray, np.ndarray] | None = None  # loaded once per process

    def batch(self, b: int) -> np.ndarray:
        """Batch number b of the stream, its `rows`: (stop - start, length, 64, 64, 1) uint8."""
        if self._digits is None:
            self._digits = load_digits("train", self.root)
        digits, labels = self._digits
        videos = []
        for i in range(*self.rows):
            rng = np.random.default_rng([self.seed, 2, b, i])
            videos.append(moving_mnist_video(rng, digits, labels, self.length, self.num_digits)[0])
        return np.stack(videos)

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        b = self.skip_batches + worker
        while True:
            yield torch.from_numpy(self.batch(b))
            b += workers
