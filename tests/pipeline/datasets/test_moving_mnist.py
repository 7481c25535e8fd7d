"""Moving MNIST generator, packaged digits and npy import."""

from __future__ import annotations

import io
import json
from importlib.resources import files

import numpy as np
import pytest

from pipeline.datasets.mnist import load_digits, split_indices
from pipeline.datasets.moving_mnist import (
    bounce_trajectory,
    digit_deck,
    generate,
    iter_npy_sequences,
    moving_mnist_video,
    to_pixels,
)


def _packaged() -> tuple[np.ndarray, np.ndarray]:
    data = files("pipeline.datasets").joinpath("mnist_5k.npz").read_bytes()
    with np.load(io.BytesIO(data)) as z:
        return z["images"], z["labels"]


def _on_wall(p: np.ndarray) -> np.ndarray:
    return np.any((p == 0.0) | (p == 1.0), axis=-1)


# ---------------------------------------------------------------- trajectories


def test_speed_is_0_1_per_frame_except_on_bounces() -> None:
    rng = np.random.default_rng(0)
    bounces = 0
    for _ in range(20):
        p = bounce_trajectory(rng, 200, 0.1)
        assert p.shape == (200, 2)
        assert p.min() >= 0.0 and p.max() <= 1.0
        step = np.diff(p, axis=0)
        norm = np.linalg.norm(step, axis=1)
        wall = _on_wall(p)[1:]
        bounces += int(wall.sum())
        np.testing.assert_allclose(norm[~wall], 0.1, rtol=0, atol=1e-12)
        assert np.all(norm[wall] <= 0.1 + 1e-12)
        # Between bounces the velocity does not change.
        free = ~wall[1:] & ~wall[:-1] & ~_on_wall(p)[:-2]
        np.testing.assert_allclose(step[1:][free], step[:-1][free], atol=1e-12)
    assert bounces > 20  # the check above really covered bounce frames


def test_direction_is_uniform() -> None:
    rng = np.random.default_rng(1)
    # Start in the middle: the first step is never clamped, so it shows the drawn direction.
    angles = np.array(
        [np.arctan2(*(bounce_trajectory(rng, 1, start=(0.5, 0.5))[0] - 0.5)) for _ in range(4000)]
    )
    hist, _ = np.histogram(angles, bins=8, range=(-np.pi, np.pi))
    assert hist.min() > 400 and hist.max() < 600


def test_bounce_clamps_and_flips_x() -> None:
    rng = np.random.default_rng(0)
    p = bounce_trajectory(rng, 3, 0.1, start=(0.5, 0.95), theta=0.0)  # heading right, +x
    np.testing.assert_allclose(p, [[0.5, 1.0], [0.5, 0.9], [0.5, 0.8]], atol=1e-12)


def test_bounce_clamps_and_flips_y_at_zero() -> None:
    rng = np.random.default_rng(0)
    p = bounce_trajectory(rng, 3, 0.1, start=(0.04, 0.3), theta=-np.pi / 2)  # heading up, -y
    np.testing.assert_allclose(p, [[0.0, 0.3], [0.1, 0.3], [0.2, 0.3]], atol=1e-12)


def test_bounce_in_a_corner_flips_both() -> None:
    rng = np.random.default_rng(0)
    d = 0.1 / np.sqrt(2)
    p = bounce_trajectory(rng, 2, 0.1, start=(0.98, 0.98), theta=np.pi / 4)
    np.testing.assert_allclose(p, [[1.0, 1.0], [1.0 - d, 1.0 - d]], atol=1e-12)


# ---------------------------------------------------------------- rendering


def _render_alone(digit: np.ndarray, traj: np.ndarray, canvas: int = 64) -> np.ndarray:
    out = np.zeros((len(traj), canvas, canvas), np.uint8)
    for t, (y, x) in enumerate(traj):
        r, c = int(y * (canvas - 28)), int(x * (canvas - 28))  # truncated, as the authors
        out[t, r : r + 28, c : c + 28] = digit
    return out


def test_frames_are_pixelwise_max_of_single_digits() -> None:
    digits, labels = load_digits("train")
    overlaps = 0
    for s in range(5):
        picks = np.random.default_rng(100 + s).integers(len(digits), size=3)
        frames, info = moving_mnist_video(np.random.default_rng(s), digits, labels, 20, picks)
        assert frames.shape == (20, 64, 64, 1) and frames.dtype == np.uint8
        assert info["digit_labels"] == [int(labels[i]) for i in info["digit_indices"]]
        alone = [
            _render_alone(digits[i], np.asarray(tr))
            for i, tr in zip(info["digit_indices"], info["trajectory"], strict=True)
        ]
        np.testing.assert_array_equal(frames[..., 0], np.maximum.reduce(alone))
        for tr in info["trajectory"]:  # the default speed is Srivastava's 0.1
            tr = np.asarray(tr)
            norm = np.linalg.norm(np.diff(tr, axis=0), axis=1)
            np.testing.assert_allclose(norm[~_on_wall(tr)[1:]], 0.1, atol=1e-12)
        lit = np.sum([a > 0 for a in alone], axis=0)
        overlaps += int((lit > 1).sum())
    assert overlaps > 0  # digits did overlap, so max (not sum or paste order) was tested


