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
