"""The model hosts of `framecast serve`: plain Python objects that Ray Serve runs as
deployments (or the ingress holds, with one predictor replica).

- `SessionHost`: a predictor checkpoint and the live sessions of one shard, stepped in
  continuous batches through `runtime.inference.step_sessions` (the StreamSession protocol's
  merge/split hooks).
- `GeneratorHost`: a generator checkpoint; video i of a request seeded S is video i of
  `framecast generate generate.seed=S` (`runtime.sampling`, the one seed scheme).

Each loads its checkpoint once, in its own process, with `runtime.inference.load_model`.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Hashable, Iterator
from typing import Any

import numpy as np
import torch

from models.protocols import video_seed
from pipeline.io.video import encode_video
from pipeline.runtime.inference import load_model, open_session, step_sessions
from pipeline.runtime.sampling import sample_videos


def _rss_mb() -> float | None:
    """This process's resident memory in MiB (Linux), for the metrics."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return None


class SessionHost:
    """The live sessions of one predictor replica (plain Python: Serve wraps it, or the ingress
    holds it when there is one replica).

    Concurrent pushes are stepped together, continuously: while the model runs a batch, the
    pushes that arrive queue up, and the next batch takes all of them (up to `batch_sessions`;
    `batch_wait_ms` > 0 also waits that long for a batch to fill). A lone stream never waits,
    and under load the batch grows with the load. (Serve's `serve.batch` forms each batch as
    soon as one request is in, before the previous batch ends, so under load it queues batches
    of one or two.) Single-frame pushes of distinct sessions with the same history length go
    through the model as one batch (`stream.merge`): what keeps a GPU busy with many small
    streams. Everything else is stepped alone, in arrival order.
    """

    def __init__(
        self,
        ckpt_path: str,
        device: str = "auto",
        threads: int = 1,
        idle_seconds: float = 300.0,
        max_sessions: int = 1000,
        batch_sessions: int = 32,
        batch_wait_ms: float = 0.0,
    ) -> None:
        if threads:
            torch.set_num_threads(threads)
        # the one load of this process (the driver only inspected the checkpoint)
        self.loaded = load_model(ckpt_path, device, want=("predictor",), stage="serve")
        open_session(self.loaded)  # a checkpoint that cannot stream fails here, at startup
        self.idle_seconds, self.max_sessions = idle_seconds, max_sessions
        self.sessions: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()  # sessions and the model: one batch at a time
        self.expired = 0
        self.frames = 0
        self.created = 0
        self.batches = 0
        self.batched_pushes = 0  # pushes stepped as part of a merged batch
        self.batch_sessions = max(1, batch_sessions)
        self.batch_wait_s = max(0.0, batch_wait_ms) / 1000.0
        self._queue: deque[tuple[str, np.ndarray, int, Any]] = deque()  # pushes waiting
        self._draining = False
        self._stop = threading.Event()
        threading.Thread(target=self._sweeper, daemon=True, name="session-sweeper").start()

    def _sweeper(self) -> None:
        while not self._stop.wait(max(0.05, min(5.0, self.idle_seconds / 4))):
            self.sweep()

    def sweep(self) -> int:
        """Drop sessions idle longer than idle_seconds; returns how many."""
        now = time.monotonic()
        with self.lock:
            old = [k for k, s in self.sessions.items() if now - s["used"] > self.idle_seconds]
            for k in old:
                del self.sessions[k]
            self.expired += len(old)
        return len(old)

    def create(self, sid: str) -> dict[str, Any]:
        with self.lock:
            if len(self.sessions) >= self.max_sessions:
                return {
                    "error": f"too many sessions on this replica ({self.max_sessions})",
                    "status": 503,
                }
            self.sessions[sid] = {
                "stream": open_session(self.loaded),
                "used": time.monotonic(),
                "frames": 0,
            }
            self.created += 1
        return {"session": sid}

    async def push(self, sid: str, frames: np.ndarray, horizon: int) -> dict[str, Any]:
        """Step session `sid` through uint8 frames (N, H, W, C); {"frames": the next `horizon`
        frames (K, H, W, C) uint8 or None, "frames_seen"}, or {"error", "status"}."""
        future = asyncio.get_running_loop().create_future()
        self._queue.append((sid, frames, horizon, future))
        if not self._draining:
            self._draining = True
            asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        """Run the queued pushes batch after batch until none is left."""
        try:
            while self._queue:
                if self.batch_wait_s and len(self._queue) < self.batch_sessions:
                    await asyncio.sleep(self.batch_wait_s)
                n = min(len(self._queue), self.batch_sessions)
                batch = [self._queue.popleft() for _ in range(n)]
                sids, frames, horizons, futures = zip(*batch, strict=True)
                try:  # the model runs off the event loop, which meanwhile queues what arrives
                    results = await asyncio.to_thread(
                        self.step_batch, list(sids), list(frames), list(horizons)
                    )
                except Exception as e:  # noqa: BLE001 - every waiting push gets the error
                    for f in futures:
                        if not f.done():
                            f.set_exception(e)
                    continue
                for f, r in zip(futures, results, strict=True):
                    if not f.done():
                        f.set_result(r)
        finally:
            self._draining = False

    def step_batch(
        self, sids: list[str], frames: list[np.ndarray], horizons: list[int]
    ) -> list[dict[str, Any]]:
        """Push i steps session sids[i] through frames[i] and predicts horizons[i] frames."""
        results: list[dict[str, Any] | None] = [None] * len(sids)
        with self.lock:
            count = Counter(sids)
            groups: dict[Hashable, list[int]] = {}
            for i, sid in enumerate(sids):
                s = self.sessions.get(sid)
                if s is None:
                    results[i] = {
                        "error": f"no such session {sid} (closed, or expired after "
                        f"{self.idle_seconds:g} s idle)",
                        "status": 404,
                    }
                elif len(frames[i]) == 1 and count[sid] == 1:
                    groups.setdefault(s["stream"].batch_key(), []).append(i)
                else:  # several frames, or the same session twice: alone, in arrival order
                    results[i] = self._step([s], [frames[i]], [horizons[i]])[0]
            for rows in groups.values():
                group = [self.sessions[sids[i]] for i in rows]
                outs = self._step(group, [frames[i] for i in rows], [horizons[i] for i in rows])
                for i, out in zip(rows, outs, strict=True):
                    results[i] = out
                if len(rows) > 1:
                    self.batched_pushes += len(rows)
            self.batches += 1
        return [r for r in results if r is not None]

    def _step(
        self, sessions: list[dict[str, Any]], frames: list[np.ndarray], horizons: list[int]
    ) -> list[dict[str, Any]]:
        """Step sessions (one frame each, or one session with N frames) as one batch."""
        streams, pred = step_sessions(
            self.loaded, [s["stream"] for s in sessions], frames, max(horizons)
        )
        now = time.monotonic()
        outs = []
        for j, (s, stream, f, h) in enumerate(
            zip(sessions, streams, frames, horizons, strict=True)
        ):
            s["stream"] = stream
            s["frames"] += len(f)
            s["used"] = now
            self.frames += len(f)
            out = pred[j, :h] if pred is not None and h > 0 else None
            outs.append({"frames": out, "frames_seen": s["frames"]})
        return outs

    def delete(self, sid: str) -> bool:
        with self.lock:
            return self.sessions.pop(sid, None) is not None

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "rss_mb": _rss_mb(),
                "sessions": len(self.sessions),
                "sessions_created": self.created,
                "sessions_expired": self.expired,
                "frames": self.frames,
                "batches": self.batches,
                "batched_pushes": self.batched_pushes,
            }


class GeneratorHost:
    """A generator checkpoint that renders and encodes a request's videos one at a time."""

    def __init__(self, ckpt_path: str, device: str = "auto", threads: int = 1) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.loaded = load_model(ckpt_path, device, want=("generator",), stage="serve")

    def generate(
        self,
        count: int,
        length: int,
        category: int | None,
        seed: int,
        fix: str | None,
        fmt: str,
        fps: float,
    ) -> Iterator[dict[str, Any]]:
        """Yield {"index", "format", "seed", "video_seed", "data" (bytes)} per video as it is
        encoded: video i of the run seeded `seed` (the videos `framecast generate` makes)."""
        for i in range(count):
            with self.loaded.inference():
                frames = sample_videos(self.loaded.model, seed, i, 1, length, category, fix)[0]
            data = encode_video(frames, fmt, fps)
            yield {
                "index": i,
                "format": fmt,
                "seed": seed,
                "video_seed": video_seed(seed, i),
                "data": data,
            }


__all__ = ["GeneratorHost", "SessionHost"]
