"""Live prediction latency (issue 9): per-frame latency p50/p95/p99 and sustained fps of
`framecast stream` at 64x64 for a 30 fps source, in-process; optionally through
`framecast serve` on loopback (the overhead over in-process) and the serve load test.

    python bench/stream.py                       # default streaming model, 20 s, in-process
    python bench/stream.py --serve               # + the same stream through framecast serve
    python bench/stream.py --serve-load          # + 50 sessions x 10 fps x 30 s on loopback, twice
    python bench/stream.py --device cuda --model lstm_autoencoder   # paper size (2048 units)
    python bench/stream.py --model transformer_predictor_cpu --set kv_cache=false  # no KV cache
    python bench/stream.py --smoke [--serve --serve-load]   # tiny, seconds: the script's check

The model's weights are random (latency does not depend on them): its config is
configs/model/<--model>.yaml. Goals: on the 2-core CPU, p95 <= 33 ms (one frame period) at
30 fps with no growing backlog; on one H100/H200 the 2048-unit model p95 <= 5 ms; through
serve on loopback, p95 overhead <= 10 ms.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Table  # noqa: E402

SOURCE = "lavfi:testsrc2=size=320x240:rate=30"


def make_checkpoint(
    model: str, path: str, sets: list[str] | None = None, **overrides: Any
) -> dict[str, Any]:
    """Save an untrained checkpoint of configs/model/<model>.yaml (composed, as `framecast
    train model=<model> model.KEY=VALUE...` sees it, `sets` the KEY=VALUE); returns its model
    config."""
    import torch

    from pipeline.core.config import compose, to_plain
    from pipeline.runtime import checkpoint

    extra = [f"model.{kv}" for kv in sets or []]
    cfg = to_plain(compose("train", [f"model={model}", *extra]).model)
    cfg.update(overrides)
    torch.manual_seed(0)
    task = checkpoint.build(cfg)
    checkpoint.save(path, task, {}, 0, {})
    return cfg


def stream_once(
    ckpt: str, seconds: float, device: str, horizon: int, server: str | None = None
) -> dict[str, Any]:
    """One `framecast stream` run from a 30 fps test source; its result dict."""
    from pipeline.runtime.client import Client
    from pipeline.runtime.inference import LocalSession, load_model
    from pipeline.stages.stream import StreamConfig, Streamer

    opts = StreamConfig(
        horizon=horizon, port=0, seconds=seconds, device=device, server=server, scale=4
    )
    if server:
        session = Client(server, os.environ.get("FRAMECAST_TOKEN")).session()
        predictor: Any = session
        size, ch = session.frame_size, session.channels
    else:
        loaded = load_model(ckpt, device, want=("predictor",), stage="stream")
        predictor = LocalSession(loaded)
        size, ch = loaded.frame_size, loaded.channels
    return Streamer(SOURCE, predictor, size, ch, opts).start().wait()


def serve_load(
    url: str,
    token: str | None,
    sessions: int = 50,
    fps: float = 10.0,
    seconds: float = 30.0,
    horizon: int = 1,
    check: str | None = None,
) -> dict[str, Any]:
    """`sessions` concurrent clients, each sending its own random frames at `fps` for `seconds`
    (bounded: fps * seconds frames each). With `check` (the served checkpoint), each session's
    last prediction is compared with an in-process run over the same frames: a session that
    saw another's state would differ."""
    from pipeline.core.errors import ServeClientError
    from pipeline.core.stats import percentiles
    from pipeline.runtime.client import Client

    info = Client(url, token).session()
    size, ch = info.frame_size, info.channels
    info.close()
    n_frames = max(1, int(fps * seconds))
    lat: list[float] = []
    errors: list[str] = []
    lasts: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    lock = threading.Lock()
    before = Client(url, token).metrics()

    def client(i: int) -> None:
        rng = np.random.default_rng(1000 + i)
        frames = rng.integers(0, 256, (n_frames, size, size, ch), dtype=np.uint8)
        try:
            s = Client(url, token, timeout=30).session()
        except ServeClientError as e:
            with lock:
                errors.append(str(e))
            return
        t_start = time.perf_counter() + (i / sessions) / fps  # spread the sessions' phases
        out = None
        for k in range(n_frames):
            due = t_start + k / fps
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            t0 = time.perf_counter()
            try:
                out = s.push(frames[k], horizon)
            except ServeClientError as e:
                with lock:
                    errors.append(str(e))
                break
            with lock:
                lat.append((time.perf_counter() - t0) * 1e3)
        s.close()
        if out is not None:
            with lock:
                lasts[i] = (frames, out)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 120)
    wall = time.perf_counter() - t0
    mismatched = 0
    if check:
        from pipeline.runtime.inference import LocalSession, load_model

        loaded = load_model(check, "cpu")
        for frames, out in lasts.values():
            p = LocalSession(loaded)
            for f in frames[:-1]:
                p.push(f, 1)
            want = p.push(frames[-1], horizon)
            mismatched += int(np.abs(want.astype(int) - out.astype(int)).max() > 1)
    after = Client(url, token).metrics()
    reps0, reps = before.get("replicas", []), after.get("replicas", [])
    frames_run = sum(r.get("frames", 0) for r in reps) - sum(r.get("frames", 0) for r in reps0)
    batches = sum(r.get("batches", 0) for r in reps) - sum(r.get("batches", 0) for r in reps0)
    rss = [r.get("rss_mb") for r in after.get("replicas", [])]
    rss0 = [r.get("rss_mb") for r in before.get("replicas", [])]
    return {
        "sessions": sessions,
        "fps_per_session": fps,
        "seconds": round(wall, 3),
        "requests": len(lat),
        "throughput": round(len(lat) / wall, 2) if wall else 0.0,
        "errors": len(errors),
        "first_errors": errors[:3],
        "latency_ms": percentiles(lat),
        "mismatched_sessions": mismatched,
        "model_batches": batches,
        "frames_per_model_batch": round(frames_run / batches, 2) if batches else None,
        "checked_sessions": len(lasts) if check else 0,
        "sessions_after": after.get("sessions"),
        "rss_mb_before": rss0,
        "rss_mb_after": rss,
    }


