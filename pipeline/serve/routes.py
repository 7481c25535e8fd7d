"""The HTTP API of `framecast serve`: a FastAPI ingress deployment (routes, auth, metrics,
shard routing) and the request/response helpers its routes share.

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
           "content"|"motion"|null, "format": "mp4"|"gif"|"webm"|"npy", "fps"} -> NDJSON lines,
           one per video as it is ready: {"index", "format", "seed", "video_seed", "data":
           base64}. Video i is video i of `framecast generate generate.seed=SEED` (the same
           codes: runtime/sampling.py).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections import deque
from typing import Any

import numpy as np

from pipeline.core.errors import BadInput
from pipeline.core.stats import percentiles
from pipeline.serve.hosts import SessionHost
from pipeline.serve.wire import encode_png, parse_frames

try:  # FastAPI (from ray[serve]) resolves the routes' annotations in this module's globals
    from fastapi import Request, WebSocket
    from fastapi.responses import Response, StreamingResponse
except ImportError:  # pragma: no cover - without ray[serve] only the helpers below work
    Request = WebSocket = Response = StreamingResponse = Any  # type: ignore[misc,assignment]

FORMATS = ("mp4", "gif", "webm", "npy")
GENERATE_BODY_BYTES = 64 * 1024  # a /v1/generate request is a small JSON object


def request_limit(frame_size: int, channels: int, max_batch: int, max_mb: float | None) -> int:
    """Bytes a frames request may carry: `max_mb` MiB, else what max_batch frames take in the
    largest encoding (base64 JSON of PNGs: about 4/3 of raw) plus 1 MiB of headroom."""
    if max_mb is not None:
        return int(max_mb * 2**20)
    return int(max_batch * frame_size * frame_size * channels * 4 / 3) + 2**20


async def read_body(request: Any, limit: int) -> bytes:
    """The request body, read while counting: a Content-Length over `limit` is refused before
    reading, and a stream that grows past it is cut off (413) without being held whole."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadInput(413, f"request body of {int(declared)} bytes (limit {limit})")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadInput(413, f"request body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def generate_request(
    body: bytes, num_categories: int, max_videos: int, max_length: int
) -> tuple[int, int, int | None, int, str | None, str, float]:
    """(count, length, category, seed, fix, format, fps) of a POST /v1/generate body, checked;
    BadInput(400) naming the field otherwise."""
    try:
        req = json.loads(body or b"{}")
        if not isinstance(req, dict):
            raise ValueError("expected a JSON object")
        count = int(req.get("count", 1))
        length = int(req.get("length", 16))
        seed = int(req.get("seed", 0))
        fps = float(req.get("fps", 8.0))
        category = req.get("category")
        category = None if category is None else int(category)
    except (ValueError, TypeError) as e:
        raise BadInput(400, f"generate: bad JSON body ({e})") from None
    fix = req.get("fix")
    fmt = req.get("format", "mp4")
    if fix not in (None, "content", "motion"):
        raise BadInput(400, f"fix={fix!r}: use content, motion or null")
    if fmt not in FORMATS:
        raise BadInput(400, f"format={fmt!r}: use {', '.join(FORMATS)}")
    if not 1 <= count <= max_videos:
        raise BadInput(400, f"count={count}: must be in [1, {max_videos}]")
    if not 1 <= length <= max_length:
        raise BadInput(400, f"length={length}: must be in [1, {max_length}]")
    if fps <= 0:
        raise BadInput(400, f"fps={fps}: must be > 0")
    if category is not None and not (num_categories and 0 <= category < num_categories):
        have = f"categories 0..{num_categories - 1}" if num_categories else "no categories"
        raise BadInput(400, f"category={category}: this generator has {have}")
    return count, length, category, seed, fix, fmt, fps


def prediction_response(pred: np.ndarray | None, frames_seen: int, out_fmt: str) -> Any:
    """The response to a frames push: the predictions (K, H, W, C) uint8 as raw bytes, a PNG
    strip or JSON of base64 PNGs; {"frames_seen"} when none were asked (horizon 0)."""
    from fastapi.responses import JSONResponse

    headers = {"X-Frames-Seen": str(frames_seen)}
    if pred is None:
        return JSONResponse({"frames_seen": frames_seen}, headers=headers)
    if out_fmt == "raw":
        headers["X-Frame-Shape"] = ",".join(map(str, pred.shape))
        return Response(pred.tobytes(), media_type="application/octet-stream", headers=headers)
    if out_fmt == "png":
        return Response(encode_png(pred), media_type="image/png", headers=headers)
    pngs = [base64.b64encode(encode_png(f[None])).decode() for f in pred]
    body = {"frames": pngs, "shape": list(pred.shape), "frames_seen": frames_seen}
    return JSONResponse(body, headers=headers)


def ingress_deployment() -> Any:
    """The Serve deployment of the FastAPI ingress: input checks, auth, metrics, routing of
    sessions to their shard; with one predictor replica it holds the SessionHost itself."""
    import asyncio
    import hmac

    from fastapi import FastAPI, HTTPException
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
            max_request_mb: float | None = None,
        ) -> None:
            self.shards, self.generator, self.meta = shards, generator, meta
            # the one predictor replica, in this process (else sessions live on the shards)
            self.local = SessionHost(*local) if local is not None else None
            self.n_shards = 1 if self.local is not None else len(self.shards)
            self.token = token
            self.max_batch, self.max_horizon, self.ws_queue = max_batch, max_horizon, ws_queue
            p = meta.get("predictor")
            self.body_limit = (
                request_limit(p["frame_size"], p["channels"], max_batch, max_request_mb)
                if p is not None
                else GENERATE_BODY_BYTES
            )
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
            # an oversized body is not read to its end: the connection cannot be reused
            headers = {"Connection": "close"} if status == 413 else None
            return HTTPException(status, msg, headers=headers)

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
            """SessionHost.method(*args) on a shard: here, or on its replica."""
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
                "latency_ms": percentiles(self.latency_ms),
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
            try:
                body = await read_body(request, self.body_limit)
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
            resp = prediction_response(out["frames"], out["frames_seen"], out_fmt)
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
                    size = len(msg.get("bytes") or b"") + len(msg.get("text") or "")
                    if size > self.body_limit:
                        # the WebSocket form of 413 + closing the connection: close code 1009
                        # (message too big). The socket's own bound is uvicorn's ws_max_size
                        # (16 MiB), which Ray Serve does not expose; this one is the
                        # configured serve.max_request_mb.
                        self._count_error(413)
                        reason = (
                            f"message of {size} bytes over {self.body_limit} (serve.max_request_mb)"
                        )
                        await websocket.send_json({"error": reason, "status": 413})
                        await websocket.close(code=1009, reason=reason[:120])
                        break
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
                count, length, category, seed, fix, fmt, fps = generate_request(
                    await read_body(request, GENERATE_BODY_BYTES),
                    g["num_categories"],
                    self.max_videos,
                    self.max_length,
                )
            except BadInput as e:
                raise self._fail(e.status, str(e)) from None
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
