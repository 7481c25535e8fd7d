"""Fixed-length clips from a FrameStore, batched, as uint8 (normalisation happens on the device).

Throughput comes from reading each chunk once and cutting many clips from it:

- *cached*: every selected video is read once into one contiguous array; a batch is then a
  single fancy-index gather, the same work as the in-memory numpy reference.
- *streaming*: the clips are grouped by the block of chunks their first frame falls in; a block
  (plus the `clip_length - 1` frames that overhang it) is read with one array read, and all of
  its clips are pooled with those of other blocks in a shuffle buffer. Block reads run on a small
  thread pool (zarr decompression releases the GIL).

Both modes visit every clip once per epoch in an order fixed by (seed, epoch), and split the
work between DataLoader workers by block, so results do not depend on the number of workers.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from pipeline.io.store import FrameStore


def video_split(video_id: str, attrs: dict[str, Any], test_fraction: float) -> str:
    """ "train" or "test": the video's own "split" attribute when it has one (Moving MNIST keeps
    test digits apart), else a stable hash of its id, so a split never mixes videos."""
    if attrs.get("split") in ("train", "test"):
        return str(attrs["split"])
    return "test" if (zlib.crc32(video_id.encode()) % 10_000) < test_fraction * 10_000 else "train"


def select_videos(
    store: FrameStore, split: str | None, test_fraction: float = 0.1, min_frames: int = 1
) -> list[str]:
    """Committed video ids of `split` ("train", "test" or None for all) with >= min_frames."""
    if split not in (None, "train", "test"):
        raise ValueError(f"split must be 'train', 'test' or None, got {split!r}")
    out = []
    for e in store.entries():
        if e.num_frames < min_frames:
            continue
        if split is None or video_split(e.video_id, e.attrs, test_fraction) == split:
            out.append(e.video_id)
    return out


Batch = torch.Tensor | dict[str, torch.Tensor]


def video_labels(store: FrameStore, video_ids: list[str]) -> tuple[list[Any], np.ndarray]:
    """(categories, per-video index into them) from the videos' "label" attributes."""
    raw = []
    for vid in video_ids:
        label = store.attrs(vid).get("label")
        if label is None:
            raise ValueError(f"video {vid} of {store.url} has no 'label' attribute")
        raw.append(label)
    if all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in raw):
        # integer labels are already category indices (shapes' motions, action ids)
        return list(range(max(raw) + 1)), np.array(raw, dtype=np.int64)
    categories = sorted({str(x) for x in raw})  # names (e.g. folder names): sorted
    pos = {c: i for i, c in enumerate(categories)}
    index = np.array([pos[str(x)] for x in raw], dtype=np.int64)
    return categories, index


@dataclass(frozen=True)
class _Block:
    video: int  # index into ClipDataset.video_ids
    start: int  # first frame read
    stop: int  # one past the last frame read
    clip_starts: tuple[int, int, int]  # range(first, last, stride) of clip starts, absolute


