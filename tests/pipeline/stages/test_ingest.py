"""framecast ingest: sources, video ids, broken inputs, resumability, and killed processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from pipeline.cli import main
from pipeline.core.config import UsageError, compose
from pipeline.io.store import FrameStore, check_video_id
from pipeline.io.video import write_video
from pipeline.stages.ingest import fingerprint, resolve_sources, video_id_for
from pipeline.stages.ingest import run as ingest_run
from tests.pipeline.io.sample_videos import broken_inputs, plain_pyav_count, ramp_frames

REPO = Path(__file__).resolve().parents[3]
# A source that takes real time (about 2 s): the window in which the fault tests kill things.
SLOW = "lavfi:testsrc2=size=64x48:rate=30:d=2,realtime"


def cfg(**kw: object) -> object:
    overrides = [f"{k}={v}" for k, v in kw.items() if "." not in k]
    overrides += [f"ingest.{k[7:]}={v}" for k, v in kw.items() if k.startswith("ingest.")]
    return compose("ingest", overrides)


def snapshot(url: str) -> dict[str, tuple[dict, np.ndarray]]:
    store = FrameStore.open(url)
    return {v: (store.attrs(v), store.frames(v)) for v in store.video_ids()}


def assert_same_store(a: str, b: str) -> None:
    sa, sb = snapshot(a), snapshot(b)
    assert sorted(sa) == sorted(sb)
    for vid in sa:
        assert sa[vid][0] == sb[vid][0], vid
        assert np.array_equal(sa[vid][1], sb[vid][1]), vid


def assert_no_orphans(url: str) -> None:
    store = FrameStore.open(url)
    for vid in store.video_ids():
        gens = [g for g in os.listdir(Path(url) / "videos" / vid) if g != "zarr.json"]
        assert gens == [store.entry(vid).gen], (vid, gens)


def ingest_workers() -> list[int]:
    """Pids of this test run's IngestWorker actors: children of our raylet that Ray named
    ray::IngestWorker (other Ray instances on the machine are left alone)."""
    import ray

    raylet = ray._private.worker._global_node.all_processes["raylet"][0].process.pid
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes()
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if cmd.startswith(b"ray::IngestWorker") and ppid == raylet:
                pids.append(int(d.name))
    return pids


def wait_for(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


# ---------------------------------------------------------------------- ids and sources
def test_video_ids_are_safe_stable_and_distinct() -> None:
    names = [
        "a.mp4", "a/b.mp4", "a__b.mp4", "a_/b.mp4", "a/_b.mp4", "a_b.mp4", "A.mp4",
        "x y.mp4", "x-y.mp4", "x_y.mp4", "ünï côdé.mp4", "uni-code.mp4", "日本/動画.mp4",
        "動画.mp4", "-lead.mp4", ".hidden.mp4", "a/b/c/d.avi", "a/b__c/d.avi", "z" * 300,
        "example.com/v/a.mp4?token=1", "example.com/v/a.mp4?token=2",
    ]  # fmt: skip
    ids = [video_id_for(n) for n in names]
    assert len(set(ids)) == len(ids)
    for i in ids:
        check_video_id(i)
    assert video_id_for("UCF/ApplyEyeMakeup/v_Apply_g01_c01.avi") == (
        "UCF__ApplyEyeMakeup__v_Apply_g01_c01.avi"
    )
    assert video_id_for("x y.mp4") == video_id_for("x y.mp4")  # stable
    assert video_id_for("x y.mp4").startswith("x-y.mp4___")


def test_resolve_folder_glob_and_list(tmp_path: Path) -> None:
    d = tmp_path / "videos"
    for rel in ["walk/a.mp4", "run/a.mp4", "run/deep/b.mkv", "x y/ü.mp4"]:
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(b"x")
    (d / "notes.txt").write_text("not a video")
    (d / ".hidden.mp4").write_bytes(b"x")
    found = resolve_sources(str(d), [".mp4", ".mkv"], "parent")
    assert [s.rel for s in found] == ["run/a.mp4", "run/deep/b.mkv", "walk/a.mp4", "x y/ü.mp4"]
    assert [s.label for s in found] == ["run", "deep", "walk", "x y"]
    assert len({s.video_id for s in found}) == 4  # duplicate basenames do not collide
    globbed = resolve_sources(str(d / "**" / "*.mp4"), [".mp4"])
    assert [s.rel for s in globbed] == ["run/a.mp4", "walk/a.mp4", "x y/ü.mp4"]
    lst = tmp_path / "list.txt"
    lst.write_text(f"# comment\nvideos/run/a.mp4\n\n{d / 'walk/a.mp4'}\nhttps://h.org/c.mp4\n")
    listed = resolve_sources(str(lst), [".mp4"])
    assert [s.rel for s in listed] == ["videos/run/a.mp4", "videos/walk/a.mp4", "h.org/c.mp4"]
    assert listed[0].source == str(d / "run/a.mp4")
    with pytest.raises(UsageError, match="no such"):
        resolve_sources(str(tmp_path / "nope"), [".mp4"])
    with pytest.raises(UsageError, match="matches no files"):
        resolve_sources(str(tmp_path / "*.webm"), [".mp4"])
    with pytest.raises(UsageError, match="no video files"):
        resolve_sources(str(d / "run" / "deep"), [".webm"])


def test_fingerprint_follows_content(tmp_path: Path) -> None:
    p = tmp_path / "a.mp4"
    p.write_bytes(b"a" * 5000)
    f1 = fingerprint(str(p))
    os.utime(p, (1, 1))
    assert fingerprint(str(p)) == f1  # content, not mtime
    p.write_bytes(b"a" * 4999 + b"b")
    assert fingerprint(str(p)) != f1
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * (3 << 20))
    assert fingerprint(str(big)).startswith("sha256:")
    assert fingerprint("https://h.org/a.mp4") == "source:https://h.org/a.mp4"


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["ingest", f"store={tmp_path}/s.zarr"]) == 2
    assert "missing required key 'source'" in capsys.readouterr().err
    (tmp_path / "a.mp4").write_bytes(b"x")
    for bad in ["ingest.resize=zoom", "ingest.color=cmyk", "ingest.size=0", "ingest.nope=1"]:
        assert main(["ingest", f"source={tmp_path}/a.mp4", f"store={tmp_path}/s.zarr", bad]) == 2
    assert main(["ingest", f"source={tmp_path}/none", f"store={tmp_path}/s.zarr"]) == 2
    assert main(["ingest", "source=lavfi:testsrc2", f"store={tmp_path}/s.zarr"]) == 2
    assert "live" in capsys.readouterr().err


def test_config_is_documented() -> None:
    text = (REPO / "configs" / "ingest.yaml").read_text()
    keys = OmegaConf.to_container(OmegaConf.create(text))["ingest"]  # type: ignore[index]
    from dataclasses import fields

    from pipeline.stages.ingest import IngestConfig

    assert sorted(keys) == sorted(f.name for f in fields(IngestConfig))
    for k in keys:
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(f"{k}:"))
        assert "#" in line or k == "extensions", k


# ---------------------------------------------------------------------- Ray integration
def mixed_folder(root: Path) -> dict[str, str]:
    """Good videos of several codecs (nested, spaces, non-ASCII, duplicate basenames), a
    truncated but readable one, and the broken inputs. Returns name -> path."""
    good = {
        "walk/a.mp4": (None, 30),
        "run/a.mp4": (None, 45),
        "run/x y ü.webm": (None, 20),
        "jump/c.avi": (None, 25),
        "jump/d.mkv": ("ffv1", 40),
        "jump/e.mkv": ("mjpeg", 33),
    }
    out = {}
    for rel, (codec, n) in good.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        write_video(str(p), ramp_frames(n, 48, 64), 30, codec=codec)
        out[rel] = str(p)
    cut = root / "run" / "cut.mkv"
    data = Path(out["jump/d.mkv"]).read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    out["run/cut.mkv"] = str(cut)
    # bit flips inside the packets: FFmpeg conceals (or rejects single packets), still ingested
    data = bytearray(Path(out["walk/a.mp4"]).read_bytes())
    i = data.find(b"mdat")
    for k in np.random.default_rng(3).integers(i + 600, i + int.from_bytes(data[i - 4 : i]), 6):
        data[k] ^= 0x08
    flipped = root / "walk" / "flipped.mp4"
    flipped.write_bytes(bytes(data))
    out["walk/flipped.mp4"] = str(flipped)
    broken = root / "broken"
    broken.mkdir()
    for name, (path, _) in broken_inputs(broken).items():
        if name not in ("missing",):
            out[f"broken/{name}"] = path
    return out


@pytest.fixture()
def folder(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "videos"
    files = mixed_folder(root)
    # broken_inputs also leaves two good files (good.mp4, x.avi) in broken/: keep them
    return root, files


def test_ingest_mixed_folder(ray_local: None, folder: tuple, tmp_path: Path) -> None:
    root, files = folder
    url, report = str(tmp_path / "s.zarr"), tmp_path / "report.json"
    code = main(
        ["ingest", f"source={root}", f"store={url}", f"report={report}",
         "ingest.label_from=parent", "ingest.extensions=[.mp4,.webm,.avi,.mkv,.m4a]",
         "ingest.chunk_frames=8"]
    )  # fmt: skip
    assert code == 3  # some inputs failed
    r = json.loads(report.read_text())
    failed = {f["source"]: f["error"] for f in r["failed"]}
    expected_failures = {
        files[f"broken/{n}"]
        for n in ("empty", "random", "text", "truncated", "audio", "unknown", "zeroed")
    }
    assert set(failed) == expected_failures
    assert all("\n" not in e and e for e in failed.values())
    store = FrameStore.open(url)
    assert {f["source"] for f in store.failures()} == expected_failures
    ok = {o["source"]: o for o in r["ok"]}
    assert len(ok) == len(files) - len(expected_failures) + 2  # + good.mp4, x.avi in broken/
    for src, o in ok.items():
        attrs = store.attrs(o["video_id"])
        n = plain_pyav_count(src)  # exact: what PyAV decodes of the file
        assert o["num_frames"] == n == attrs["num_frames"] == attrs["original_frames"], src
        assert store.frames(o["video_id"]).shape == (n, 48, 64, 3)
        assert attrs["source"] == src and attrs["codec"] and attrs["fps"] == 30.0
        assert attrs["original_width"] == 64 and attrs["fingerprint"] == fingerprint(src)
        assert attrs["label"] == Path(src).parent.name
    cut = ok[files["run/cut.mkv"]]
    assert cut["partial"] and store.attrs(cut["video_id"])["partial"] is True
    partial = {p["source"] for p in r["partial"]}
    assert {files["run/cut.mkv"]} <= partial <= {files["run/cut.mkv"], files["walk/flipped.mp4"]}
    assert files["walk/flipped.mp4"] in ok  # flipped bits: concealed or a packet skipped
    assert not store.attrs(ok[files["walk/a.mp4"]]["video_id"])["partial"]
    assert ok[files["walk/a.mp4"]]["video_id"] != ok[files["run/a.mp4"]]["video_id"]
    frames = store.frames(ok[files["run/a.mp4"]]["video_id"])
    assert np.abs(frames.astype(int) - ramp_frames(45)).mean() < 4
    assert r["frames"] == sum(o["num_frames"] for o in r["ok"])
    assert 0 < r["startup_seconds"] < r["seconds"]
    assert r["frames_per_s_after_startup"] > r["frames_per_s"]
    assert json.loads(Path(url, "reports", "ingest.json").read_text())["frames"] == r["frames"]

    # rerun: everything committed is skipped, failures are reported again
    code = main(["ingest", f"source={root}", f"store={url}", f"report={report}",
                 "ingest.label_from=parent", "ingest.extensions=[.mp4,.webm,.avi,.mkv,.m4a]",
                 "ingest.chunk_frames=8"])  # fmt: skip
    r2 = json.loads(report.read_text())
    assert code == 3 and not r2["ok"] and len(r2["skipped"]) == len(ok)
    assert len(r2["failed"]) == len(failed)


def test_ingest_options_resume_and_changes(ray_local: None, tmp_path: Path) -> None:
    d = tmp_path / "v"
    d.mkdir()
    write_video(str(d / "a.mp4"), ramp_frames(30, 48, 64), 30)
    write_video(str(d / "b.mp4"), ramp_frames(20, 48, 64), 30)
    url = str(tmp_path / "s.zarr")
    base = dict(source=d, store=url, **{"ingest.size": 16, "ingest.fps": 10})
    r = ingest_run(cfg(**base, **{"ingest.color": "gray", "ingest.workers": 1}))
    store = FrameStore.open(url)
    assert {o["video_id"]: o["num_frames"] for o in r["ok"]} == {"a.mp4": 10, "b.mp4": 7}
    assert store.frames("a.mp4").shape == (10, 16, 16, 1)
    assert store.attrs("a.mp4")["fps"] == 10 and store.attrs("a.mp4")["original_frames"] == 30
    again = ingest_run(cfg(**base, **{"ingest.color": "gray"}))
    assert not again["ok"] and len(again["skipped"]) == 2
    # a changed source is re-ingested; an untouched one is skipped
    write_video(str(d / "b.mp4"), ramp_frames(40, 48, 64), 30)
    changed = ingest_run(cfg(**base, **{"ingest.color": "gray"}))
    assert [o["video_id"] for o in changed["ok"]] == ["b.mp4"]
    assert FrameStore.open(url).num_frames("b.mp4") == 14
    # other settings give other frames: re-ingested too
    rgb = ingest_run(cfg(**base, **{"ingest.max_frames": 5}))
    assert len(rgb["ok"]) == 2
    assert FrameStore.open(url).frames("a.mp4").shape == (5, 16, 16, 3)
    assert_no_orphans(url)


@pytest.fixture(scope="module")
def slow_inputs(ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A list file (three small files and a source that takes about 2 s in real time) and the
    store an uninterrupted run makes of it."""
    tmp = tmp_path_factory.mktemp("slow")
    d = tmp / "in"
    d.mkdir()
    for i, n in enumerate([30, 40, 50]):
        write_video(str(d / f"v{i}.mp4"), ramp_frames(n, 48, 64), 30)
    lst = tmp / "list.txt"
    lst.write_text(f"in/v0.mp4\n{SLOW}\nin/v1.mp4\nin/v2.mp4\n")
    clean = str(tmp / "clean.zarr")
    r = ingest_run(cfg(source=lst, store=clean, **{"ingest.chunk_frames": 8}))
    assert len(r["ok"]) == 4 and FrameStore.open(clean).num_frames(video_id_for(SLOW)) == 60
    return lst, clean


