"""`framecast serve`: predictors and generators over HTTP on Ray Serve (FastAPI ingress).

Deployments (one Serve application, "framecast"):

    Ingress (FastAPI: parses and checks input, auth, metrics; with serve.replicas=1 it also
      │      holds the predictor and its sessions, saving an actor hop per frame)
      ├── predictor_0 .. predictor_{R-1}   SessionStore: the model and the live sessions of a
      │                                    shard (only when serve.replicas > 1)
      └── generator                        GeneratorStore: a MoCoGAN generator (optional)

A stream session holds the model's recurrent state (`model.stream(1)`), so every request of a
session must reach the replica that holds it: each of the `serve.replicas` predictor replicas is
its own deployment (one replica each), and a session id names its shard. Sessions idle for
`serve.idle_seconds` are dropped. A replica steps the frames of concurrent sessions through the
model as one batch (see SessionStore): on a GPU, many streams cost about one.

HTTP API (all under the server's URL; with a token: `Authorization: Bearer TOKEN`, or
`?token=TOKEN` for WebSockets):

    GET    /healthz                         {"status": "ok", ...}   (never needs the token)
    GET    /metrics                         latency percentiles, sessions, frames, drops, errors
    GET    /v1/info                         the hosted models (frame size, channels, horizon)
    POST   /v1/sessions                     -> {"session": ID, "frame_size", "channels", ...}
    POST   /v1/sessions/ID/frames?horizon=K&out=raw|png|json
           body: raw uint8 frames (N, H, W, C) (application/octet-stream; optional header
           X-Frame-Shape: N,H,W,C), one PNG or JPEG (image/png, image/jpeg), or JSON
           {"frames": [base64 PNG/JPEG, ...]}. Steps the session through the frames and returns
           the next K frames: raw (K, H, W, C) bytes with X-Frame-Shape, a PNG strip, or JSON.
    DELETE /v1/sessions/ID
    WS     /v1/sessions/ID/ws?horizon=K     binary messages: raw frames in, raw predictions out;
           text {"horizon": K} changes K; a bad message gets {"error": ...} and the socket
           stays open; when frames arrive faster than the model runs the oldest are dropped.
    POST   /v1/generate                     JSON {"count", "length", "category", "seed", "fix":
           "content"|"motion"|null, "format": "mp4"|"gif", "fps"} -> NDJSON lines, one per
           video as it is ready: {"index", "format", "seed", "data": base64}
"""

from __future__ import annotations

import base64
import http.client
import io
import ipaddress
import json
import os
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import numpy as np
from omegaconf import DictConfig

from pipeline.core.config import UsageError, required, typed, write_result

try:  # FastAPI (from ray[serve]) resolves the routes' annotations in this module's globals
    from fastapi import Request, WebSocket
    from fastapi.responses import Response, StreamingResponse
except ImportError:  # pragma: no cover - without ray[serve] only the client and parsers work
    Request = WebSocket = Response = StreamingResponse = Any  # type: ignore[misc,assignment]

PREDICTORS = ("lstm_autoencoder", "hierarchical")
GENERATORS = ("mocogan",)
APP_NAME = "framecast"


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"  # HTTP address; anything but loopback needs serve.token
    port: int = 8000
    token: str | None = None  # clients send `Authorization: Bearer TOKEN` (else $FRAMECAST_TOKEN)
    replicas: int = 1  # predictor replicas (session shards); 1: the ingress holds the model
    gpus_per_replica: float = 0.0
    cpus_per_replica: float = 1.0
    threads: int = 1  # torch CPU threads per replica
    horizon: int | None = None  # default predicted frames (null: the model's training horizon)
    max_horizon: int = 100
    max_batch: int = 256  # frames in one request
    max_sessions: int = 1000  # per replica
    batch_sessions: int = 32  # most sessions stepped through the model as one batch
    batch_wait_ms: float = 0.0  # wait for more sessions to batch (0: only those waiting)
    idle_seconds: float = 300.0  # sessions idle this long are dropped
    ws_queue: int = 2  # WebSocket frames waiting for the model; the oldest are dropped beyond
    generator: str | None = None  # a generator checkpoint served beside the predictor
    max_videos: int = 64  # videos per generate request
    max_length: int = 256  # frames per generated video
    seconds: float | None = None  # stop after this many seconds (null: until Ctrl-C)
    address: str | None = None  # Ray address (null: cluster.address, $RAY_ADDRESS or local)
    access_log: bool = False  # Serve's per-request access log lines (proxy and replicas)