class ClipDataset(IterableDataset):
    """Batches of clips (B, L, H, W, C) uint8 from a store; use with `DataLoader(batch_size=None)`.

    `cache="auto"` loads the selected videos into memory when they fit in `cache_bytes`.
    `epochs=None` repeats forever (training); an integer stops after that many passes.
    `labels=True` yields {"frames": clips, "label": (B,) int64} instead, the label being the
    index of the video's "label" attribute in `categories` (sorted distinct labels).
    `keypoints=True` yields {"frames": clips, "keypoints": (B, L, K, 2) float32} (plus "label"
    with `labels=True`): the stored per-frame keypoints of each clip (NaN where missing). They
    are small next to frames, so all of them are read into memory once, in both modes.
    `skip_batches=n` starts where a run that already consumed n batches left off (resume): exact
    in cached mode, and in streaming mode without DataLoader workers.
    """

    def __init__(
        self,
        store: str | FrameStore,
        clip_length: int,
        batch_size: int = 32,
        *,
        stride: int = 1,
        split: str | None = "train",
        test_fraction: float = 0.1,
        video_ids: list[str] | None = None,
        cache: bool | str = "auto",
        cache_bytes: int = 2 << 30,
        shuffle: bool = True,
        seed: int = 0,
        epochs: int | None = 1,
        drop_last: bool = False,
        block_frames: int | None = None,
        buffer_blocks: int = 16,
        read_threads: int = 4,
        skip_batches: int = 0,
        labels: bool = False,
        keypoints: bool = False,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        if clip_length < 1 or batch_size < 1 or stride < 1:
            raise ValueError("clip_length, batch_size and stride must be >= 1")
        self.url = store.url if isinstance(store, FrameStore) else str(store)
        self.storage_options = (
            store.storage_options if isinstance(store, FrameStore) else storage_options
        )
        self._store = store if isinstance(store, FrameStore) else None
        s = self.store
        self.video_ids = (
            list(video_ids)
            if video_ids is not None
            else select_videos(s, split, test_fraction, min_frames=clip_length)
        )
        for vid in self.video_ids:
            if s.num_frames(vid) < clip_length:
                raise ValueError(f"video {vid} has fewer than clip_length={clip_length} frames")
        if not self.video_ids:
            raise ValueError(
                f"store {self.url}: no videos with at least {clip_length} frames in split {split!r}"
            )
        shapes = {s.entry(v).frame_shape for v in self.video_ids}
        if len(shapes) != 1:
            raise ValueError(f"store {self.url}: videos of different frame shapes {sorted(shapes)}")
        self.frame_shape: tuple[int, int, int] = shapes.pop()
        self.lengths = np.array([s.num_frames(v) for v in self.video_ids], dtype=np.int64)
        self.clip_length = clip_length
        self.batch_size = batch_size
        self.stride = stride
        self.shuffle = shuffle
        self.seed = seed
        self.epochs = epochs
        self.drop_last = drop_last
        self.buffer_blocks = buffer_blocks
        self.read_threads = read_threads
        self.skip_batches = int(skip_batches)
        chunk = int(s.frame_array(self.video_ids[0]).chunks[0])
        self.block_frames = int(block_frames or 4 * chunk)
        total_bytes = int(self.lengths.sum()) * int(np.prod(self.frame_shape))
        self.cached = (total_bytes <= cache_bytes) if cache == "auto" else bool(cache)
        self._data: np.ndarray | None = None
        self._offsets: np.ndarray | None = None
        self.categories: list[Any] = []
        self.label_index: np.ndarray | None = None
        if labels:
            self.categories, self.label_index = video_labels(s, self.video_ids)
        # first frame of each video in the concatenation of all selected videos' frames
        self._frame_offsets = np.concatenate([[0], np.cumsum(self.lengths)])[:-1]
        self.keypoints = keypoints
        self._kp: np.ndarray | None = None  # (total frames, K, 2) float32, loaded on first use
        if keypoints:
            counts = {s.entry(v).num_keypoints for v in self.video_ids}
            if None in counts:
                missing = next(v for v in self.video_ids if s.entry(v).num_keypoints is None)
                raise ValueError(f"store {self.url}: video {missing} has no keypoints")
            if len(counts) != 1:
                raise ValueError(
                    f"store {self.url}: videos with different keypoint counts {counts}"
                )

    # A store handle is per process: DataLoader workers reopen it instead of unpickling one.
    @property
    def store(self) -> FrameStore:
        if self._store is None:
            self._store = FrameStore.open(self.url, self.storage_options)
        return self._store

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_store"] = None
        state["_data"] = None
        state["_kp"] = None
        return state

    @property
    def num_clips(self) -> int:
        return int(sum((n - self.clip_length) // self.stride + 1 for n in self.lengths))

    def __len__(self) -> int:
        """Batches per epoch."""
        n = self.num_clips
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    # ------------------------------------------------------------------ blocks
    def _blocks(self) -> list[_Block]:
        out = []
        L, s = self.clip_length, self.stride
        for vi, n in enumerate(self.lengths):
            last_start = int(n) - L  # inclusive
            for b0 in range(0, last_start + 1, self.block_frames):
                first = -(-b0 // s) * s  # first start >= b0 on the stride grid
                end = min(b0 + self.block_frames, last_start + 1)
                if first >= end:
                    continue
                last_clip = first + ((end - 1 - first) // s) * s
                out.append(_Block(vi, first, last_clip + L, (first, end, s)))
        return out

    def _read(self, block: _Block) -> np.ndarray:
        vid = self.video_ids[block.video]
        if self.cached:
            assert self._data is not None and self._offsets is not None
            o = int(self._offsets[block.video])
            return self._data[o + block.start : o + block.stop]
        return np.asarray(self.store.frame_array(vid)[block.start : block.stop])

    def _load_cache(self) -> None:
        if self._data is not None:
            return
        offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        data = np.empty((int(offsets[-1]), *self.frame_shape), dtype=np.uint8)
        with ThreadPoolExecutor(self.read_threads) as pool:
            arrays = pool.map(lambda v: self.store.frames(v), self.video_ids)
            for i, a in enumerate(arrays):
                data[offsets[i] : offsets[i + 1]] = a
        self._data, self._offsets = data, offsets[:-1]

    def _load_keypoints(self) -> np.ndarray:
        if self._kp is None:
            with ThreadPoolExecutor(self.read_threads) as pool:
                arrays = list(pool.map(self.store.keypoints, self.video_ids))
            self._kp = np.concatenate(arrays).astype(np.float32, copy=False)
        return self._kp

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, num_workers = (0, 1) if info is None else (info.id, info.num_workers)
        if len(self) == 0 and self.epochs is None:
            raise ValueError(
                f"{self.num_clips} clips of {self.clip_length} frames make no batch of "
                f"{self.batch_size} (drop_last): endless epochs would never yield one"
            )
        per_epoch = max(len(self), 1)
        epoch, skip = divmod(self.skip_batches, per_epoch)
        while self.epochs is None or epoch < self.epochs:
            rng = np.random.default_rng([self.seed, epoch])
            if self.cached:
                # global batch g = epoch * per_epoch + b goes to worker (g - skip_batches) % W,
                # the order in which the DataLoader reads its workers round-robin
                g0 = epoch * per_epoch
                offset = (worker + self.skip_batches - g0 - skip) % num_workers
                yield from self._epoch_cached(rng, skip, offset, num_workers)
            else:
                # each worker drops its share of the skipped batches
                drop = (skip - worker + num_workers - 1) // num_workers if skip > worker else 0
                it = self._epoch_streaming(rng, worker, num_workers)
                for _ in range(drop):
                    next(it, None)
                yield from it
            epoch, skip = epoch + 1, 0

    def _epoch_cached(
        self, rng: np.random.Generator, skip: int, offset: int, step: int
    ) -> Iterator[Batch]:
        """Batches skip+offset, skip+offset+step, ... of the epoch drawn from `rng`."""
        self._load_cache()
        assert self._data is not None and self._offsets is not None
        per_video = [
            o + np.arange(0, n - self.clip_length + 1, self.stride)
            for o, n in zip(self._offsets, self.lengths)
        ]
        starts = np.concatenate(per_video)
        videos = np.concatenate([np.full(len(p), i) for i, p in enumerate(per_video)])
        if self.shuffle:
            order = rng.permutation(len(starts))
            starts, videos = starts[order], videos[order]
        idx = np.arange(self.clip_length)
        nb = (
            len(starts) // self.batch_size if self.drop_last else -(-len(starts) // self.batch_size)
        )
        for b in range(skip + offset, nb, step):
            sel = slice(b * self.batch_size, (b + 1) * self.batch_size)
            yield self._emit(self._data[starts[sel, None] + idx], videos[sel], starts[sel])

    def _epoch_streaming(
        self, rng: np.random.Generator, worker: int, num_workers: int
    ) -> Iterator[Batch]:
        blocks = self._blocks()
        order = rng.permutation(len(blocks)) if self.shuffle else np.arange(len(blocks))
        mine = [blocks[i] for i in order[worker::num_workers]]
        idx = np.arange(self.clip_length)
        carry: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        groups = [mine[i : i + self.buffer_blocks] for i in range(0, len(mine), self.buffer_blocks)]
        with (
            ThreadPoolExecutor(max(1, self.read_threads)) as readers,
            ThreadPoolExecutor(1) as prefetcher,
        ):

            def read_group(group: list[_Block]) -> list[np.ndarray]:
                return list(readers.map(self._read, group))

            # The next group is read while the current one is cut into batches.
            future = prefetcher.submit(read_group, groups[0]) if groups else None
            for gi, group in enumerate(groups):
                assert future is not None
                reads = future.result()
                if gi + 1 < len(groups):
                    future = prefetcher.submit(read_group, groups[gi + 1])
                clips, videos, firsts = [], [], []
                for blk, frames in zip(group, reads):
                    starts = np.arange(*blk.clip_starts) - blk.start
                    clips.append(frames[starts[:, None] + idx])  # (n, L, H, W, C)
                    videos.append(np.full(len(starts), blk.video))
                    # absolute first frames (into the concatenation of all videos' frames)
                    firsts.append(self._frame_offsets[blk.video] + blk.start + starts)
                if carry is not None:
                    clips.insert(0, carry[0])
                    videos.insert(0, carry[1])
                    firsts.insert(0, carry[2])
                pooled, pooled_videos = np.concatenate(clips), np.concatenate(videos)
                pooled_firsts = np.concatenate(firsts)
                if self.shuffle:
                    order = rng.permutation(len(pooled))
                    pooled, pooled_videos = pooled[order], pooled_videos[order]
                    pooled_firsts = pooled_firsts[order]
                n_full = (len(pooled) // self.batch_size) * self.batch_size
                for b in range(0, n_full, self.batch_size):
                    sel = slice(b, b + self.batch_size)
                    yield self._emit(pooled[sel], pooled_videos[sel], pooled_firsts[sel])
                carry = (
                    (pooled[n_full:], pooled_videos[n_full:], pooled_firsts[n_full:])
                    if n_full < len(pooled)
                    else None
                )
        if carry is not None and not self.drop_last:
            yield self._emit(*carry)

    def _emit(self, clips: np.ndarray, videos: np.ndarray, firsts: np.ndarray) -> Batch:
        """A batch from clips (B, L, H, W, C), their videos (B,) and their first frames (B,)
        as indices into the concatenation of all selected videos' frames."""
        frames = torch.from_numpy(np.ascontiguousarray(clips))
        if self.label_index is None and not self.keypoints:
            return frames
        out = {"frames": frames}
        if self.label_index is not None:
            out["label"] = torch.from_numpy(self.label_index[videos])
        if self.keypoints:
            kp = self._load_keypoints()[firsts[:, None] + np.arange(self.clip_length)]
            out["keypoints"] = torch.from_numpy(np.ascontiguousarray(kp))
        return out


def to_model_input(batch: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """uint8 (B, T, H, W, C) -> float (B, T, C, H, W) in [0, 1], converted on `device`."""
    x = batch.to(device, non_blocking=True)
    return x.permute(0, 1, 4, 2, 3).float().div_(255.0)
