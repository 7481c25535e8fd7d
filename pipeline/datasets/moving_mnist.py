"""Moving MNIST, made as Srivastava, Mansimov and Salakhutdinov (ICML 2015) made it.

Rules (from the authors' generator, data_handler.py's BouncingMNISTDataHandler in
github.com/emansim/unsupervised-videos):

- a ``canvas`` x ``canvas`` frame (64 x 64) and 28 x 28 digits;
- each digit's top-left corner lives in the unit square, which maps to pixels
  ``[0, canvas - 28]`` per axis: pixel = int(position * (canvas - 28)), truncated as the
  authors' ``astype(np.int32)`` does (rounding instead would shift every digit by half a pixel
  on average);
- the start position is uniform in the unit square, the direction theta uniform in [0, 2 pi), the
  velocity ``speed * (cos theta, sin theta)`` (speed 0.1 of the unit square per frame);
- each frame: take one step, then bounce: a coordinate at or beyond 0 or 1 is clamped to the wall
  and that velocity component flips. As in the original code, frame 0 is the position after the
  first step;
- digits are dealt as the authors deal them: passes over the digit set, each in a fresh random
  order, a video taking the next ``num_digits`` digits (so within a pass no digit repeats;
  ``digit_deck``); they are combined by pixel-wise max.

Positions are ``(y, x)`` = (row, column) pairs. Video ``i`` of ``generate`` depends only on
``(seed, split, i)`` (its motion on ``default_rng([seed, s, i])``, its digits on the deck of
``(seed, split)``), so shards of a large set can be generated in parallel with identical results.

``iter_npy_sequences`` reads the public ``mnist_test_seq.npy`` (uint8, (T, N, 64, 64)).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator

import numpy as np
import torch

from pipeline.datasets.mnist import digit_source, load_digits, split_indices

FPS = 10
DIGIT_SIZE = 28
_SPLIT_STREAM = {"train": 0, "test": 1}
# default_rng([seed, stream, ...]) streams: 0/1 a stored video's motion (train/test), 2 a
# training-stream sequence's, 3/4 the digit deck of stored train/test videos, 5 the stream's.
# (A key's trailing zeros do not change the seed, so streams differ in their second entry.)
_DECK_STREAM = {"train": 3, "test": 4, "stream": 5}


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
    """Top-left pixel (row, col) int64 of unit-square positions: int(position * (canvas - 28)),
    truncated like the authors' generator."""
    return (np.asarray(positions, dtype=np.float64) * (canvas - digit_size)).astype(np.int64)


@functools.lru_cache(maxsize=8)
def _shuffled(size: int, key: tuple[int, ...]) -> np.ndarray:
    order = np.random.default_rng(list(key)).permutation(size)
    order.setflags(write=False)
    return order


def digit_deck(size: int, key: tuple[int, ...], start: int, count: int) -> np.ndarray:
    """Rows ``start .. start + count - 1`` (int64) of an endless deal of ``size`` digits: pass
    ``p`` over the digit set is a random order drawn from ``default_rng([*key, p])``, the passes
    follow one another. The authors' generator deals digits this way (a shuffled index it walks
    through, reshuffled when used up), so within a pass every digit appears once; position
    ``n`` depends only on ``(size, key, n)``, which keeps shards and workers independent."""
    if size < 1 or start < 0 or count < 0:
        raise ValueError(f"need size >= 1, start >= 0, count >= 0; got {size}, {start}, {count}")
    out = np.empty(count, dtype=np.int64)
    for j, n in enumerate(range(start, start + count)):
        deal, at = divmod(n, size)
        out[j] = _shuffled(size, (*key, deal))[at]
    return out


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
    indices: np.ndarray | list[int],
    canvas: int = 64,
    speed: float = 0.1,
) -> tuple[np.ndarray, dict]:
    """One Moving MNIST video of the digits ``indices`` (rows of ``digits``, one per digit of
    the video: ``digit_deck`` deals them).

    Returns frames (length, canvas, canvas, 1) uint8 and info ``{"digit_labels": [int],
    "digit_indices": [int] (rows of ``digits``), "trajectory": [[[y, x] per frame] per digit]}``
    (unit-square top-left positions). Draws from ``rng``: per digit, its start (y, x) and
    direction.
    """
    indices = [int(i) for i in indices]
    if not indices:
        raise ValueError("a video needs at least one digit, got no indices")
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    if len(digits) == 0 or len(digits) != len(labels):
        raise ValueError(
            f"need a non-empty digit set with one label each, got "
            f"{len(digits)} digits and {len(labels)} labels"
        )
    if min(indices) < 0 or max(indices) >= len(digits):
        raise ValueError(f"digit indices {indices} outside the {len(digits)} digits")
    traj = np.stack([bounce_trajectory(rng, length, speed) for _ in indices])
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

    ``video_id`` is ``f"mm-{split}-{i:06d}"``; video ``i``'s motion uses
    ``np.random.default_rng([seed, s, i])`` (s = 0 for train, 1 for test) and its digits are
    positions ``i * num_digits ..`` of the split's ``digit_deck``, so it is the same whatever
    ``start`` is, and train and test never share motions. Digits come from
    ``load_digits(split, root)``. ``attrs`` is JSON-serialisable: source, split, num_frames, fps,
    label (the digit's class for one-digit videos, else None), digits (labels), num_digits,
    seed, index, digit_source ("mnist_5k": the packaged digits, ``root=None``; "mnist": the full
    MNIST of ``root``: ``mnist.digit_source``) and digit_indices: rows in the packaged
    ``mnist_5k.npz`` or in torchvision's MNIST split.
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
    return _generate(num_videos, length, num_digits, split, seed, start, digits, labels, rows, root)


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
    root: str | None,
) -> Iterator[tuple[str, np.ndarray, dict]]:
    key = (seed, _DECK_STREAM[split])
    for i in range(start, num_videos):
        rng = np.random.default_rng([seed, _SPLIT_STREAM[split], i])
        picks = digit_deck(len(digits), key, i * num_digits, num_digits)
        frames, info = moving_mnist_video(rng, digits, labels, length, picks)
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
            "digit_source": digit_source(root),
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

    Sequence i of batch b moves as ``default_rng([seed, 2, b, i])`` draws (stream 2: never a
    stored video's) and shows digits ``(b * batch_size + i) * num_digits ..`` of the deck of
    ``seed`` (``digit_deck``: shuffled passes over the digits, as the authors deal them), so the
    sequence of batches is the same for any number of DataLoader workers, a resumed run
    (`skip_batches`) continues it exactly, and `rows=(start, stop)` makes only those sequences
    of every batch, the same as the full batch's rows: a data-parallel rank makes its own
    slice, not the global batch. Digits are the training digits only.
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
        k, key = self.num_digits, (self.seed, _DECK_STREAM["stream"])
        videos = []
        for i in range(*self.rows):
            rng = np.random.default_rng([self.seed, 2, b, i])
            picks = digit_deck(len(digits), key, (b * self.batch_size + i) * k, k)
            videos.append(moving_mnist_video(rng, digits, labels, self.length, picks)[0])
        return np.stack(videos)

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        b = self.skip_batches + worker
        while True:
            yield torch.from_numpy(self.batch(b))
            b += workers
