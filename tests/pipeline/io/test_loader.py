"""ClipDataset: clips equal the stored frames, splits, determinism, workers, both modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pipeline.io.loader import ClipDataset, select_videos, to_model_input, video_split
from pipeline.io.store import FrameStore


def _all_clips(store: FrameStore, ids: list[str], length: int, stride: int) -> np.ndarray:
    out = []
    for v in ids:
        f = store.frames(v)
        out += [f[s : s + length] for s in range(0, len(f) - length + 1, stride)]
    return np.stack(out)


def _sorted(clips: np.ndarray) -> np.ndarray:
    flat = clips.reshape(len(clips), -1)
    return clips[np.lexsort(flat.T[::-1])]


@pytest.mark.parametrize("cache", [True, False])
@pytest.mark.parametrize("stride", [1, 3])
def test_clips_match_frames_once_per_epoch(tiny_store: str, cache: bool, stride: int) -> None:
    ds = ClipDataset(tiny_store, 10, 7, stride=stride, split="train", cache=cache, block_frames=8)
    batches = list(ds)
    got = torch.cat(batches).numpy()
    store = FrameStore.open(tiny_store)
    want = _all_clips(store, ["v0", "v1", "v2", "v3"], 10, stride)
    assert got.dtype == np.uint8 and got.shape[1:] == (10, 16, 16, 1)
    assert len(got) == ds.num_clips == len(want)
    assert np.array_equal(_sorted(got), _sorted(want))  # every clip exactly once
    assert all(len(b) == 7 for b in batches[:-1]) and len(batches) == len(ds)


def test_unshuffled_streaming_order_is_the_natural_order(tiny_store: str) -> None:
    ds = ClipDataset(tiny_store, 5, 4, stride=5, split=None, cache=False, shuffle=False)
    got = torch.cat(list(ds)).numpy()
    store = FrameStore.open(tiny_store)
    assert np.array_equal(got, _all_clips(store, store.video_ids(), 5, 5))


@pytest.mark.parametrize("cache", [True, False])
def test_seeded_order_is_reproducible(tiny_store: str, cache: bool) -> None:
    def run(seed: int) -> np.ndarray:
        ds = ClipDataset(tiny_store, 10, 5, split="train", cache=cache, seed=seed, epochs=2)
        return torch.cat(list(ds)).numpy()

    a, b, c = run(1), run(1), run(2)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    half = len(a) // 2
    assert not np.array_equal(a[:half], a[half:])  # epochs are shuffled differently


def test_dataloader_workers_cover_the_epoch(tiny_store: str) -> None:
    ds = ClipDataset(tiny_store, 10, 8, split="train", cache=False, block_frames=8, seed=3)
    loader = DataLoader(ds, batch_size=None, num_workers=2)
    got = torch.cat(list(loader)).numpy()
    store = FrameStore.open(tiny_store)
    want = _all_clips(store, ["v0", "v1", "v2", "v3"], 10, 1)
    assert np.array_equal(_sorted(got), _sorted(want))


def test_split_by_video_never_mixes(tiny_store: str) -> None:
    store = FrameStore.open(tiny_store)
    assert select_videos(store, "train") == ["v0", "v1", "v2", "v3"]
    assert select_videos(store, "test") == ["v4", "v5"]
    ids = [f"clip-{i}" for i in range(2000)]
    test = [v for v in ids if video_split(v, {}, 0.1) == "test"]
    assert 150 < len(test) < 250  # the hash split honours the fraction
    assert test == [v for v in ids if video_split(v, {}, 0.1) == "test"]  # and is stable
    with pytest.raises(ValueError, match="split"):
        select_videos(store, "val")


def test_too_short_or_empty_selection_is_a_clear_error(tiny_store: str) -> None:
    with pytest.raises(ValueError, match="no videos with at least 41 frames"):
        ClipDataset(tiny_store, 41, 4)


def test_to_model_input_layout_and_range() -> None:
    b = torch.randint(0, 256, (2, 3, 4, 5, 1), dtype=torch.uint8)
    x = to_model_input(b, "cpu")
    assert x.shape == (2, 3, 1, 4, 5) and x.dtype == torch.float32
    assert torch.allclose(x[:, :, 0], b[..., 0].float() / 255)


@pytest.mark.parametrize("cache", [True, False])
def test_skip_batches_resumes_the_same_sequence(tiny_store: str, cache: bool) -> None:
    def batches(skip: int, workers: int = 0) -> list[np.ndarray]:
        ds = ClipDataset(
            tiny_store, 10, 7, cache=cache, seed=5, epochs=3, drop_last=True, skip_batches=skip
        )
        loader = DataLoader(ds, batch_size=None, num_workers=workers)
        return [b.numpy() for b in loader]

    full = batches(0)
    for skip in (3, len(full) // 3 + 2):
        rest = batches(skip)
        assert len(rest) == len(full) - skip
        assert all(np.array_equal(a, b) for a, b in zip(rest, full[skip:]))
    if cache:  # exact with DataLoader workers too, across epoch boundaries
        for skip in (0, 5):
            rest = batches(skip, workers=2)
            assert len(rest) == len(full) - skip
            assert all(np.array_equal(a, b) for a, b in zip(rest, full[skip:]))


@pytest.mark.parametrize("cache", [True, False])
def test_labels_travel_with_their_clips(tmp_path, cache: bool) -> None:
    store = FrameStore.create(str(tmp_path / "l.zarr"))
    names = ["walk", "wave", "jump"]
    for i in range(6):
        # every frame of video i is filled with i, so a clip tells which video it came from
        frames = np.full((12, 4, 4, 1), i, np.uint8)
        store.write_video(f"v{i}", frames, {"source": "x", "label": names[i % 3]})
    ds = ClipDataset(store, 5, 4, split=None, cache=cache, labels=True, seed=2)
    assert ds.categories == ["jump", "walk", "wave"]
    n = 0
    for batch in ds:
        video = batch["frames"][:, 0, 0, 0, 0].numpy()
        want = [ds.categories.index(names[v % 3]) for v in video]
        assert batch["label"].tolist() == want and batch["label"].dtype == torch.int64
        n += len(video)
    assert n == ds.num_clips
    store.write_video("v9", np.zeros((12, 4, 4, 1), np.uint8), {"source": "x"})
    with pytest.raises(ValueError, match="v9 .* no 'label'"):
        ClipDataset(store, 5, 4, split=None, labels=True)


# ---------------------------------------------------------------------- rows (lanes)
LENGTHS = (23, 31, 17, 40, 28)


def _lanes_store(tmp_path) -> FrameStore:
    """Videos of different lengths, labels and keypoints, small chunks. Pixel (0, 0) of a frame
    holds its video's index and pixel (0, 1) its frame index, so a clip tells where it is from."""
    store = FrameStore.create(str(tmp_path / "lanes.zarr"))
    rng = np.random.default_rng(0)
    for i, n in enumerate(LENGTHS):
        frames = rng.integers(0, 256, (n, 6, 6, 1), dtype=np.uint8)
        frames[:, 0, 0, 0], frames[:, 0, 1, 0] = i, np.arange(n)
        kp = rng.random((n, 3, 2)).astype(np.float32)
        store.write_video(f"v{i}", frames, {"source": "x", "label": i % 3}, kp, chunk_frames=4)
    return store


