"""`framecast synth`: render a synthetic dataset into a frame store (or import an npy file).

Each video's content depends only on (seed, index), and videos already committed are skipped,
so an interrupted run is finished by running it again.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from omegaconf import DictConfig

from pipeline.core.config import UsageError, existing_path, required, typed, write_result
from pipeline.core.progress import progress, summary
from pipeline.datasets import textures
from pipeline.datasets.moving_mnist import generate as generate_mnist
from pipeline.datasets.moving_mnist import iter_npy_sequences
from pipeline.datasets.shapes import LABELS, check_background, check_radius
from pipeline.datasets.shapes import generate as generate_shapes
from pipeline.datasets.stick_figures import generate as generate_figures
from pipeline.io.store import FrameStore


@dataclass
class SynthConfig:
    num_videos: int = 1000
    length: int = 20
    seed: int = 0
    chunk_frames: int = 32
    workers: int = 1


@dataclass
class MovingMNISTConfig:
    name: str = "moving_mnist"
    num_digits: int = 2
    test_fraction: float = 0.1
    mnist_root: str | None = None


@dataclass
class ShapesConfig:
    name: str = "shapes"
    size: int = 64
    test_fraction: float = 0.1
    radius: list[float] = field(default_factory=lambda: [0.08, 0.16])  # [min, max] x size
    background: list[int] | None = None  # one [r, g, b] for every video; None: random each
    label: str = "motion"  # the "label" attribute: motion (0..5) | shape_motion (0..11)


@dataclass
class StickFiguresConfig:
    name: str = "stick_figures"
    size: int = 64
    test_fraction: float = 0.1


@dataclass
class TexturesConfig:
    name: str = "textures"
    size: int = 64
    channels: int = 3  # 3 = RGB, 1 = gray
    test_fraction: float = 0.1
    max_pan: float = 2.0  # frame pixels per frame
    max_zoom: float = 0.02  # relative scale change per frame
    objects: list[int] = field(default_factory=lambda: [0, 2])  # [min, max] objects per video
    object_radius: list[float] = field(default_factory=lambda: [0.1, 0.2])  # [min, max] x size


@dataclass
class NpyConfig:
    name: str = "npy"
    path: str = "???"


# (video_id, frames, attrs) or (video_id, frames, attrs, keypoints (T, K, 2) float32)
Video = tuple[str, np.ndarray, dict] | tuple[str, np.ndarray, dict, np.ndarray]
SHARD_VIDEOS = 250  # videos per unit of work: small enough for smooth progress and balance


@dataclass(frozen=True)
class Shard:
    """Videos start..stop-1 of one split of one generator: an independent unit of work (video
    i depends only on (seed, split, i)), so shards run in any order, in any process."""

    data: str
    split: str
    start: int
    stop: int
    length: int
    seed: int
    options: tuple[tuple[str, Any], ...] = ()


def _iter_shard(shard: Shard) -> Iterator[Video]:
    opts = dict(shard.options)
    if shard.data == "moving_mnist":
        return generate_mnist(
            shard.stop, shard.length, split=shard.split, seed=shard.seed, start=shard.start, **opts
        )
    if shard.data == "shapes":
        return generate_shapes(
            shard.stop, shard.length, split=shard.split, seed=shard.seed, start=shard.start, **opts
        )
    if shard.data == "stick_figures":
        return generate_figures(
            shard.stop, shard.length, split=shard.split, seed=shard.seed, start=shard.start, **opts
        )
    if shard.data == "textures":
        return textures.generate(
            shard.stop, shard.length, split=shard.split, seed=shard.seed, start=shard.start, **opts
        )

    return iter_npy_sequences(opts["path"])


def write_shard(url: str, shard: Shard, chunk_frames: int) -> tuple[int, int, int]:
    """Write the shard's videos not yet committed; returns (written, skipped, frames)."""
    store = FrameStore.open(url)
    written = skipped = frames = 0
    for video_id, clip, attrs, *keypoints in _iter_shard(shard):
        if video_id in store:
            skipped += 1
            continue
        kp = keypoints[0] if keypoints else None
        store.write_video(video_id, clip, attrs, keypoints=kp, chunk_frames=chunk_frames)
        written, frames = written + 1, frames + len(clip)
    return written, skipped, frames


def _split_shards(data: str, n: int, test_fraction: float, synth: SynthConfig, **opts: Any):  # noqa: ANN202
    n_test = int(round(n * test_fraction))
    shards = []
    for split, count in (("train", n - n_test), ("test", n_test)):
        for start in range(0, count, SHARD_VIDEOS):
            stop = min(count, start + SHARD_VIDEOS)
            shards.append(
                Shard(data, split, start, stop, synth.length, synth.seed, tuple(opts.items()))
            )
    return shards