def start_serve(ckpt: str, device: str, num_cpus: int | None = None) -> tuple[str, Any]:
    import socket

    import ray

    from pipeline.core.errors import ServeClientError
    from pipeline.runtime.client import Client
    from pipeline.serve import app as fserve
    from pipeline.serve.app import ServeConfig

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if not ray.is_initialized():
        from pipeline.runtime.cluster import LOCAL_NODE_IP

        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            _node_ip_address=LOCAL_NODE_IP,
        )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gpus = 1.0 if device == "cuda" else 0.0
    s = ServeConfig(port=port, gpus_per_replica=gpus, cpus_per_replica=1)
    url = fserve.start(fserve.plan(ckpt, s), s)
    deadline = time.time() + 120
    while True:
        try:
            Client(url).healthz()
            return url, fserve
        except ServeClientError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="lstm_autoencoder_small", help="configs/model/NAME.yaml")
    ap.add_argument("--hidden", type=int, default=None, help="override model.hidden")
    ap.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="model options: kv_cache=false"
    )
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--horizon", type=int, default=5, help="predicted frames per incoming frame")
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (stream default)")
    ap.add_argument("--serve", action="store_true", help="also stream through framecast serve")
    ap.add_argument("--serve-load", action="store_true", help="also the serve load test")
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--session-fps", type=float, default=10.0)
    ap.add_argument("--load-seconds", type=float, default=30.0)
    ap.add_argument(
        "--load-rounds", type=int, default=2, help="load runs in a row: RSS after each (flat?)"
    )
    ap.add_argument("--json", default=None, help="write the table as JSON here")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: checks the script")
    args = ap.parse_args()
    if args.smoke:  # a 32-unit model, a few seconds of stream and of load
        args.hidden, args.seconds, args.horizon = 32, 2.0, 2
        args.sessions, args.session_fps, args.load_seconds, args.load_rounds = 2, 5.0, 2.0, 2

    import torch

    torch.set_num_threads(args.threads)
    tmp = tempfile.mkdtemp(prefix="bench-stream-")
    ckpt = os.path.join(tmp, "model.pt")
    overrides = {"frame_size": 64}
    if args.hidden:
        overrides["hidden"] = args.hidden
    mcfg = make_checkpoint(args.model, ckpt, args.set, **overrides)
    card = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    shown = {k: mcfg.get(k) for k in ("hidden", "cell", "dim", "blocks") if k in mcfg}
    options = " ".join([*(f"{k}={v}" for k, v in shown.items()), *args.set])
    desc = f"{args.model} {options} on {card}"
    table = Table(f"stream latency, 64x64, 30 fps source, K={args.horizon}: {desc}")
    table.add("frame period at 30 fps", 1000 / 30, "ms")
    res = stream_once(ckpt, args.seconds, args.device, args.horizon)
    lat, model = res["latency_ms"]["total"], res["latency_ms"]["model"]
    table.add("in-process p50 capture->page", lat["p50"], "ms", "frame period at 30 fps")
    table.add("in-process p95 capture->page", lat["p95"], "ms", "frame period at 30 fps")
    table.add("in-process p99 capture->page", lat["p99"], "ms", "frame period at 30 fps")
    table.add("in-process p95 model only", model["p95"], "ms", "frame period at 30 fps")
    table.add("source fps", res["capture_fps"], "frames/s")
    table.add("sustained fps", res["fps"], "frames/s", "source fps")
    table.add("dropped frames", res["frames_dropped"], "frames")
    extra: dict[str, Any] = {"stream": res, "device": card, "model": mcfg}
    fserve = None
    try:
        if args.serve or args.serve_load:
            url, fserve = start_serve(ckpt, args.device, 2 if args.smoke else None)
        if args.serve:
            rs = stream_once(ckpt, args.seconds, args.device, args.horizon, server=url)
            extra["stream_serve"] = rs
            table.add(
                "via serve p95 capture->page",
                rs["latency_ms"]["total"]["p95"],
                "ms",
                "in-process p95 capture->page",
            )
            table.add("serve p95 overhead", rs["latency_ms"]["total"]["p95"] - lat["p95"], "ms")
            table.add("via serve sustained fps", rs["fps"], "frames/s", "source fps")
            table.add("via serve dropped frames", rs["frames_dropped"], "frames")
        if args.serve_load:
            load = serve_load(
                url,
                None,
                args.sessions,
                args.session_fps,
                args.load_seconds,
                horizon=1,
                check=ckpt,
            )
            extra["serve_load"] = load
            name = f"load {args.sessions}x{args.session_fps:g} fps"
            table.add(f"{name} offered", args.sessions * args.session_fps, "req/s")
            table.add(f"{name} served", load["throughput"], "req/s", f"{name} offered")
            table.add(f"{name} p95", load["latency_ms"]["p95"] or 0.0, "ms")
            table.add(f"{name} errors", load["errors"], "requests")
            table.add(f"{name} mismatched sessions", load["mismatched_sessions"], "sessions")
            table.add(f"{name} frames per model batch", load["frames_per_model_batch"] or 0, "")
            before, after = load["rss_mb_before"], load["rss_mb_after"]
            if before and after and before[0] and after[0]:
                table.add("replica RSS before load", before[0], "MB")
                table.add("replica RSS after load", after[0], "MB", "replica RSS before load")
            # memory stays flat: more rounds of the same load must not keep adding to it
            for r in range(2, args.load_rounds + 1):
                again = serve_load(
                    url, None, args.sessions, args.session_fps, args.load_seconds, horizon=1
                )
                extra[f"serve_load_round_{r}"] = again
                table.add(f"load round {r} errors", again["errors"], "requests")
                rss = again["rss_mb_after"]
                if rss and rss[0] and after and after[0]:
                    table.add(
                        f"replica RSS after round {r}", rss[0], "MB", "replica RSS after load"
                    )
    finally:
        if fserve is not None:
            fserve.stop()
    table.print()
    table.write(args.json, **extra)


if __name__ == "__main__":
    main()
