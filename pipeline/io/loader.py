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

`rows=(lo, hi)` (data-parallel training: each rank makes only its rows of the global batch) uses
another order, built so that a rank reads only the frames of its own rows. Every clip, in video
order, forms the canonical list; it is cut into batch_size contiguous *lanes*, and row j of every
batch is the next clip of lane j, taken window by window (runs of consecutive clips, shuffled as
windows and within them). A global batch is thus stratified over the store (one clip per lane),
and a rank's lanes are one contiguous region of it, so W ranks read the data once between them,
not W times. The plan depends only on the videos' lengths, the seed and the epoch, so W ranks
together yield exactly, bit for bit, the batches of one rank with rows=(0, batch_size).
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


@dataclass(frozen=True)
class _Lanes:
    """The canonical clip list of `rows` mode and its lanes; metadata only (videos' lengths)."""

    video: np.ndarray  # (N,) index into ClipDataset.video_ids of each canonical clip
    start: np.ndarray  # (N,) its first frame, within its video
    window: np.ndarray  # (N,) its window: `window` consecutive clips of one video, grid-aligned
    bounds: np.ndarray  # (B + 1,) lane j holds the canonical clips [bounds[j], bounds[j + 1])


@dataclass(frozen=True)
class _Segment:
    """The clips of one lane that come from one window, in batch order: one array read."""

    video: int
    start: int  # first frame read
    stop: int  # one past the last frame read
    starts: np.ndarray  # first frame of each clip, within the video, in batch order


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

    `rows=(lo, hi)` yields only rows lo..hi-1 of every global batch, reading only the frames they
    need (one data-parallel rank of several). Its own order (see the module docstring): the
    canonical clips are cut into batch_size contiguous lanes, row j of batch b being the b-th clip
    of lane j's shuffled order; an epoch is the smallest lane's size, N // batch_size batches, all
    full (`drop_last` has no effect). A rank's lanes are one contiguous region of the store, which
    cached mode loads alone ("auto" compares the region's bytes to `cache_bytes`) and streaming
    mode reads window by window (`block_frames // stride` clips, the next window of every lane
    read ahead on `read_threads` threads). W ranks yield exactly the batches of rows=(0, B), and
    `skip_batches` is exact in both modes, with or without DataLoader workers.
    `frames_read` counts the frames this process read from the store (I/O accounting).
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
        rows: tuple[int, int] | None = None,
    ) -> None:
        if clip_length < 1 or batch_size < 1 or stride < 1:
            raise ValueError("clip_length, batch_size and stride must be >= 1")
        self.rows: tuple[int, int] | None = None
        if rows is not None:
            if len(rows) != 2 or not 0 <= rows[0] < rows[1] <= batch_size:
                raise ValueError(f"rows={rows}: need 0 <= lo < hi <= batch_size={batch_size}")
            self.rows = (int(rows[0]), int(rows[1]))
        self.frames_read = 0  # frames read from the store by this process
        self._lanes_cache: _Lanes | None = None
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
        if self.rows is None:
            total_bytes = int(self.lengths.sum()) * int(np.prod(self.frame_shape))
        else:  # a rank caches only its own region of the store
            frames = sum(stop - start for _, start, stop in self._region())
            total_bytes = frames * int(np.prod(self.frame_shape))
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
        state["_lanes_cache"] = None  # recomputed from the lengths: keeps the pickle small
        state["frames_read"] = 0  # a worker counts its own reads
        return state

    @property
    def num_clips(self) -> int:
        return int(sum((n - self.clip_length) // self.stride + 1 for n in self.lengths))

    def __len__(self) -> int:
        """Batches per epoch."""
        if self.rows is not None:
            return self.num_clips // self.batch_size  # the smallest lane's size
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
        self.frames_read += int(offsets[-1])
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
        if self.rows is not None:
            yield from self._iter_rows(worker, num_workers)
            return
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

            def submit(group: list[_Block]) -> Any:
                self.frames_read += sum(b.stop - b.start for b in group)
                return prefetcher.submit(read_group, group)

            # The next group is read while the current one is cut into batches.
            future = submit(groups[0]) if groups else None
            for gi, group in enumerate(groups):
                assert future is not None
                reads = future.result()
                if gi + 1 < len(groups):
                    future = submit(groups[gi + 1])
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

    # ------------------------------------------------------------------ rows (lanes)
    def _lanes(self) -> _Lanes:
        if self._lanes_cache is None:
            L, s = self.clip_length, self.stride
            counts = (self.lengths - L) // s + 1
            n = int(counts.sum())
            first = np.repeat(np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
            k = np.arange(n, dtype=np.int64) - first  # clip index within its video
            video = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
            # Windows sit on each video's own grid (clip k is in window k // w), not on the
            # lane's start: with block_frames a multiple of the chunk, reads start on chunks.
            w = max(1, self.block_frames // s)
            nwin = -(-counts // w)
            window = np.repeat(np.concatenate([[0], np.cumsum(nwin)[:-1]]), counts) + k // w
            bounds = np.arange(self.batch_size + 1, dtype=np.int64) * n // self.batch_size
            self._lanes_cache = _Lanes(video, k * s, window, bounds)
        return self._lanes_cache

    def _region(self) -> list[tuple[int, int, int]]:
        """(video, first frame, stop) per video of this rank's lanes: the frames they can use."""
        assert self.rows is not None
        lanes = self._lanes()
        c0, c1 = (int(lanes.bounds[r]) for r in self.rows)
        video, start = lanes.video[c0:c1], lanes.start[c0:c1]
        cuts = np.concatenate([[0], np.flatnonzero(np.diff(video)) + 1, [c1 - c0]])
        return [
            (int(video[a]), int(start[a]), int(start[b - 1]) + self.clip_length)
            for a, b in zip(cuts[:-1], cuts[1:])
            if b > a
        ]

    def _lane_plan(self, lane: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Lane `lane`'s clips of `epoch` in batch order (canonical indices) and the sequence
        number of the window each comes from (non-decreasing). Drawn from metadata only, never
        from lo/hi or the number of ranks: that is what makes W ranks equal one."""
        lanes = self._lanes()
        c0, c1 = int(lanes.bounds[lane]), int(lanes.bounds[lane + 1])
        win = lanes.window[c0:c1] - lanes.window[c0]
        if self.shuffle:
            rng = np.random.default_rng([self.seed, epoch, lane])
            rank = rng.permutation(int(win[-1]) + 1)[win]  # windows in a random order
            order = np.lexsort((rng.random(c1 - c0), rank))  # and clips shuffled inside them
        else:
            rank, order = win, np.arange(c1 - c0)
        order = order[: len(self)]
        return c0 + order, rank[order]

    def _owned(self, worker: int, num_workers: int) -> Iterator[tuple[int, np.ndarray]]:
        """(epoch, this loader worker's batches of it), from batch skip_batches on."""
        per_epoch = len(self)
        epoch, b = divmod(self.skip_batches, per_epoch)
        while self.epochs is None or epoch < self.epochs:
            # global batch g goes to worker (g - skip_batches) % W, the order in which the
            # DataLoader reads its workers round-robin, so the sequence never depends on W
            g = epoch * per_epoch + b
            first = b + (worker - (g - self.skip_batches)) % num_workers
            yield epoch, np.arange(first, per_epoch, num_workers)
            epoch, b = epoch + 1, 0

    def _iter_rows(self, worker: int, num_workers: int) -> Iterator[Batch]:
        if len(self) == 0:
            raise ValueError(
                f"{self.num_clips} clips of {self.clip_length} frames make no batch of "
                f"{self.batch_size} (rows: one clip per lane, at least batch_size clips needed)"
            )
        if self.cached:
            yield from self._rows_cached(worker, num_workers)
        else:
            yield from self._rows_streaming(worker, num_workers)

    def _load_region(self) -> None:
        """This rank's region into one array; frame f of video v is `_data[_offsets[v] + f]`."""
        if self._data is not None:
            return
        spans = self._region()
        total = sum(stop - start for _, start, stop in spans)
        data = np.empty((total, *self.frame_shape), dtype=np.uint8)
        offsets = np.zeros(len(self.video_ids), dtype=np.int64)
        store = self.store
        with ThreadPoolExecutor(max(1, self.read_threads)) as pool:
            arrays = pool.map(lambda sp: store.frames(self.video_ids[sp[0]], sp[1], sp[2]), spans)
            pos = 0
            for (v, start, stop), a in zip(spans, arrays):
                data[pos : pos + stop - start] = a
                offsets[v] = pos - start
                pos += stop - start
        self.frames_read += total
        self._data, self._offsets = data, offsets

    def _rows_cached(self, worker: int, num_workers: int) -> Iterator[Batch]:
        self._load_region()
        assert self._data is not None and self._offsets is not None and self.rows is not None
        lanes, idx = self._lanes(), np.arange(self.clip_length)
        for epoch, bs in self._owned(worker, num_workers):
            if not len(bs):
                continue
            clips = np.stack([self._lane_plan(j, epoch)[0][bs] for j in range(*self.rows)], 1)
            for c in clips:  # (rows,) canonical clips of one batch
                v, s = lanes.video[c], lanes.start[c]
                frames = self._data[(self._offsets[v] + s)[:, None] + idx]
                yield self._emit(frames, v, self._frame_offsets[v] + s)

    def _lane_segments(self, lane: int, worker: int, num_workers: int) -> Iterator[_Segment]:
        """Lane `lane`'s clips for this worker's batches, grouped by window, over all epochs.
        Two loader workers each read the windows their own batches touch, so they may both
        read a window: the price of a sequence independent of the number of workers."""
        lanes = self._lanes()
        for epoch, bs in self._owned(worker, num_workers):
            if not len(bs):
                continue
            clips, wins = self._lane_plan(lane, epoch)
            clips, wins = clips[bs], wins[bs]
            for part in np.split(clips, np.flatnonzero(np.diff(wins)) + 1):
                starts = lanes.start[part]
                stop = int(starts.max()) + self.clip_length
                yield _Segment(int(lanes.video[part[0]]), int(starts.min()), stop, starts)

    def _rows_streaming(self, worker: int, num_workers: int) -> Iterator[Batch]:
        assert self.rows is not None
        store, L, R = self.store, self.clip_length, self.rows[1] - self.rows[0]
        streams = [self._lane_segments(j, worker, num_workers) for j in range(*self.rows)]

        def read(seg: _Segment) -> np.ndarray:
            return np.asarray(store.frame_array(self.video_ids[seg.video])[seg.start : seg.stop])

        with ThreadPoolExecutor(max(1, self.read_threads)) as pool:

            def ahead(i: int) -> tuple[_Segment, Any] | None:
                seg = next(streams[i], None)
                if seg is None:
                    return None
                self.frames_read += seg.stop - seg.start
                return seg, pool.submit(read, seg)

            # Per lane: the window in use and the next one, read while this one is used. The
            # lanes' first windows are queued before any second one.
            pending = [ahead(i) for i in range(R)]
            current: list[tuple[_Segment, np.ndarray] | None] = [None] * R
            used = [0] * R
            for _, bs in self._owned(worker, num_workers):
                for _ in range(len(bs)):
                    out = np.empty((R, L, *self.frame_shape), dtype=np.uint8)
                    videos = np.empty(R, dtype=np.int64)
                    starts = np.empty(R, dtype=np.int64)
                    for i in range(R):
                        cur = current[i]
                        if cur is None or used[i] == len(cur[0].starts):
                            cur = current[i] = None  # frees it before the next is held
                            nxt = pending[i]
                            assert nxt is not None  # a lane's segments cover its batches
                            cur = current[i] = (nxt[0], nxt[1].result())
                            used[i] = 0
                            pending[i] = ahead(i)
                        seg, frames = cur
                        s = int(seg.starts[used[i]])
                        used[i] += 1
                        out[i] = frames[s - seg.start : s - seg.start + L]
                        videos[i], starts[i] = seg.video, s
                    yield self._emit(out, videos, self._frame_offsets[videos] + starts)

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