def _run(store: FrameStore, rows: tuple[int, int], **kw) -> tuple[list[dict], ClipDataset]:
    kw = {"split": None, "block_frames": 6, "seed": 1, "epochs": 2, **kw}
    ds = ClipDataset(store, kw.pop("length", 4), kw.pop("batch", 8), rows=rows, **kw)
    out = [b if isinstance(b, dict) else {"frames": b} for b in ds]
    return [{k: v.numpy() for k, v in b.items()} for b in out], ds


def _same(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x) for x, y in zip(a, b)
    )


def _joined(parts: list[list[dict]]) -> list[dict]:
    return [{k: np.concatenate([p[k] for p in ps]) for k in ps[0]} for ps in zip(*parts)]


@pytest.mark.parametrize("extras", [False, True])
@pytest.mark.parametrize("cache", [True, False])
def test_rows_of_ranks_make_the_one_rank_batch(tmp_path, cache: bool, extras: bool) -> None:
    store = _lanes_store(tmp_path)
    kw = {"cache": cache, "labels": extras, "keypoints": extras}
    one, ds = _run(store, (0, 8), **kw)
    assert len(one) == 2 * len(ds) and set(one[0]) == (
        {"frames", "label", "keypoints"} if extras else {"frames"}
    )
    for split in ([(0, 4), (4, 8)], [(0, 2), (2, 4), (4, 6), (6, 8)]):
        assert _same(_joined([_run(store, r, **kw)[0] for r in split]), one)


@pytest.mark.parametrize("rows", [(0, 8), (2, 5)])
def test_rows_cached_and_streaming_agree(tmp_path, rows: tuple[int, int]) -> None:
    store = _lanes_store(tmp_path)
    for kw in ({}, {"stride": 2, "block_frames": 5}, {"shuffle": False}):
        cached, _ = _run(store, rows, cache=True, keypoints=True, **kw)
        streamed, _ = _run(store, rows, cache=False, keypoints=True, **kw)
        assert len(cached) > 0 and _same(cached, streamed)