def test_digit_at_far_corner_lands_at_pixel_36() -> None:
    digits, labels = load_digits("test")
    frames, info = moving_mnist_video(np.random.default_rng(3), digits, labels, 50, [7])
    traj = np.asarray(info["trajectory"][0])
    t = int(np.flatnonzero((traj == 1.0).any(axis=1))[0])
    y, x = traj[t]
    r, c = int(y * 36), int(x * 36)
    assert 36 in (r, c)
    np.testing.assert_array_equal(
        frames[t, r : r + 28, c : c + 28, 0], digits[info["digit_indices"][0]]
    )


# ---------------------------------------------------------------- generate


def test_seed_determinism_and_sharding() -> None:
    a = list(generate(4, 8, seed=5))
    b = list(generate(4, 8, seed=5))
    c = list(generate(4, 8, seed=6))
    shard = list(generate(4, 8, seed=5, start=2))
    assert [v for v, _, _ in a] == [f"mm-train-{i:06d}" for i in range(4)]
    for (ia, fa, aa), (ib, fb, ab) in zip(a, b, strict=True):
        assert ia == ib and aa == ab
        np.testing.assert_array_equal(fa, fb)
    assert all(not np.array_equal(fa, fc) for (_, fa, _), (_, fc, _) in zip(a, c, strict=True))
    assert [v for v, _, _ in shard] == ["mm-train-000002", "mm-train-000003"]
    for (ia, fa, aa), (ib, fb, ab) in zip(a[2:], shard, strict=True):
        assert ia == ib and aa == ab
        np.testing.assert_array_equal(fa, fb)
    # Different videos of one seed differ.
    assert not np.array_equal(a[0][1], a[1][1])


def test_attrs() -> None:
    ((vid, frames, attrs),) = list(generate(1, 12, num_digits=3, split="test", seed=9))
    assert vid == "mm-test-000000" and frames.shape == (12, 64, 64, 1)
    json.dumps(attrs)
    assert attrs["source"] == "moving_mnist" and attrs["split"] == "test"
    assert attrs["num_frames"] == 12 and attrs["fps"] == 10 and attrs["num_digits"] == 3
    assert attrs["seed"] == 9 and attrs["index"] == 0 and attrs["label"] is None
    assert len(attrs["digits"]) == 3 and len(attrs["digit_indices"]) == 3
    ((_, _, one),) = list(generate(1, 5, num_digits=1, seed=9))
    assert one["label"] == one["digits"][0]


def test_train_and_test_digits_are_disjoint() -> None:
    images, labels = _packaged()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (5000,) and labels.dtype == np.uint8
    tr_x, tr_y = load_digits("train")
    te_x, te_y = load_digits("test")
    assert tr_x.shape == (4000, 28, 28) and te_x.shape == (1000, 28, 28)
    assert tr_x.dtype == np.uint8 and tr_y.shape == (4000,) and te_y.shape == (1000,)
    # Every class in both splits (the file is sorted by label, so a plain cut would not do it).
    assert np.bincount(tr_y, minlength=10).tolist() == [400] * 10
    assert np.bincount(te_y, minlength=10).tolist() == [100] * 10
    tr_rows, te_rows = split_indices("train"), split_indices("test")
    assert not set(tr_rows.tolist()) & set(te_rows.tolist())
    np.testing.assert_array_equal(tr_x, images[tr_rows])
    np.testing.assert_array_equal(te_x, images[te_rows])
    tr_set = {x.tobytes() for x in tr_x}
    assert not any(x.tobytes() in tr_set for x in te_x)

    for split, rows in (("train", tr_rows), ("test", te_rows)):
        allowed = set(rows.tolist())
        for _, _, attrs in generate(40, 2, num_digits=3, split=split, seed=1):
            assert set(attrs["digit_indices"]) <= allowed
            assert attrs["digits"] == [int(labels[i]) for i in attrs["digit_indices"]]


def test_bad_split_and_missing_root(tmp_path) -> None:
    with pytest.raises(ValueError, match="valid"):
        load_digits("valid")
    with pytest.raises(ValueError, match="valid"):
        generate(1, 2, split="valid")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nomnist")):
        load_digits("train", root=str(tmp_path / "nomnist"))


# ---------------------------------------------------------------- npy import