def _shards(cfg: DictConfig, synth: SynthConfig) -> list[Shard]:
    name = cfg.data.get("name")
    if name == "moving_mnist":
        data = typed(cfg.data, MovingMNISTConfig, "data")
        if not 1 <= data.num_digits <= 3:
            raise UsageError(f"data.num_digits={data.num_digits}: Moving MNIST uses 1 to 3 digits")
        if not 0.0 <= data.test_fraction < 1.0:
            raise UsageError(f"data.test_fraction={data.test_fraction}: must be in [0, 1)")
        if data.mnist_root is not None:
            existing_path(data.mnist_root, "data.mnist_root")
        return _split_shards(
            name,
            synth.num_videos,
            data.test_fraction,
            synth,
            num_digits=data.num_digits,
            root=data.mnist_root,
        )
    if name == "shapes":
        shapes = typed(cfg.data, ShapesConfig, "data")
        if shapes.size < 16:
            raise UsageError(f"data.size={shapes.size}: frames must be at least 16x16")
        if not 0.0 <= shapes.test_fraction < 1.0:
            raise UsageError(f"data.test_fraction={shapes.test_fraction}: must be in [0, 1)")

        try:
            radius = check_radius(shapes.radius, shapes.size)
        except ValueError as e:
            where = f"data.radius={shapes.radius} (data.size={shapes.size})"
            raise UsageError(f"{where}: {e}") from None
        background = None
        if shapes.background is not None:
            try:
                background = check_background(shapes.background)
            except ValueError as e:
                raise UsageError(f"data.background={shapes.background}: {e}") from None

        if shapes.label not in LABELS:
            raise UsageError(f"data.label={shapes.label}: use one of {', '.join(LABELS)}")
        return _split_shards(
            name,
            synth.num_videos,
            shapes.test_fraction,
            synth,
            size=shapes.size,
            radius=radius,
            background=background,
            label=shapes.label,
        )
    if name == "stick_figures":
        figures = typed(cfg.data, StickFiguresConfig, "data")
        if figures.size < 32:
            raise UsageError(f"data.size={figures.size}: stick figures need at least 32x32")
        if not 0.0 <= figures.test_fraction < 1.0:
            raise UsageError(f"data.test_fraction={figures.test_fraction}: must be in [0, 1)")
        return _split_shards(
            name, synth.num_videos, figures.test_fraction, synth, size=figures.size
        )
    if name == "textures":
        tex = typed(cfg.data, TexturesConfig, "data")
        if not 0.0 <= tex.test_fraction < 1.0:
            raise UsageError(f"data.test_fraction={tex.test_fraction}: must be in [0, 1)")
        try:  # each message starts with the key: "objects=[3, 1]: ..."
            objects, radius = textures.check_options(
                tex.size, tex.channels, tex.max_pan, tex.max_zoom, tex.objects, tex.object_radius
            )
        except ValueError as e:
            raise UsageError(f"data.{e}") from None
        return _split_shards(
            name,
            synth.num_videos,
            tex.test_fraction,
            synth,
            size=tex.size,
            channels=tex.channels,
            max_pan=tex.max_pan,
            max_zoom=tex.max_zoom,
            objects=objects,
            object_radius=radius,
        )
    if name == "npy":
        data = typed(cfg.data, NpyConfig, "data")
        path = existing_path(data.path, "data.path")
        try:
            shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
            next(iter(_iter_shard(Shard("npy", "", 0, 0, 0, 0, (("path", str(path)),)))))
        except (ValueError, OSError, StopIteration) as e:
            raise UsageError(f"data.path={data.path}: {e}") from None
        return [Shard("npy", "", 0, int(shape[1]), int(shape[0]), 0, (("path", str(path)),))]
    raise UsageError(f"data={name}: synth does not know this dataset")


def run(cfg: DictConfig) -> dict:
    synth = typed(cfg.synth, SynthConfig, "synth")
    if synth.num_videos < 1 or synth.length < 1:
        raise UsageError("synth.num_videos and synth.length must be >= 1")
    if synth.workers < 0:
        raise UsageError(f"synth.workers={synth.workers}: must be >= 0 (0 = one per CPU)")
    url = str(required(cfg, "store"))
    shards = _shards(cfg, synth)
    store = FrameStore.create(url)
    workers = min(synth.workers or os.cpu_count() or 1, len(shards))
    written = skipped = frames = 0
    total = sum(s.stop - s.start for s in shards)
    with progress(f"synth {cfg.data.name}", total, "videos") as bar:
        if workers <= 1:
            done = (write_shard(url, s, synth.chunk_frames) for s in shards)
            pool = None
        else:
            # Processes, not Ray: synth also runs on bare GPU hosts where Ray is not installed.
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            futures = [pool.submit(write_shard, url, s, synth.chunk_frames) for s in shards]
            done = (f.result() for f in as_completed(futures))
        try:
            for w, k, f in done:
                written, skipped, frames = written + w, skipped + k, frames + f
                bar.advance(w + k)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        seconds = bar.seconds
    store.consolidate()
    result = {
        "stage": "synth",
        "data": cfg.data.name,
        "store": url,
        "written": written,
        "skipped": skipped,
        "frames": frames,
        "workers": workers,
        "seconds": round(seconds, 3),
        "videos_per_s": round(written / max(seconds, 1e-9), 1),
        "summary": store.summary(),
    }
    store.write_report("synth", result)
    write_result(cfg, result, None)
    summary(
        f"synth {cfg.data.name} -> {url}",
        {k: result[k] for k in ("written", "skipped", "frames", "seconds", "videos_per_s")},
    )
    return result


__all__ = ["run"]
