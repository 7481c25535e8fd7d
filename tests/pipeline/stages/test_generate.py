"""`framecast generate`: manifest and files agree, same seed -> same videos, fix=content/motion,
categories, resume after a SIGKILL, Ray workers = local, predictor rollouts, usage errors.
Tiny untrained checkpoints made here (16x16 frames, 4-frame clips), so nothing trains."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from models import build_task
from models.mocogan import MoCoGANTask
from pipeline.cli import main
from pipeline.core.frames import to_uint8
from pipeline.io.previews import read_video
from pipeline.io.store import FrameStore
from pipeline.runtime import checkpoint
from pipeline.runtime.inference import load_model
from pipeline.runtime.sampling import code_ids, sample_videos, video_seed

SIZE, LENGTH = 16, 4
TINY = dict(
    frame_size=SIZE,
    length=LENGTH,
    dim_content=6,
    dim_motion=4,
    dim_noise=3,
    gen_channels=8,
    disc_channels=8,
)
ROOT = Path(__file__).resolve().parents[3]


pytestmark = pytest.mark.usefixtures("one_thread")


def make_generator_ckpt(path: Path, num_categories: int = 0, categories=None) -> Path:
    """A tiny untrained MoCoGAN checkpoint whose BatchNorm statistics come from one batch (at
    DCGAN initialisation the default statistics make every frame nearly the same grey)."""
    torch.manual_seed(0)
    task = MoCoGANTask(**TINY, num_categories=num_categories)
    gen = task.networks["generator"]
    norms = [m for m in gen.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.momentum = 1.0
    with torch.no_grad():
        gen(**gen.draw_codes(16, LENGTH))
    for m in norms:
        m.momentum = 0.1
    extra = {"categories": list(categories or range(num_categories))}
    checkpoint.save(path, task, task.make_optimizers(), 7, {"trainer": {}}, extra)
    return path


def generate(ckpt: Path, out: Path, n: int, *extra: str) -> dict:
    args = ["generate", f"checkpoint={ckpt}", f"out={out}", f"num_videos={n}"]
    args += ["generate.backend=local", "generate.preview=4", *extra]
    assert main(args) == 0
    return json.loads((out / "generate.json").read_text())


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def generator_of(ckpt: Path):
    return load_model(ckpt, "cpu", want=("generator",)).model


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_generator_ckpt(tmp_path_factory.mktemp("ckpt") / "gen.pt")


@pytest.fixture(scope="module")
def cond_ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "cond.pt"
    return make_generator_ckpt(path, 3, ["walk", "run", "jump"])


def test_manifest_and_files_agree(ckpt, tmp_path):
    out = tmp_path / "mp4"
    result = generate(ckpt, out, 6, "generate.batch_size=4", "generate.seed=3")
    rows = manifest(out)
    assert [r["index"] for r in rows] == list(range(6))
    videos = sorted(p.name for p in out.glob("video_*"))
    assert videos == sorted(r["path"] for r in rows)
    for r in rows:
        assert r["seed"] == 3 and r["length"] == LENGTH
        assert r["video_seed"] == video_seed(3, r["index"])
        assert r["content_id"] == r["motion_id"] == r["index"]
        frames = read_video(out / r["path"])
        assert frames.shape == (LENGTH, SIZE, SIZE, 3)
    assert (out / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(read_video(out / "preview.gif")) == LENGTH
    assert result["generated"] == 6 and result["skipped"] == 0
    assert result["files"]["manifest"] == str(out / "manifest.jsonl")
    assert not list(out.glob(".*.part"))


def test_same_seed_same_videos(ckpt, tmp_path):
    a = tmp_path / "a"
    generate(ckpt, a, 5, "generate.format=npy", "generate.seed=11", "generate.batch_size=2")
    b = tmp_path / "b"
    generate(ckpt, b, 5, "generate.format=npy", "generate.seed=11", "generate.batch_size=2")
    c = tmp_path / "c"
    generate(ckpt, c, 5, "generate.format=npy", "generate.seed=12")
    for i in range(5):
        name = f"video_{i:06d}.npy"
        assert (a / name).read_bytes() == (b / name).read_bytes()
    va = np.stack([np.load(a / f"video_{i:06d}.npy") for i in range(5)])
    vc = np.stack([np.load(c / f"video_{i:06d}.npy") for i in range(5)])
    assert not np.array_equal(va, vc)
    assert len({v.tobytes() for v in va}) == 5  # different videos within a run
    # Video i is Generator.sample(1, T, seed=S, start=i), whatever the batching.
    gen = generator_of(ckpt)
    for i in (0, 4):
        u8 = to_uint8(gen.sample(1, LENGTH, seed=11, start=i)[0])
        assert np.abs(u8.astype(int) - va[i]).max() <= 1


def test_an_ema_checkpoint_generates_with_the_averaged_weights(tmp_path):
    torch.manual_seed(0)
    task = MoCoGANTask(**TINY, ema=0.99)
    online, average = task.networks["generator"], task.networks["generator_ema"]
    norms = [m for m in online.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.momentum = 1.0  # BatchNorm statistics of one batch, as in make_generator_ckpt
    with torch.no_grad():
        online(**online.draw_codes(16, LENGTH))
        for p in online.parameters():
            p.add_(0.05 * torch.randn_like(p))  # G has moved on from its average
    task.update_average(10**6)  # beta = 0.99: the buffers copied, the weights 1% of the way
    path = tmp_path / "ema.pt"
    checkpoint.save(path, task, task.make_optimizers(), 7, {"trainer": {}}, {"categories": []})
    out = tmp_path / "out"
    generate(path, out, 2, "generate.format=npy", "generate.seed=5")
    got = np.load(out / "video_000001.npy")
    for net, same in ((average, True), (online, False)):
        u8 = to_uint8(net.eval().sample(1, LENGTH, seed=5, start=1)[0])
        assert (np.abs(u8.astype(int) - got).max() <= 1) == same


def test_fix_content_and_fix_motion(ckpt, tmp_path):
    gen = generator_of(ckpt)
    seen: list[torch.Tensor] = []
    hook = gen.image_generator.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    n, dc = 4, TINY["dim_content"]
    for fix in ("content", "motion"):
        out = tmp_path / fix
        generate(ckpt, out, n, "generate.format=npy", f"generate.fix={fix}", "generate.seed=5")
        rows = manifest(out)
        ids = [(r["content_id"], r["motion_id"]) for r in rows]
        expect = [(0, i) for i in range(n)] if fix == "content" else [(i, 0) for i in range(n)]
        assert ids == expect == [code_ids(i, fix) for i in range(n)]
        seen.clear()
        videos = sample_videos(gen, 5, 0, n, LENGTH, fix=fix)  # uint8 (n, T, H, W, C)
        z = seen[0].view(n, LENGTH, -1)  # [z_C, z_M(t)] per video and frame
        content, motion = z[..., :dc], z[..., dc:]
        same_content = torch.allclose(content, content[:1].expand_as(content))
        same_motion = torch.allclose(motion, motion[:1].expand_as(motion))
        assert (same_content, same_motion) == ((True, False) if fix == "content" else (False, True))
        files = np.stack([np.load(out / r["path"]) for r in rows])
        assert np.abs(files.astype(int) - videos.astype(int)).max() <= 1
        assert len({f.tobytes() for f in files}) == n  # one content, n motions (or reverse)
    hook.remove()
    # Video 0 is the same with or without fix (draw 0 is the shared one).
    plain = tmp_path / "plain"
    generate(ckpt, plain, 1, "generate.format=npy", "generate.seed=5")
    first = (plain / "video_000000.npy").read_bytes()
    assert first == (tmp_path / "content" / "video_000000.npy").read_bytes()


def test_categories_by_index_and_name(cond_ckpt, tmp_path):
    out = tmp_path / "named"
    generate(cond_ckpt, out, 3, "generate.category=jump", "generate.format=npy")
    assert {(r["category"], r["category_name"]) for r in manifest(out)} == {(2, "jump")}
    idx = tmp_path / "index"
    generate(cond_ckpt, idx, 3, "generate.category=2", "generate.format=npy")
    for i in range(3):
        name = f"video_{i:06d}.npy"
        assert (out / name).read_bytes() == (idx / name).read_bytes()
    free = tmp_path / "free"
    generate(cond_ckpt, free, 12, "generate.format=npy", "generate.fix=motion")
    rows = manifest(free)
    assert len({r["category"] for r in rows}) == 1  # the category belongs to the motion
    free = tmp_path / "free2"
    generate(cond_ckpt, free, 12, "generate.format=npy")
    assert len({r["category"] for r in manifest(free)}) > 1  # drawn per video


def test_usage_errors(ckpt, cond_ckpt, tmp_path, capsys):
    def fails(*args: str) -> str:
        capsys.readouterr()
        assert main(["generate", f"out={tmp_path / 'x'}", "num_videos=2", *args]) == 2
        return capsys.readouterr().err

    assert "out of range" in fails(f"checkpoint={cond_ckpt}", "generate.category=3")
    assert "walk, run, jump" in fails(f"checkpoint={cond_ckpt}", "generate.category=fly")
    assert "unconditional" in fails(f"checkpoint={ckpt}", "generate.category=0")
    assert "content or motion" in fails(f"checkpoint={ckpt}", "generate.fix=both")
    assert "no such file" in fails(f"checkpoint={tmp_path / 'none.pt'}")
    torch.manual_seed(0)
    task = build_task("video_classifier", frame_size=8, length=4, num_categories=2, width=4)
    cls = tmp_path / "cls.pt"
    checkpoint.save(cls, task, task.make_optimizers(), 1, {})
    # one line: the checkpoint, its family and kind, and what generate takes
    err = fails(f"checkpoint={cls}")
    assert len(err.strip().splitlines()) == 1
    assert str(cls) in err and "video_classifier" in err and "takes a generator" in err
    lstm = build_task("lstm_autoencoder", frame_size=SIZE, hidden=8, context=3, horizon=2)
    pred = tmp_path / "pred.pt"
    checkpoint.save(pred, lstm, lstm.make_optimizers(), 1, {})
    assert "store=URL" in fails(f"checkpoint={pred}")
    # a folder keeps the settings of its videos
    out = tmp_path / "kept"
    generate(ckpt, out, 2, "generate.format=npy")
    capsys.readouterr()
    args = ["generate", f"checkpoint={ckpt}", f"out={out}", "num_videos=2", "generate.seed=1"]
    assert main([*args, "generate.format=npy", "generate.backend=local"]) == 2
    assert "seed: 0 -> 1" in capsys.readouterr().err


def test_resume_after_kill(ckpt, tmp_path):
    """SIGKILL a run part-way; the rerun finishes it without redoing or duplicating videos,
    and the folder equals an uninterrupted run's."""
    n = 400
    out = tmp_path / "killed"
    args = [f"checkpoint={ckpt}", f"out={out}", f"num_videos={n}", "generate.batch_size=2"]
    args += ["generate.backend=local", "generate.preview=4", "generate.format=npy"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "generate", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while len(list(out.glob("video_*.npy"))) < 6 and time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("video_*.npy")}
    assert 6 <= len(before) < n
    result = generate(ckpt, out, n, "generate.batch_size=2", "generate.format=npy")
    assert result["skipped"] == len(before) and result["generated"] == n - len(before)
    for name, mtime in before.items():  # finished videos were not redone
        assert (out / name).stat().st_mtime_ns == mtime
    rows = manifest(out)
    assert [r["index"] for r in rows] == list(range(n))  # each once, in order
    assert sorted(p.name for p in out.glob("video_*")) == [r["path"] for r in rows]
    assert not list(out.glob(".*.part"))
    clean = tmp_path / "clean"
    generate(ckpt, clean, n, "generate.batch_size=2", "generate.preview=0", "generate.format=npy")
    assert (clean / "manifest.jsonl").read_text() == (out / "manifest.jsonl").read_text()
    differ = [
        r["path"]
        for r in rows
        if (clean / r["path"]).read_bytes() != (out / r["path"]).read_bytes()
    ]
    assert not differ, (differ, sorted(before))