@pytest.mark.parametrize("mmap", [True, False])
def test_npy_import(tmp_path, mmap: bool) -> None:
    arr = np.random.default_rng(0).integers(0, 256, (5, 3, 64, 64), dtype=np.uint8)
    path = tmp_path / "mnist_test_seq.npy"
    np.save(path, arr)
    out = list(iter_npy_sequences(str(path), mmap=mmap))
    assert [v for v, _, _ in out] == ["npy-000000", "npy-000001", "npy-000002"]
    for i, (_, frames, attrs) in enumerate(out):
        assert frames.shape == (5, 64, 64, 1) and frames.dtype == np.uint8
        np.testing.assert_array_equal(frames[..., 0], arr[:, i])
        assert attrs == {"source": str(path), "index": i, "num_frames": 5, "fps": 10}
        json.dumps(attrs)


def test_npy_import_errors(tmp_path) -> None:
    bad_dtype = tmp_path / "float.npy"
    np.save(bad_dtype, np.zeros((2, 2, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"float\.npy.*uint8"):
        iter_npy_sequences(str(bad_dtype))
    bad_ndim = tmp_path / "three.npy"
    np.save(bad_ndim, np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"three\.npy.*4 dimensions"):
        iter_npy_sequences(str(bad_ndim))
    missing = tmp_path / "missing.npy"
    with pytest.raises(FileNotFoundError, match=r"missing\.npy"):
        iter_npy_sequences(str(missing))
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"not numpy")
    with pytest.raises(ValueError, match=r"garbage\.npy"):
        iter_npy_sequences(str(garbage))


def test_stream_is_fresh_deterministic_and_resumable() -> None:
    import torch
    from torch.utils.data import DataLoader

    from pipeline.datasets.moving_mnist import MovingMNISTStream

    def take(n: int, workers: int = 0, skip: int = 0) -> list[np.ndarray]:
        ds = MovingMNISTStream(6, 3, seed=4, skip_batches=skip)
        it = iter(DataLoader(ds, batch_size=None, num_workers=workers))
        return [next(it).numpy() for _ in range(n)]

    a = take(4)
    assert a[0].shape == (3, 6, 64, 64, 1) and a[0].dtype == np.uint8
    assert not np.array_equal(a[0], a[1])  # every batch is new
    assert all(np.array_equal(x, y) for x, y in zip(a, take(4, workers=2)))
    assert all(np.array_equal(x, y) for x, y in zip(a[2:], take(2, skip=2)))
    assert isinstance(torch.from_numpy(a[0]), torch.Tensor)
    # a data-parallel rank makes only its rows of each global batch, the same rows
    full = MovingMNISTStream(6, 4, seed=4).batch(7)
    halves = [MovingMNISTStream(6, 4, seed=4, rows=r).batch(7) for r in ((0, 2), (2, 4))]
    assert np.array_equal(np.concatenate(halves), full)
    with pytest.raises(ValueError, match="rows"):
        MovingMNISTStream(6, 4, rows=(2, 6))


# ---------------------------------------------------------------- the authors' rules


def test_positions_are_truncated_like_the_authors_generator() -> None:
    """pixel = int(position * 36) (astype(np.int32) in the authors' code), not rounded."""
    pos = np.array([[0.0, 1.0], [0.49, 0.51], [0.999, 0.0139], [0.5, 0.0277]])
    np.testing.assert_array_equal(to_pixels(pos), [[0, 36], [17, 18], [35, 0], [18, 0]])
    assert to_pixels(pos).dtype == np.int64


def test_digits_are_dealt_in_shuffled_passes() -> None:
    """As the authors deal digits: every pass over the set is a fresh random order (no digit
    twice within a pass), and any stretch of the deal is the same however it is cut."""
    deal = digit_deck(10, (0, 3), 0, 30)
    for p in range(3):
        assert sorted(deal[10 * p : 10 * (p + 1)].tolist()) == list(range(10))
    assert not np.array_equal(deal[:10], deal[10:20])  # each pass reshuffled
    np.testing.assert_array_equal(digit_deck(10, (0, 3), 7, 9), deal[7:16])  # across passes
    assert not np.array_equal(digit_deck(10, (1, 3), 0, 10), deal[:10])  # another seed
    with pytest.raises(ValueError, match="size"):
        digit_deck(0, (0,), 0, 1)


def test_generate_uses_every_training_digit_once_per_pass() -> None:
    """2,000 two-digit videos are one pass over the 4,000 packaged training digits."""
    rows = set(split_indices("train").tolist())
    used = [i for _, _, a in generate(2000, 1, seed=3) for i in a["digit_indices"]]
    assert len(used) == 4000 and set(used) == rows
    again = [i for _, _, a in generate(2010, 1, seed=3, start=1990) for i in a["digit_indices"]]
    assert again[:20] == used[-20:]  # a shard deals the same digits
    assert set(again[20:]) <= rows  # the next pass


def test_videos_record_their_digit_source() -> None:
    ((_, _, attrs),) = list(generate(1, 2, seed=0))
    assert attrs["digit_source"] == "mnist_5k"
