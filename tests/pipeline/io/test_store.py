"""FrameStore: round trip, atomic commit, concurrent writers, errors."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.io.store import (
    DEFAULT_CHUNK_FRAMES,
    FORMAT_KEY,
    OBJECT_STORE_CHUNK_FRAMES,
    FrameStore,
    FrameStoreError,
)


def _video(seed: int, t: int = 50, shape: tuple[int, int, int] = (16, 12, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, *shape), dtype=np.uint8)


def test_round_trip_is_bit_exact(tmp_path: Path) -> None:
    s = FrameStore.create(str(tmp_path / "s.zarr"))
    frames = _video(0)
    kp = np.random.default_rng(1).random((50, 13, 2), dtype=np.float32)
    s.write_video("a", frames, {"source": "x.mp4", "fps": 25.0, "label": "walk"}, keypoints=kp)
    s.write_video("b", frames[:7], {"source": "y.mp4"}, chunk_frames=4)
    r = FrameStore.open(str(tmp_path / "s.zarr"))
    assert r.video_ids() == ["a", "b"]
    assert np.array_equal(r.frames("a"), frames)
    assert r.frames("a").dtype == np.uint8
    assert np.array_equal(r.frames("a", 10, 30), frames[10:30])
    assert np.array_equal(r.keypoints("a"), kp)
    assert r.keypoints("b") is None
    assert r.attrs("a") == {"source": "x.mp4", "fps": 25.0, "label": "walk", "num_frames": 50}
    assert np.array_equal(r.frames("b"), frames[:7])
    # time-chunked: one file per chunk, none per frame
    assert r.frame_array("a").chunks[0] == 32


def test_streaming_writer_appends_in_pieces(tmp_path: Path) -> None:
    s = FrameStore.create(str(tmp_path / "s.zarr"))
    frames = _video(2, t=101)
    with s.writer("long", frames.shape[1:], chunk_frames=8) as w:
        for i in range(0, 101, 13):
            w.append(frames[i : i + 13])
        w.commit({"source": "stream"})
    assert np.array_equal(FrameStore.open(s.url).frames("long"), frames)


def test_array_metadata_is_stored_once_at_commit_with_the_true_length(tmp_path: Path) -> None:
    s = FrameStore.create(str(tmp_path / "s.zarr"))
    frames = _video(3, t=21)
    w = s.writer("v", frames.shape[1:], chunk_frames=8)
    w.append(frames)  # two whole chunks go out now, 5 frames wait for the commit
    array_dir = tmp_path / "s.zarr" / w.path / "frames"
    assert not (array_dir / "zarr.json").exists()  # chunks need no metadata; readers wait
    assert len(list((array_dir / "c").iterdir())) == 2
    w.commit({"source": "x"})
    meta = json.loads((array_dir / "zarr.json").read_text())
    assert meta["shape"] == [21, 16, 12, 3]
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [8, 16, 12, 3]
    assert len(list((array_dir / "c").iterdir())) == 3
    assert np.array_equal(FrameStore.open(s.url).frames("v"), frames)


def test_chunk_defaults_follow_the_kind_of_store(tmp_path: Path) -> None:
    local = FrameStore.create(str(tmp_path / "s.zarr"))
    assert not local.is_object_store and local.default_chunk_frames == DEFAULT_CHUNK_FRAMES
    assert not FrameStore("memory://fc-chunks").is_object_store
    s3 = FrameStore("s3://some-bucket/s.zarr")  # nothing is requested before a read or write
    assert s3.is_object_store and s3.default_chunk_frames == OBJECT_STORE_CHUNK_FRAMES
    assert OBJECT_STORE_CHUNK_FRAMES > DEFAULT_CHUNK_FRAMES


def test_uncommitted_writer_is_invisible_and_cleaned(tmp_path: Path) -> None:
    s = FrameStore.create(str(tmp_path / "s.zarr"))
    with s.writer("v", (8, 8, 1)) as w:
        w.append(np.zeros((40, 8, 8, 1), np.uint8))
    assert FrameStore.open(s.url).video_ids() == []
    assert not any((tmp_path / "s.zarr" / "videos" / "v").glob("*/frames"))
    with pytest.raises(ValueError, match="no frames"):
        s.writer("w", (8, 8, 1)).commit({})


def test_replacing_a_video_swaps_atomically(tmp_path: Path) -> None:
    s = FrameStore.create(str(tmp_path / "s.zarr"))
    s.write_video("v", _video(0, 10), {"source": "old"})
    s.write_video("v", _video(1, 20), {"source": "new"})
    r = FrameStore.open(s.url)
    assert r.attrs("v")["source"] == "new" and r.num_frames("v") == 20
    assert np.array_equal(r.frames("v"), _video(1, 20))
    assert len(list((tmp_path / "s.zarr" / "catalog").glob("v@*.json"))) == 1
    assert len([p for p in (tmp_path / "s.zarr" / "videos" / "v").iterdir() if p.is_dir()]) == 1


def test_consolidated_catalog_is_a_cache_not_the_truth(tmp_path: Path) -> None:
    s = FrameStore.create(str(tmp_path / "s.zarr"))
    s.write_video("a", _video(0, 5), {"source": "1"})
    s.consolidate()
    s.write_video("b", _video(1, 5), {"source": "2"})
    s.write_video("a", _video(2, 6), {"source": "3"})
    r = FrameStore.open(s.url)
    assert r.video_ids() == ["a", "b"] and r.attrs("a")["source"] == "3"
    (tmp_path / "s.zarr" / "catalog.json").write_text("{torn")
    assert FrameStore.open(s.url).video_ids() == ["a", "b"]


def _write_many(url: str, worker: int, n: int) -> None:
    s = FrameStore.open(url)
    for i in range(n):
        s.write_video(f"w{worker}-{i}", _video(worker * 100 + i, 20, (8, 8, 1)), {"source": "p"})


def test_concurrent_writers_in_processes(tmp_path: Path) -> None:
    url = str(tmp_path / "s.zarr")
    FrameStore.create(url)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(url, w, 8)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    r = FrameStore.open(url)
    assert len(r) == 24
    for w in range(3):
        for i in range(8):
            assert np.array_equal(r.frames(f"w{w}-{i}"), _video(w * 100 + i, 20, (8, 8, 1)))


_KILLED_WRITER = """
import sys, time, numpy as np
from pipeline.io.store import FrameStore
s = FrameStore.open(sys.argv[1])
s.write_video("done", np.ones((10, 8, 8, 1), np.uint8), {"source": "a"})
w = s.writer("half", (8, 8, 1), chunk_frames=4)
w.append(np.ones((40, 8, 8, 1), np.uint8))
print("writing", flush=True)
time.sleep(60)
"""


def test_writer_killed_before_commit_leaves_nothing_visible(tmp_path: Path) -> None:
    url = str(tmp_path / "s.zarr")
    FrameStore.create(url)
    p = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, url], stdout=subprocess.PIPE, text=True
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "writing"
    os.kill(p.pid, signal.SIGKILL)
    p.wait(10)
    r = FrameStore.open(url)
    assert r.video_ids() == ["done"]
    # the rerun completes the video; the orphaned chunks of the dead attempt are not read
    r.write_video("half", np.full((40, 8, 8, 1), 2, np.uint8), {"source": "b"})
    r2 = FrameStore.open(url)
    assert r2.video_ids() == ["done", "half"]
    assert (r2.frames("half") == 2).all() and r2.num_frames("half") == 40
    gens = [p for p in (Path(url) / "videos" / "half").iterdir() if p.is_dir()]
    assert len(gens) == 1  # the dead attempt's chunks were collected


def test_open_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(FrameStoreError, match="does not exist"):
        FrameStore.open(str(tmp_path / "missing.zarr"))
    (tmp_path / "plain").mkdir()
    with pytest.raises(FrameStoreError, match="not a framecast store"):
        FrameStore.open(str(tmp_path / "plain"))
    import zarr

    zarr.open_group(str(tmp_path / "foreign.zarr"), mode="w")
    with pytest.raises(FrameStoreError, match="not a framecast store"):
        FrameStore.open(str(tmp_path / "foreign.zarr"))
    s = FrameStore.create(str(tmp_path / "v.zarr"))
    meta_path = tmp_path / "v.zarr" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"][FORMAT_KEY] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(FrameStoreError, match="format version 99"):
        FrameStore.open(s.url)


def test_bad_writes_are_refused_and_store_unharmed(tmp_path: Path) -> None:
    s = FrameStore.create(str(tmp_path / "s.zarr"))
    s.write_video("ok", _video(0, 5), {"source": "x"})
    with pytest.raises(ValueError, match="invalid video id"):
        s.write_video("../evil", _video(0, 5), {})
    with pytest.raises(ValueError, match="uint8"):
        s.write_video("f", np.zeros((5, 8, 8, 1), np.float32), {})
    with pytest.raises(TypeError):
        s.write_video("j", _video(0, 5), {"source": object()})
    w = s.writer("shape", (16, 12, 3))
    with pytest.raises(ValueError, match="do not match"):
        w.append(np.zeros((3, 8, 8, 3), np.uint8))
    w.abort()
    r = FrameStore.open(s.url)
    assert r.video_ids() == ["ok"] and np.array_equal(r.frames("ok"), _video(0, 5))


def test_memory_url_and_summary(tmp_path: Path) -> None:
    url = f"memory://fc-test-{time.time_ns()}/s.zarr"
    s = FrameStore.create(url)
    s.write_video("a", _video(0, 5), {"source": "x", "label": "walk", "split": "train"})
    s.record_failure("bad.mp4", "invalid data")
    r = FrameStore.open(url)
    assert np.array_equal(r.frames("a"), _video(0, 5))
    info = r.summary()
    assert info["videos"] == 1 and info["frames"] == 5 and info["failures"] == 1
    assert info["labels"] == {"walk": 1} and info["frame_shapes"] == {"16x12x3": 1}
    assert r.failures()[0]["source"] == "bad.mp4"
