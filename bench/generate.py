"""`framecast generate` throughput: videos/s end to end against encoding the same frames alone.

    python bench/generate.py [--videos 48] [--length 16] [--size 64] [--gen-channels 64]
                             [--format mp4] [--repeat 2] [--json out.json]
    python bench/generate.py --smoke     # tiny sizes, Ray on 2 CPUs: the script's own check

One run, one MoCoGAN checkpoint (the paper's generator by default: 64x64 RGB, 16 frames, G_I
64 channels wide; untrained, its BatchNorm statistics taken from one batch so the frames are
not flat grey), the same videos (seed 0) in every row:

- encode_only: the videos' uint8 frames, sampled beforehand and held in memory, encoded by
  PyAV through `pipeline.io.video.write_video` in this process (one after the other): the
  reference of the end-to-end rows;
- sample_only: the generator alone (the same batches, no encoding), for the diagnosis;
- e2e_local: `framecast generate generate.backend=local`, in this process: sampling + encoding
  + writing the files and the manifest (Ray never imported);
- e2e_1_worker / e2e_2_workers: `framecast generate` on 1 and 2 Ray actors (Ray started before
  timing; the rate counts from the actors being ready to the last file written);
- encode_only_2_processes: encode_only in 2 plain processes, half the videos each: the
  parallelism the (shared) machine gives at the time of the run, the ceiling of 2 workers.

Goals (issue 6): e2e >= 0.8x encode_only, 2 workers >= 1.7x one. The machine is shared and
noisy: every timed row is the best of --repeat rounds. Torch runs on one thread in this process
(as one worker of two would); a lone Ray worker takes all the CPUs for torch, as
`framecast generate` gives it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local instance only
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

from bench.common import Table  # noqa: E402
from models.mocogan import MoCoGANTask  # noqa: E402
from pipeline.cli import main as framecast  # noqa: E402
from pipeline.io.video import encode_video  # noqa: E402
from pipeline.runtime import checkpoint  # noqa: E402
from pipeline.runtime.cluster import LOCAL_NODE_IP  # noqa: E402
from pipeline.runtime.inference import load_model  # noqa: E402
from pipeline.runtime.sampling import sample_videos  # noqa: E402


def make_checkpoint(path: Path, size: int, length: int, width: int) -> None:
    torch.manual_seed(0)
    task = MoCoGANTask(frame_size=size, length=length, gen_channels=width)
    gen = task.networks["generator"]
    norms = [m for m in gen.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.momentum = 1.0
    with torch.no_grad():
        gen(**gen.draw_codes(16, length))
    for m in norms:
        m.momentum = 0.1
    checkpoint.save(path, task, task.make_optimizers(), 0, {"trainer": {}})


def sample_all(
    ckpt: Path, n: int, length: int, batch: int, device: str = "cpu"
) -> tuple[np.ndarray, float]:
    """(uint8 videos (n, T, H, W, C), seconds) sampled as generate's units sample them."""
    loaded = load_model(ckpt, device, want=("generator",))
    out = []
    t0 = time.perf_counter()
    with loaded.inference():
        for start in range(0, n, batch):
            # uint8 on the host: what encoding needs
            out.append(sample_videos(loaded.model, 0, start, min(batch, n - start), length))
    seconds = time.perf_counter() - t0
    return np.concatenate(out), seconds


def encode_all(args: tuple) -> float:
    """Seconds to encode and write every video of `frames` (in one process)."""
    frames, fmt, outdir = args
    os.makedirs(outdir, exist_ok=True)
    t0 = time.perf_counter()
    for i, video in enumerate(frames):
        data = encode_video(video, fmt, 8.0, 18)
        Path(outdir, f"v{i}.{fmt}").write_bytes(data)
    return time.perf_counter() - t0


def encode_after(args: tuple, barrier, done) -> None:
    """A process of encode_only_2_processes: warm up, wait for the start, encode, report."""
    frames, fmt, outdir = args
    encode_all((frames[:1], fmt, outdir))
    barrier.wait()
    encode_all(args)
    done.put(time.perf_counter())


