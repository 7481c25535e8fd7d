"""`framecast synth`: render a synthetic dataset into a frame store (or import an npy file).

Each video's content depends only on (seed, index), and videos already committed are skipped,
so an interrupted run is finished by running it again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from omegaconf import DictConfig

from pipeline.config import UsageError, existing_path, required, typed, write_result
from pipeline.progress import progress, summary
from pipeline.store import FrameStore


@dataclass
class SynthConfig:
    num_videos: int = 1000
    length: int = 20
    seed: int = 0
    chunk_frames: int = 32


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


@dataclass
class NpyConfig:
    name: str = "npy"
    path: str = "???"


Video = tuple[str, np.ndarray, dict]


def _videos(cfg: DictConfig, synth: SynthConfig) -> tuple[int, Iterator[Video]]:
    name = cfg.data.get("name")
    if name == "moving_mnist":
        from pipeline.datasets.moving_mnist import generate

        data = typed(cfg.data, MovingMNISTConfig, "data")
        if not 1 <= data.num_digits <= 3:
            raise UsageError(f"data.num_digits={data.num_digits}: Moving MNIST uses 1 to 3 digits")
        if not 0.0 <= data.test_fraction < 1.0:
            raise UsageError(f"data.test_fraction={data.test_fraction}: must be in [0, 1)")
        if data.mnist_root is not None:
            existing_path(data.mnist_root, "data.mnist_root")
        n_test = int(round(synth.num_videos * data.test_fraction))
        n_train = synth.num_videos - n_test
        common = dict(num_digits=data.num_digits, seed=synth.seed, root=data.mnist_root)

        def both() -> Iterator[Video]:
            yield from generate(n_train, synth.length, split="train", **common)
            yield from generate(n_test, synth.length, split="test", **common)

        return synth.num_videos, both()
    if name == "shapes":
        from pipeline.datasets.shapes import generate as generate_shapes

        shapes = typed(cfg.data, ShapesConfig, "data")
        if shapes.size < 16:
            raise UsageError(f"data.size={shapes.size}: frames must be at least 16x16")
        if not 0.0 <= shapes.test_fraction < 1.0:
            raise UsageError(f"data.test_fraction={shapes.test_fraction}: must be in [0, 1)")
        n_test = int(round(synth.num_videos * shapes.test_fraction))
        n_train = synth.num_videos - n_test

        def both_shapes() -> Iterator[Video]:
            for split, n in (("train", n_train), ("test", n_test)):
                yield from generate_shapes(
                    n, synth.length, split=split, seed=synth.seed, size=shapes.size
                )

        return synth.num_videos, both_shapes()
    if name == "npy":
        from pipeline.datasets.moving_mnist import iter_npy_sequences

        data = typed(cfg.data, NpyConfig, "data")
        path = existing_path(data.path, "data.path")
        try:
            shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
            it = iter_npy_sequences(str(path))
        except (ValueError, OSError) as e:
            raise UsageError(f"data.path={data.path}: {e}") from None
        return int(shape[1]), it
    raise UsageError(f"data={name}: synth does not know this dataset")


def run(cfg: DictConfig) -> dict:
    synth = typed(cfg.synth, SynthConfig, "synth")
    if synth.num_videos < 1 or synth.length < 1:
        raise UsageError("synth.num_videos and synth.length must be >= 1")
    url = str(required(cfg, "store"))
    store = FrameStore.create(url)
    total, videos = _videos(cfg, synth)
    written = skipped = frames = 0
    with progress(f"synth {cfg.data.name}", total, "videos") as bar:
        for video_id, clip, attrs in videos:
            if video_id in store:
                skipped += 1
            else:
                store.write_video(video_id, clip, attrs, chunk_frames=synth.chunk_frames)
                written += 1
                frames += len(clip)
            bar.advance(1)
        seconds = bar.seconds
    store.consolidate()
    result = {
        "stage": "synth",
        "data": cfg.data.name,
        "store": url,
        "written": written,
        "skipped": skipped,
        "frames": frames,
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