# --------------------------------------------------------------------------- input parsing
def _image_to_array(data: bytes, size: int, channels: int, what: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise BadInput(400, f"{what}: not a readable PNG or JPEG image ({e})") from None
    if img.size != (size, size):
        raise BadInput(
            422, f"{what}: image is {img.size[0]}x{img.size[1]}, the model takes {size}x{size}"
        )
    have = {"L": 1, "1": 1, "RGB": 3}.get(img.mode)
    if have != channels:
        want = "gray (L)" if channels == 1 else "RGB"
        raise BadInput(
            422,
            f"{what}: image mode {img.mode} ({len(img.getbands())} channels), "
            f"the model takes {channels} channel{'s' if channels > 1 else ''}: {want}",
        )
    arr = np.asarray(img.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
    return arr.reshape(size, size, channels)


def parse_frames(
    body: bytes, content_type: str, size: int, channels: int, shape: str | None, max_batch: int
) -> np.ndarray:
    """uint8 (N, H, W, C) frames of a request body; BadInput with a clear message otherwise."""
    ctype = (content_type or "application/octet-stream").split(";")[0].strip().lower()
    if not body:
        raise BadInput(400, "empty request body: send frames (raw uint8, PNG or JPEG)")
    frame_bytes = size * size * channels
    if ctype in ("image/png", "image/jpeg", "image/jpg"):
        frames = _image_to_array(body, size, channels, ctype)[None]
    elif ctype == "application/json":
        try:
            items = json.loads(body)["frames"]
            if not isinstance(items, list) or not items:
                raise ValueError("'frames' must be a non-empty list")
            if len(items) > max_batch:
                raise BadInput(413, f"{len(items)} frames in one request (max {max_batch})")
            decoded = [base64.b64decode(s, validate=True) for s in items]
            frames = np.stack(
                [_image_to_array(d, size, channels, f"frame {i}") for i, d in enumerate(decoded)]
            )
        except BadInput:
            raise
        except (ValueError, KeyError, TypeError) as e:
            raise BadInput(
                400, f'JSON body must be {{"frames": [base64 PNG or JPEG, ...]}} ({e})'
            ) from None
    elif ctype in ("application/octet-stream", "application/x-raw", "video/raw"):
        if shape:
            try:
                dims = tuple(int(d) for d in shape.replace("x", ",").split(","))
            except ValueError:
                raise BadInput(400, f"X-Frame-Shape {shape!r}: expected N,H,W,C") from None
            if len(dims) == 3:
                dims = (1, *dims)
            if len(dims) != 4:
                raise BadInput(400, f"X-Frame-Shape {shape!r}: expected N,H,W,C")
            if dims[1:3] != (size, size):
                raise BadInput(
                    422, f"frames are {dims[2]}x{dims[1]}, the model takes {size}x{size}"
                )
            if dims[3] != channels:
                raise BadInput(422, f"frames have {dims[3]} channels, the model takes {channels}")
            if len(body) != int(np.prod(dims)):
                raise BadInput(
                    400,
                    f"raw body of {len(body)} bytes does not match X-Frame-Shape {shape} "
                    f"({int(np.prod(dims))} bytes)",
                )
        elif len(body) % frame_bytes:
            raise BadInput(
                422,
                f"raw body of {len(body)} bytes is not a whole number of {size}x{size}x"
                f"{channels} uint8 frames ({frame_bytes} bytes each): wrong size or channels?",
            )
        n = len(body) // frame_bytes
        if n > max_batch:
            raise BadInput(413, f"{n} frames in one request (max {max_batch})")
        frames = np.frombuffer(body, np.uint8).reshape(n, size, size, channels)
    else:
        raise BadInput(
            415,
            f"unsupported Content-Type {ctype!r}: use application/octet-stream (raw uint8 "
            "frames), image/png, image/jpeg or application/json",
        )
    if len(frames) > max_batch:
        raise BadInput(413, f"{len(frames)} frames in one request (max {max_batch})")
    return frames


def encode_png(frames: np.ndarray) -> bytes:
    """One PNG of uint8 frames (K, H, W, C) side by side."""
    from PIL import Image

    strip = np.concatenate(list(frames), axis=1)
    img = Image.fromarray(strip[:, :, 0] if strip.shape[2] == 1 else strip)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _pct(values: Any) -> dict[str, float | None]:
    from pipeline.stages.stream import percentiles

    return percentiles(list(values))


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "127.0.0.1", "::1"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _rss_mb() -> float | None:
    """This process's resident memory in MiB (Linux), for the metrics."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return None


# --------------------------------------------------------------------------- model hosts
class SessionStore:
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
        import torch

        from pipeline.stages.stream import load_predictor

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.model, self.device, self.mcfg = load_predictor(ckpt_path, device)
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
                "stream": self.model.stream(1),
                "used": time.monotonic(),
                "frames": 0,
            }
            self.created += 1
        return {"session": sid}

    async def push(self, sid: str, frames: np.ndarray, horizon: int) -> dict[str, Any]:
        """Step session `sid` through uint8 frames (N, H, W, C); {"frames": the next `horizon`
        frames (K, H, W, C) uint8 or None, "frames_seen"}, or {"error", "status"}."""
        import asyncio

        future = asyncio.get_running_loop().create_future()
        self._queue.append((sid, frames, horizon, future))
        if not self._draining:
            self._draining = True
            asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        """Run the queued pushes batch after batch until none is left."""
        import asyncio

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
        from collections import Counter

        from pipeline.stages.stream import native_lstm

        torch = self.torch
        results: list[dict[str, Any] | None] = [None] * len(sids)
        with self.lock, torch.no_grad(), native_lstm():
            count = Counter(sids)
            groups: dict[tuple[Any, ...], list[int]] = {}
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
        torch = self.torch
        if len(sessions) == 1:
            stream = sessions[0]["stream"]
            x = torch.from_numpy(np.ascontiguousarray(frames[0])).to(self.device)
        else:
            stream = type(sessions[0]["stream"]).merge([s["stream"] for s in sessions])
            x = torch.from_numpy(np.concatenate(frames)).to(self.device)  # (B, H, W, C)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)  # (N or B, C, H, W)
        if len(sessions) == 1:
            for i in range(x.shape[0]):
                stream.step(x[i : i + 1])
        else:
            stream.step(x)
        k = max(horizons)
        pred = None
        if k > 0:
            p = stream.predict(k)  # (B, k, C, H, W)
            u8 = p.float().clamp_(0, 1).mul_(255.0).round_().to(torch.uint8)
            pred = u8.permute(0, 1, 3, 4, 2).cpu().numpy()  # (B, k, H, W, C)
        if len(sessions) > 1:
            for s, part in zip(sessions, stream.split(), strict=True):
                s["stream"] = part
        now = time.monotonic()
        outs = []
        for j, (s, f, h) in enumerate(zip(sessions, frames, horizons, strict=True)):
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


class GeneratorStore:
    """A generator checkpoint (MoCoGAN) that renders and encodes videos one at a time."""

    def __init__(self, ckpt_path: str, device: str = "auto", threads: int = 1) -> None:
        import torch

        from pipeline.runtime import checkpoint
        from pipeline.stages.evaluate import pick_device

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        ckpt = checkpoint.load(ckpt_path)
        self.device = pick_device(device)
        self.model = checkpoint.restore_task(ckpt, self.device).inference_model().eval()
        self.mcfg = dict(ckpt["model_config"])

    def generate(
        self,
        count: int,
        length: int,
        category: int | None,
        seed: int,
        fix: str | None,
        fmt: str,
        fps: float,
    ) -> Any:
        """Yield {"index", "format", "seed", "data"(bytes)} per video as it is encoded."""
        import tempfile

        from pipeline.io.video import write_video

        g = self.model
        content = motion = None
        if fix in ("content", "motion"):
            _, codes = g.sample(1, length, category=category, seed=seed)
            if fix == "content":
                content = codes["content"][0]
            else:
                motion = codes["motion_noise"][0]
        with tempfile.TemporaryDirectory(prefix="framecast-gen-") as tmp:
            for i in range(count):
                vseed = seed + 1 + i if fix else seed + i
                videos, _ = g.sample(
                    1, length, category=category, seed=vseed, content=content, motion=motion
                )
                u8 = (videos[0].permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
                path = os.path.join(tmp, f"v{i}.{fmt}")
                write_video(path, u8, fps=fps)
                with open(path, "rb") as f:
                    data = f.read()
                os.remove(path)
                yield {"index": i, "format": fmt, "seed": vseed, "data": data}


# --------------------------------------------------------------------------- the Serve app
def _checkpoint_kind(path: str) -> tuple[str, dict[str, Any]]:
    from pipeline.runtime import checkpoint

    ckpt = checkpoint.load(path)
    name = str(ckpt.get("model"))
    if name in PREDICTORS:
        return "predictor", dict(ckpt["model_config"])
    if name in GENERATORS:
        return "generator", dict(ckpt["model_config"])
    raise UsageError(
        f"checkpoint={path}: a {name} model is neither a predictor ({', '.join(PREDICTORS)}) "
        f"nor a generator ({', '.join(GENERATORS)})"
    )


def build_app(
    predictor: str | None, generator: str | None, s: ServeConfig, token: str | None
) -> Any:
    """The bound Serve application for a predictor and/or a generator checkpoint."""
    from ray import serve

    actor_opts = {"num_cpus": s.cpus_per_replica, "num_gpus": s.gpus_per_replica}
    device = "cuda" if s.gpus_per_replica > 0 else "cpu"
    shards = []
    local = None  # SessionStore arguments when the ingress holds the one predictor replica
    meta: dict[str, Any] = {}
    ingress_opts: dict[str, Any] = {"num_cpus": 0}
    if predictor:
        _, mcfg = _checkpoint_kind(predictor)
        meta["predictor"] = {
            "checkpoint": predictor,
            "model": mcfg.get("name"),
            "frame_size": int(mcfg.get("frame_size", 64)),
            "channels": int(mcfg.get("channels", 1)),
            "horizon": int(s.horizon or mcfg.get("horizon", 10)),
            "replicas": s.replicas,
        }
        args = (
            predictor,
            device,
            s.threads,
            s.idle_seconds,
            s.max_sessions,
            s.batch_sessions,
            s.batch_wait_ms,
        )
        if s.replicas == 1:
            # one replica: the ingress holds the sessions itself, saving an actor hop per frame
            local, ingress_opts = args, actor_opts
        else:
            queue = max(64, s.batch_sessions)  # Serve's batch queue needs that many in flight
            host = serve.deployment(SessionStore, max_ongoing_requests=queue)
            for i in range(s.replicas):
                shards.append(
                    host.options(name=f"predictor_{i}", ray_actor_options=actor_opts).bind(*args)
                )
    gen = None
    if generator:
        _, gcfg = _checkpoint_kind(generator)
        meta["generator"] = {
            "checkpoint": generator,
            "model": gcfg.get("name"),
            "frame_size": int(gcfg.get("frame_size", 64)),
            "channels": int(gcfg.get("channels", 3)),
            "num_categories": int(gcfg.get("num_categories", 0)),
        }
        gen = (
            serve.deployment(GeneratorStore)
            .options(name="generator", ray_actor_options=actor_opts)
            .bind(generator, device, s.threads)
        )
    ingress = _ingress_class()
    return ingress.options(ray_actor_options=ingress_opts).bind(
        shards,
        local,
        gen,
        meta,
        token,
        s.max_batch,
        s.max_horizon,
        s.ws_queue,
        s.max_videos,
        s.max_length,
    )


def _ingress_class() -> Any:
    import asyncio
    import hmac

    from fastapi import FastAPI, HTTPException
    from fastapi.responses import JSONResponse
    from ray import serve
    from starlette.websockets import WebSocketDisconnect

    api = FastAPI(title="framecast", docs_url=None, redoc_url=None)

    class Ingress:
        def __init__(
            self,
            shards: list[Any],
            local: tuple[Any, ...] | None,
            generator: Any,
            meta: dict[str, Any],
            token: str | None,
            max_batch: int,
            max_horizon: int,
            ws_queue: int,
            max_videos: int,
            max_length: int,
        ) -> None:
            self.shards, self.generator, self.meta = shards, generator, meta
            # the one predictor replica, in this process (else sessions live on the shards)
            self.local = SessionStore(*local) if local is not None else None
            self.n_shards = 1 if self.local is not None else len(self.shards)
            self.token = token
            self.max_batch, self.max_horizon, self.ws_queue = max_batch, max_horizon, ws_queue
            self.max_videos, self.max_length = max_videos, max_length
            self.latency_ms: deque[float] = deque(maxlen=20000)
            self.requests = 0
            self.errors: dict[str, int] = {}
            self.ws_dropped = 0
            self.frames_in = 0
            self.next_shard = 0
            self.started = time.time()

        # ------------------------------------------------------------ helpers
        def _auth(self, supplied: str | None) -> None:
            if self.token is None:
                return
            if not supplied or not hmac.compare_digest(supplied.encode(), self.token.encode()):
                self._count_error(401)
                raise HTTPException(401, "missing or wrong token (send Authorization: Bearer ...)")

        def _request_token(self, request: Request) -> str | None:
            auth = request.headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                return auth[7:].strip()
            return request.headers.get("x-token") or request.query_params.get("token")

        def _count_error(self, status: int) -> None:
            self.errors[str(status)] = self.errors.get(str(status), 0) + 1

        def _fail(self, status: int, msg: str) -> HTTPException:
            self._count_error(status)
            return HTTPException(status, msg)

        def _predictor(self) -> dict[str, Any]:
            p = self.meta.get("predictor")
            if p is None:
                raise self._fail(404, "this server hosts no predictor (only a generator)")
            return p

        def _shard(self, sid: str) -> int:
            try:
                i = int(sid.split("-", 1)[0])
            except ValueError:
                raise self._fail(404, f"no such session {sid}") from None
            if not 0 <= i < self.n_shards:
                raise self._fail(404, f"no such session {sid}")
            return i

        async def _call(self, shard: int, method: str, *args: Any) -> Any:
            """SessionStore.method(*args) on a shard: here, or on its replica."""
            if self.local is None:
                return await getattr(self.shards[shard], method).remote(*args)
            if method == "push":
                return await self.local.push(*args)
            return await asyncio.to_thread(getattr(self.local, method), *args)

        def _horizon(self, value: str | None) -> int:
            p = self._predictor()
            if value in (None, ""):
                return int(p["horizon"])
            try:
                k = int(value)
            except ValueError:
                raise self._fail(400, f"horizon={value!r}: not an integer") from None
            if not 0 <= k <= self.max_horizon:
                raise self._fail(400, f"horizon={k}: must be in [0, {self.max_horizon}]")
            return k

        async def _push(self, sid: str, frames: np.ndarray, k: int) -> dict[str, Any]:
            out = await self._call(self._shard(sid), "push", sid, frames, k)
            if "error" in out:
                raise self._fail(out["status"], out["error"])
            self.frames_in += len(frames)
            return out

        # ------------------------------------------------------------ routes
        @api.get("/healthz")
        async def healthz(self) -> dict[str, Any]:
            up = round(time.time() - self.started, 1)
            return {"status": "ok", "models": sorted(self.meta), "uptime_s": up}

        @api.get("/v1/info")
        async def info(self, request: Request) -> dict[str, Any]:
            self._auth(self._request_token(request))
            return self.meta

        @api.get("/metrics")
        async def metrics(self, request: Request) -> dict[str, Any]:
            self._auth(self._request_token(request))
            stats = await asyncio.gather(*[self._call(i, "stats") for i in range(self.n_shards)])
            keys = ("sessions", "sessions_created", "sessions_expired", "frames")
            total = {k: sum(st[k] for st in stats) for k in keys}
            return {
                "latency_ms": _pct(self.latency_ms),
                "requests": self.requests,
                "errors": dict(self.errors),
                "frames_in": self.frames_in,
                "frames_dropped": self.ws_dropped,
                "sessions": total.get("sessions", 0),
                "sessions_created": total.get("sessions_created", 0),
                "sessions_expired": total.get("sessions_expired", 0),
                "replicas": stats,
            }

        @api.post("/v1/sessions")
        async def create(self, request: Request) -> dict[str, Any]:
            self._auth(self._request_token(request))
            p = self._predictor()
            i = self.next_shard % self.n_shards
            self.next_shard += 1
            sid = f"{i}-{uuid.uuid4().hex}"
            out = await self._call(i, "create", sid)
            if "error" in out:
                raise self._fail(out["status"], out["error"])
            return {
                "session": sid,
                "frame_size": p["frame_size"],
                "channels": p["channels"],
                "horizon": p["horizon"],
            }

        @api.delete("/v1/sessions/{sid}")
        async def delete(self, sid: str, request: Request) -> dict[str, Any]:
            self._auth(self._request_token(request))
            if not await self._call(self._shard(sid), "delete", sid):
                raise self._fail(404, f"no such session {sid}")
            return {"deleted": sid}

        @api.post("/v1/sessions/{sid}/frames")
        async def frames(self, sid: str, request: Request) -> Response:
            t0 = time.perf_counter()
            self.requests += 1
            self._auth(self._request_token(request))
            p = self._predictor()
            k = self._horizon(request.query_params.get("horizon"))
            out_fmt = request.query_params.get("out", "raw")
            if out_fmt not in ("raw", "png", "json"):
                raise self._fail(400, f"out={out_fmt!r}: use raw, png or json")
            body = await request.body()
            try:
                frames = parse_frames(
                    body,
                    request.headers.get("content-type", ""),
                    p["frame_size"],
                    p["channels"],
                    request.headers.get("x-frame-shape"),
                    self.max_batch,
                )
            except BadInput as e:
                raise self._fail(e.status, str(e)) from None
            out = await self._push(sid, frames, k)
            pred = out["frames"]
            headers = {"X-Frames-Seen": str(out["frames_seen"])}
            if pred is None:
                resp: Response = JSONResponse({"frames_seen": out["frames_seen"]}, headers=headers)
            elif out_fmt == "raw":
                headers["X-Frame-Shape"] = ",".join(map(str, pred.shape))
                resp = Response(
                    pred.tobytes(), media_type="application/octet-stream", headers=headers
                )
            elif out_fmt == "png":
                resp = Response(encode_png(pred), media_type="image/png", headers=headers)
            else:
                pngs = [base64.b64encode(encode_png(f[None])).decode() for f in pred]
                resp = JSONResponse(
                    {"frames": pngs, "shape": list(pred.shape), "frames_seen": out["frames_seen"]},
                    headers=headers,
                )
            self.latency_ms.append((time.perf_counter() - t0) * 1e3)
            return resp

        @api.websocket("/v1/sessions/{sid}/ws")
        async def ws(self, websocket: WebSocket, sid: str) -> None:
            supplied = websocket.query_params.get("token")
            auth = websocket.headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                supplied = auth[7:].strip()
            if self.token is not None and (
                not supplied or not hmac.compare_digest(supplied.encode(), self.token.encode())
            ):
                self._count_error(401)
                await websocket.close(code=1008, reason="missing or wrong token")
                return
            p = self.meta.get("predictor")
            await websocket.accept()
            if p is None:
                await websocket.send_json({"error": "this server hosts no predictor"})
                await websocket.close(code=1003)
                return
            try:
                k = self._horizon(websocket.query_params.get("horizon"))
            except HTTPException as e:
                await websocket.send_json({"error": e.detail, "status": e.status_code})
                await websocket.close(code=1003)
                return
            state = {"k": k}
            pending: deque[tuple[np.ndarray, float]] = deque()
            wake = asyncio.Event()
            done = False

            async def worker() -> None:
                while not done or pending:
                    await wake.wait()
                    wake.clear()
                    while pending:
                        frames, t0 = pending.popleft()
                        try:
                            out = await self._push(sid, frames, state["k"])
                        except HTTPException as e:
                            await websocket.send_json({"error": e.detail, "status": e.status_code})
                            continue
                        if out["frames"] is not None:
                            await websocket.send_bytes(out["frames"].tobytes())
                        else:
                            await websocket.send_json({"frames_seen": out["frames_seen"]})
                        self.latency_ms.append((time.perf_counter() - t0) * 1e3)

            task = asyncio.create_task(worker())
            try:
                while True:
                    msg = await websocket.receive()
                    if msg["type"] == "websocket.disconnect":
                        break
                    self.requests += 1
                    t0 = time.perf_counter()
                    if msg.get("bytes") is not None:
                        try:
                            frames = parse_frames(
                                msg["bytes"],
                                "application/octet-stream",
                                p["frame_size"],
                                p["channels"],
                                None,
                                self.max_batch,
                            )
                        except BadInput as e:
                            self._count_error(e.status)
                            await websocket.send_json({"error": str(e), "status": e.status})
                            continue
                        while len(pending) >= self.ws_queue:
                            pending.popleft()
                            self.ws_dropped += 1
                        pending.append((frames, t0))
                        wake.set()
                    else:
                        try:
                            req = json.loads(msg.get("text") or "")
                            state["k"] = self._horizon(str(req["horizon"]))
                            await websocket.send_json({"horizon": state["k"]})
                        except HTTPException as e:
                            await websocket.send_json({"error": e.detail, "status": e.status_code})
                        except (ValueError, KeyError, TypeError):
                            self._count_error(400)
                            await websocket.send_json(
                                {"error": 'text messages must be JSON {"horizon": K}'}
                            )
            except WebSocketDisconnect:
                pass
            finally:
                done = True
                wake.set()
                task.cancel()

        @api.post("/v1/generate")
        async def generate(self, request: Request) -> StreamingResponse:
            self._auth(self._request_token(request))
            g = self.meta.get("generator")
            if g is None or self.generator is None:
                raise self._fail(404, "this server hosts no generator (serve.generator=CKPT)")
            try:
                req = json.loads(await request.body() or b"{}")
                if not isinstance(req, dict):
                    raise ValueError("expected a JSON object")
                count = int(req.get("count", 1))
                length = int(req.get("length", 16))
                seed = int(req.get("seed", 0))
                fps = float(req.get("fps", 8.0))
                category = req.get("category")
                category = None if category is None else int(category)
            except (ValueError, TypeError) as e:
                raise self._fail(400, f"generate: bad JSON body ({e})") from None
            fix = req.get("fix")
            fmt = req.get("format", "mp4")
            if fix not in (None, "content", "motion"):
                raise self._fail(400, f"fix={fix!r}: use content, motion or null")
            if fmt not in ("mp4", "gif", "webm"):
                raise self._fail(400, f"format={fmt!r}: use mp4, gif or webm")
            if not 1 <= count <= self.max_videos:
                raise self._fail(400, f"count={count}: must be in [1, {self.max_videos}]")
            if not 1 <= length <= self.max_length:
                raise self._fail(400, f"length={length}: must be in [1, {self.max_length}]")
            if fps <= 0:
                raise self._fail(400, f"fps={fps}: must be > 0")
            ncat = g["num_categories"]
            if category is not None and not (ncat and 0 <= category < ncat):
                raise self._fail(
                    400,
                    f"category={category}: this generator has "
                    + (f"categories 0..{ncat - 1}" if ncat else "no categories"),
                )
            gen = self.generator.options(stream=True).generate.remote(
                count, length, category, seed, fix, fmt, fps
            )

            async def lines() -> Any:
                async for item in gen:
                    item = dict(item)
                    item["data"] = base64.b64encode(item["data"]).decode()
                    yield json.dumps(item) + "\n"

            return StreamingResponse(lines(), media_type="application/x-ndjson")

    # Serve re-reads the routes' signatures in each replica, where cloudpickle has rebuilt this
    # class's functions with only the globals their code names: string annotations (this module
    # uses `from __future__ import annotations`) would not resolve there, so make them objects.
    ns = {**globals(), **locals()}
    for fn in vars(Ingress).values():
        hints = getattr(fn, "__annotations__", None)
        if isinstance(hints, dict):
            for key, value in list(hints.items()):
                if isinstance(value, str):
                    try:
                        hints[key] = eval(value, ns)  # noqa: S307 - our own annotations
                    except Exception:  # noqa: BLE001
                        pass
    return serve.deployment(name="ingress", max_ongoing_requests=256)(serve.ingress(api)(Ingress))


# --------------------------------------------------------------------------- the stage
def plan(cfg_checkpoint: str | None, s: ServeConfig) -> tuple[str | None, str | None, str | None]:
    """Check the options before anything starts: (predictor, generator, token)."""
    token = s.token or os.environ.get("FRAMECAST_TOKEN") or None
    if not _is_loopback(s.host) and not token:
        raise UsageError(
            f"serve.host={s.host}: binding to a non-loopback address needs a token "
            "(serve.token=... or $FRAMECAST_TOKEN) that clients must send"
        )
    if s.replicas < 1:
        raise UsageError(f"serve.replicas must be >= 1, got {s.replicas}")
    if s.gpus_per_replica < 0 or s.cpus_per_replica < 0:
        raise UsageError("serve.gpus_per_replica and serve.cpus_per_replica must be >= 0")
    predictor = generator = None
    if cfg_checkpoint:
        kind, _ = _checkpoint_kind(cfg_checkpoint)
        if kind == "predictor":
            predictor = cfg_checkpoint
        else:
            generator = cfg_checkpoint
    if s.generator:
        kind, _ = _checkpoint_kind(s.generator)
        if kind != "generator":
            raise UsageError(f"serve.generator={s.generator}: not a generator checkpoint")
        if generator:
            raise UsageError(
                "checkpoint= is a generator already: serve.generator adds a generator only "
                "beside a predictor checkpoint"
            )
        generator = s.generator
    if predictor is None and generator is None:
        raise UsageError("missing required key 'checkpoint' (add checkpoint=...)")
    return predictor, generator, token


def start(cfg_checkpoint: str | None, s: ServeConfig) -> tuple[str, dict[str, Any]]:
    """Start the Serve application (Ray must be initialised); returns (URL, hosted models)."""
    from ray import serve

    predictor, generator, token = plan(cfg_checkpoint, s)
    app = build_app(predictor, generator, s, token)
    # the access log writes (and flushes) a line per request in the proxy and the replica
    logging = {"enable_access_log": s.access_log}
    serve.start(http_options={"host": s.host, "port": s.port}, logging_config=logging)
    serve.run(app, name=APP_NAME, route_prefix="/", blocking=False, logging_config=logging)
    host = f"[{s.host}]" if ":" in s.host else s.host
    models = {"predictor": predictor, "generator": generator}
    return f"http://{host}:{s.port}", models


def stop() -> None:
    """Shut the Serve application and Serve itself down."""
    from ray import serve

    serve.shutdown()


def serve_app(args: dict[str, Any]) -> Any:
    """A Ray Serve application builder for `serve run` / KubeRay RayService
    (`import_path: pipeline.serve.app:serve_app`): the app `framecast serve` deploys.

    `args` are the RayService's `serveConfigV2.applications[].args`: `checkpoint` (a predictor
    or generator checkpoint path or URL the replicas can read) and any `serve.*` option of
    configs/serve.yaml (e.g. `replicas`, `gpus_per_replica`, `generator`). The bearer token
    comes from `$FRAMECAST_TOKEN` (a Kubernetes secret), never from the manifest.
    """
    options = dict(args or {})
    checkpoint = options.pop("checkpoint", None)
    # A RayService's HTTP proxy listens on all interfaces of its pod: the non-loopback rule of
    # `framecast serve` applies (a token is required).
    options.setdefault("host", "0.0.0.0")
    s = typed(options, ServeConfig, "serve")
    predictor, generator, token = plan(checkpoint, s)
    return build_app(predictor, generator, s, token)