@pytest.mark.parametrize("cache", [True, False])
def test_rows_epoch_is_one_clip_per_lane_without_repeats(tmp_path, cache: bool) -> None:
    store = _lanes_store(tmp_path)
    batches, ds = _run(store, (0, 8), cache=cache, labels=True, keypoints=True)
    starts = [range(n - 3) for n in LENGTHS]
    canonical = [(v, s) for v, r in enumerate(starts) for s in r]
    n = len(canonical)
    frames = [store.frames(f"v{v}") for v in range(len(LENGTHS))]
    keypoints = [store.keypoints(f"v{v}") for v in range(len(LENGTHS))]
    assert ds.num_clips == n and len(ds) == n // 8 == len(batches) // 2
    for epoch in (batches[: len(ds)], batches[len(ds) :]):
        seen = set()
        for b in epoch:
            assert b["frames"].shape == (8, 4, 6, 6, 1)
            for j, (clip, label, kp) in enumerate(zip(b["frames"], b["label"], b["keypoints"])):
                v, s = int(clip[0, 0, 0, 0]), int(clip[0, 0, 1, 0])
                np.testing.assert_array_equal(clip, frames[v][s : s + 4])
                np.testing.assert_array_equal(kp, keypoints[v][s : s + 4])
                assert label == v % 3
                # row j is a clip of lane j, the j-th eighth of the canonical list
                assert j * n // 8 <= canonical.index((v, s)) < (j + 1) * n // 8
                seen.add((v, s))
        assert len(seen) == 8 * len(ds)  # no clip twice in an epoch


@pytest.mark.parametrize("cache", [True, False])
def test_rows_rank_reads_only_its_region(tmp_path, cache: bool) -> None:
    store = _lanes_store(tmp_path)
    reads = {
        r: _run(store, r, cache=cache, epochs=1)[1].frames_read for r in [(0, 8), (0, 4), (4, 8)]
    }
    one, half = reads[(0, 8)], (reads[(0, 4)], reads[(4, 8)])
    L, videos = 4, len(LENGTHS)
    # a rank's region: its clips plus the L - 1 frames each of its windows (or videos) overhangs
    assert all(r <= one / 2 + (L - 1) * videos for r in half) and max(half) < 0.6 * one
    if cache:
        assert one == sum(LENGTHS) and sum(half) <= one + (L - 1)  # one lane edge between them
    else:
        assert sum(half) == one  # the same windows of the same lanes, read by one rank or two
    # without rows every rank would read the whole store, every epoch
    everything = ClipDataset(store, L, 8, split=None, cache=False, block_frames=6)
    list(everything)
    assert everything.frames_read >= sum(LENGTHS) and max(half) < 0.6 * everything.frames_read


@pytest.mark.parametrize("cache", [True, False])
def test_rows_skip_batches_resumes_without_reading_the_skipped(tmp_path, cache: bool) -> None:
    store = _lanes_store(tmp_path)
    full, ds = _run(store, (2, 6), cache=cache, epochs=3, keypoints=True)
    for skip in (5, len(ds) + 2):
        rest, _ = _run(store, (2, 6), cache=cache, epochs=3, keypoints=True, skip_batches=skip)
        assert _same(rest, full[skip:])
        # the reads until the first batch after the skipped ones: the run from 0 read them all
        kw = {"cache": cache, "block_frames": 6, "split": None, "seed": 1, "epochs": None}
        resumed = ClipDataset(store, 4, 8, rows=(2, 6), skip_batches=skip, **kw)
        fresh = ClipDataset(store, 4, 8, rows=(2, 6), **kw)
        next(iter(resumed))
        it = iter(fresh)
        for _ in range(skip + 1):
            next(it)
        if cache:  # both load the rank's region once, for all epochs
            assert resumed.frames_read == fresh.frames_read
        else:
            assert resumed.frames_read < fresh.frames_read


@pytest.mark.parametrize("cache", [True, False])
def test_rows_dataloader_workers_keep_the_sequence(tmp_path, cache: bool) -> None:
    store = _lanes_store(tmp_path)
    kw = {"split": None, "cache": cache, "block_frames": 6, "seed": 4, "rows": (1, 6)}

    def run(workers: int, **extra) -> list[np.ndarray]:
        ds = ClipDataset(store, 4, 8, **kw, **extra)
        return [b.numpy() for b in DataLoader(ds, batch_size=None, num_workers=workers)]

    one = run(0, epochs=2)
    assert _same([{"f": b} for b in run(2, epochs=2)], [{"f": b} for b in one])
    assert _same([{"f": b} for b in run(2, epochs=2, skip_batches=3)], [{"f": b} for b in one[3:]])


def test_rows_validation_and_too_few_clips(tmp_path) -> None:
    store = _lanes_store(tmp_path)
    for rows in [(4, 4), (5, 3), (0, 9), (-1, 2)]:
        with pytest.raises(ValueError, match=r"rows=.*0 <= lo < hi <= batch_size=8"):
            ClipDataset(store, 4, 8, split=None, rows=rows)
    ds = ClipDataset(store, 4, 200, split=None, rows=(0, 100))  # 124 clips, 200 lanes
    assert len(ds) == 0
    with pytest.raises(ValueError, match="124 clips of 4 frames make no batch of 200"):
        next(iter(ds))