def slow_id(url: str) -> Path | None:
    """A generation of the slow source that holds a chunk already (so: mid-video)."""
    vdir = Path(url) / "videos" / video_id_for(SLOW)
    for chunk in vdir.glob("*/frames/c/*"):
        return chunk.parents[2]
    return None


def test_actor_killed_mid_video(slow_inputs: tuple, tmp_path: Path) -> None:
    lst, clean = slow_inputs
    faulty = str(tmp_path / "faulty.zarr")
    result: dict = {}
    t = threading.Thread(
        target=lambda: result.update(
            ingest_run(cfg(source=lst, store=faulty, **{"ingest.chunk_frames": 8}))
        )
    )
    t.start()
    try:
        wait_for(lambda: slow_id(faulty) is not None, 60, "the slow video's first chunk")
        assert video_id_for(SLOW) not in FrameStore.open(faulty)  # not committed yet
        victims = ingest_workers()
        assert victims
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
    finally:
        t.join(timeout=120)
    assert not t.is_alive()
    assert not result["failed"] and len(result["ok"]) == 4
    assert_same_store(clean, faulty)
    assert_no_orphans(faulty)


def test_driver_killed_mid_run(slow_inputs: tuple, tmp_path: Path) -> None:
    import ray

    lst, clean = slow_inputs
    url = str(tmp_path / "faulty.zarr")
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    args = [sys.executable, "-m", "pipeline", "ingest", f"source={lst}", f"store={url}",
            "ingest.chunk_frames=8"]  # fmt: skip
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(lambda: slow_id(url) is not None, 90, "the slow video's first chunk")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # the dead driver's actors go with it; wait until they are gone
    wait_for(lambda: not ingest_workers(), 60, "the killed driver's actors to exit")
    assert video_id_for(SLOW) not in FrameStore.open(url)  # nothing half-written is visible
    rerun = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert_same_store(clean, url)
    assert_no_orphans(url)