def run_generate(
    ckpt: Path, out: Path, n: int, length: int, fmt: str, backend: str, workers: int | None = None
) -> float:
    shutil.rmtree(out, ignore_errors=True)
    args = ["generate", f"checkpoint={ckpt}", f"out={out}", f"num_videos={n}"]
    args += [f"generate.length={length}", f"generate.format={fmt}", f"generate.backend={backend}"]
    args += ["generate.preview=0", "generate.batch_size=8"]
    if workers:
        args.append(f"generate.workers={workers}")
    assert framecast(args) == 0
    result = json.loads((out / "generate.json").read_text())
    assert result["generated"] == n
    return float(result["videos_per_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--videos", type=int, default=48, help="videos per timed row")
    ap.add_argument("--length", type=int, default=16, help="frames per video")
    ap.add_argument("--size", type=int, default=64, help="frame size (power of two)")
    ap.add_argument("--gen-channels", type=int, default=64, help="G_I width (paper: 64)")
    ap.add_argument("--format", default="mp4", help="mp4 | gif | webm | npy")
    ap.add_argument("--repeat", type=int, default=2, help="rounds; each row keeps its best")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--device", default="cpu", help="cpu | cuda: where sample_only samples")
    ap.add_argument(
        "--no-ray", action="store_true", help="skip the Ray rows (a machine without Ray)"
    )
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: checks the script")
    args = ap.parse_args()
    if args.smoke:  # every row, 4 videos of 4 frames 32x32 from an 8-wide generator
        args.videos, args.length, args.size, args.gen_channels, args.repeat = 4, 4, 32, 8, 1

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="framecast-bench-generate-"))
    try:
        ckpt = work / "gen.pt"
        make_checkpoint(ckpt, args.size, args.length, args.gen_channels)
        n, fmt = args.videos, args.format
        frames, _ = sample_all(ckpt, min(n, 8), args.length, 8, args.device)  # warm-up
        encode_all((frames[:2], fmt, str(work / "warm")))
        if not args.no_ray:
            import ray

            ray.init(
                num_cpus=2 if args.smoke else os.cpu_count() or 2,
                include_dashboard=False,
                log_to_driver=False,
                _node_ip_address=LOCAL_NODE_IP,
            )
        best: dict[str, float] = {}

        def keep(name: str, rate: float) -> None:
            best[name] = max(best.get(name, 0.0), rate)

        ctx = mp.get_context("spawn")
        for _ in range(args.repeat):
            frames, seconds = sample_all(ckpt, n, args.length, 8, args.device)
            keep("sample_only", n / seconds)
            keep("encode_only", n / encode_all((frames, fmt, str(work / "enc"))))
            halves = [
                (frames[: n // 2], fmt, str(work / "p0")),
                (frames[n // 2 :], fmt, str(work / "p1")),
            ]
            barrier, done = ctx.Barrier(3), ctx.Queue()
            procs = [ctx.Process(target=encode_after, args=(h, barrier, done)) for h in halves]
            for p in procs:
                p.start()
            barrier.wait()  # both processes imported and warmed up
            t0 = time.perf_counter()
            ends = [done.get() for _ in procs]
            for p in procs:
                p.join()
            keep("encode_only_2_processes", n / (max(ends) - t0))
            keep("e2e_local", run_generate(ckpt, work / "local", n, args.length, fmt, "local"))
            for w in () if args.no_ray else (1, 2):
                rate = run_generate(ckpt, work / f"ray{w}", n, args.length, fmt, "ray", w)
                keep(f"e2e_{w}_worker{'s' if w > 1 else ''}", rate)
        if not args.no_ray:
            ray.shutdown()

        title = (
            f"generate: {n} videos of {args.length} frames {args.size}x{args.size}, {fmt}, "
            f"G_I width {args.gen_channels}, sampling on {args.device} "
            f"(videos/s, best of {args.repeat})"
        )
        table = Table(title)
        table.add("encode_only", best["encode_only"], "videos/s")
        table.add("sample_only", best["sample_only"], "videos/s", "encode_only")
        table.add("e2e_local", best["e2e_local"], "videos/s", "encode_only")
        if not args.no_ray:
            table.add("e2e_1_worker", best["e2e_1_worker"], "videos/s", "encode_only")
            table.add("e2e_2_workers", best["e2e_2_workers"], "videos/s", "e2e_1_worker")
        table.add(
            "encode_only_2_processes", best["encode_only_2_processes"], "videos/s", "encode_only"
        )
        table.print()
        table.write(args.json, config=vars(args), cpus=os.cpu_count())
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