@pytest.mark.slow
def test_ray_workers_match_local(ray_local, ckpt, tmp_path):
    # Raw frames (npy): another process may round a float differently in the last bit, which
    # moves a uint8 by one and the whole H.264 stream after it; the videos are the same.
    local = tmp_path / "local"
    generate(ckpt, local, 5, "generate.batch_size=2", "generate.preview=0", "generate.format=npy")
    ray_out = tmp_path / "ray"
    args = ["generate", f"checkpoint={ckpt}", f"out={ray_out}", "num_videos=5"]
    args += ["generate.batch_size=2", "generate.workers=2", "generate.backend=ray"]
    assert main([*args, "generate.format=npy"]) == 0
    result = json.loads((ray_out / "generate.json").read_text())
    assert result["workers"] == 2 and result["backend"] == "ray"
    assert (ray_out / "manifest.jsonl").read_text() == (local / "manifest.jsonl").read_text()
    for r in manifest(local):
        ours, theirs = np.load(ray_out / r["path"]), np.load(local / r["path"])
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype == np.uint8
        diff = np.abs(ours.astype(int) - theirs.astype(int))
        assert diff.max() <= 1 and (diff == 0).mean() > 0.99
    # and the workers encode: mp4s that decode to the same frames
    mp4 = tmp_path / "ray_mp4"
    assert main(["generate", f"checkpoint={ckpt}", f"out={mp4}", "num_videos=2",
                 "generate.workers=2", "generate.backend=ray"]) == 0  # fmt: skip
    for r in manifest(mp4):
        frames = read_video(mp4 / r["path"])
        assert frames.shape == np.load(local / r["path"].replace(".mp4", ".npy")).shape


def test_predictor_rollouts(tiny_store, tmp_path):
    torch.manual_seed(0)
    task = build_task("lstm_autoencoder", frame_size=SIZE, hidden=16, context=4, horizon=3)
    pred = tmp_path / "pred.pt"
    checkpoint.save(pred, task, task.make_optimizers(), 1, {"trainer": {"test_fraction": 0.1}})
    out = tmp_path / "rollouts"
    result = generate(
        pred, out, 3, f"store={tiny_store}", "generate.length=9", "generate.format=npy"
    )
    assert result["kind"] == "predictor" and result["context"] == 4
    store = FrameStore.open(tiny_store)
    rows = manifest(out)
    assert {r["source"] for r in rows} <= {"v4", "v5"}  # the test split
    for r in rows:
        video = np.load(out / r["path"])
        assert video.shape == (4 + 9, SIZE, SIZE, 1) and r["frames"] == 13
        assert np.array_equal(video[:4], store.frames(r["source"], 0, 4))  # the seed frames
    capsys_free = main(
        ["generate", f"checkpoint={pred}", f"out={out}2", "num_videos=1", "generate.fix=motion"]
        + [f"store={tiny_store}"]
    )
    assert capsys_free == 2
