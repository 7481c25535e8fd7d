"""`framecast stream`: live prediction from a camera, URL, file or FFmpeg test source.

Three threads and two bounded buffers:

    capture (PyAV, pipeline/io/video.py) ──► DropOldest queue ──► model (step + predict K) ──► page
                                                                                      └──► record

- capture decodes the source, resized to the model's frame size, and stamps each frame with
  its capture time. Files and filter sources play at their own frame rate (`stream.realtime`);
  cameras and live URLs pace themselves. A URL that breaks is reopened (`stream.reconnect`).
- the queue holds at most `stream.queue` frames: when the model cannot keep up the oldest
  frames are dropped (and counted), so latency never grows with a backlog.
- the model runs incrementally in this process (a predictor checkpoint's live session,
  `pipeline.runtime.inference.LocalSession`: one step per frame, then a K-frame rollout), or
  against a running `framecast serve` (`stream.server=URL`, the same session over the wire).
- the live page (stdlib HTTP server on 127.0.0.1:`stream.port`) shows the incoming frame and
  the next K predicted frames side by side, with fps, latency and drops; it polls /state.json
  and reloads the two images when a new frame is ready.

Latency per frame: capture -> queue -> model -> published (ready on the page); and, for frames
a page actually fetched, capture -> served to the page. `report=PATH` gets the percentiles.
"""

from __future__ import annotations

import collections
import io
import json
import os
import platform
import queue
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np
import torch
from omegaconf import DictConfig

from pipeline.core.config import UsageError, required, typed, write_result
from pipeline.core.errors import ServeClientError, VideoError
from pipeline.core.stats import percentiles
from pipeline.io.video import Decoder, is_live, source_kind, write_video
from pipeline.runtime.client import Client
from pipeline.runtime.inference import LocalSession, load_model
from pipeline.stages.stream.page import PAGE


@dataclass
class StreamConfig:
    horizon: int = 5  # K: predicted frames shown beside the incoming one
    port: int = 8765  # live page port (0: any free port)
    host: str = "127.0.0.1"  # live page address
    page: bool = True  # serve the live page
    max_frames: int | None = None  # stop after this many captured frames
    seconds: float | None = None  # stop after this many seconds
    record: str | None = None  # record the side-by-side view to this video file
    queue: int = 2  # frames waiting for the model; the oldest are dropped beyond this
    realtime: bool = True  # files and filter sources play at their own frame rate
    scale: int = 4  # upscale factor of the page images and the recording
    device: str = "auto"  # auto | cpu | cuda
    server: str | None = None  # URL of a running `framecast serve`: predict there
    token: str | None = None  # token for stream.server (else $FRAMECAST_TOKEN)
    reconnect: int = 3  # URL sources: reopen attempts after the stream breaks
    linger: float = 0.0  # keep the page up this many seconds after the stream ends
    fps: float | None = None  # resample the source to this frame rate (null: its own)
    threads: int | None = 1  # torch CPU threads for the model (null: torch's default)


# --------------------------------------------------------------------------- drop-oldest queue
class DropOldestQueue:
    """A bounded FIFO whose `put` never blocks: when full, the oldest item is dropped."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"queue size must be >= 1, got {maxsize}")
        self._items: collections.deque[Any] = collections.deque()
        self.maxsize = maxsize
        self.dropped = 0
        self.closed = False
        self._cond = threading.Condition()

    def put(self, item: Any) -> int:
        """Add an item; returns how many old items were dropped to make room (0 or 1)."""
        with self._cond:
            dropped = 0
            while len(self._items) >= self.maxsize:
                self._items.popleft()
                dropped += 1
            self.dropped += dropped
            self._items.append(item)
            self._cond.notify()
            return dropped

    def get(self, timeout: float | None = None) -> Any:
        """The oldest item; None when closed and empty, or after `timeout` seconds."""
        with self._cond:
            end = None if timeout is None else time.monotonic() + timeout
            while not self._items:
                if self.closed:
                    return None
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
            return self._items.popleft()

    def close(self) -> None:
        """No more puts: `get` returns the remaining items, then None."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


# --------------------------------------------------------------------------- predictors
class FramePredictor(Protocol):
    """One live session: push a uint8 (H, W, C) frame, get the next K frames (K, H, W, C).
    `LocalSession` (a checkpoint in this process) and the serve client's `RemoteSession`."""

    def push(self, frame: np.ndarray, horizon: int) -> np.ndarray: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- sources
def camera_source(source: str) -> str:
    """The platform's camera input for "camera", "camera:N" or a bare index "N":
    /dev/videoN (v4l2) on Linux, avfoundation:N on macOS, dshow:video=N on Windows. Anything
    else is returned unchanged."""
    index = None
    if source.isdigit():
        index = source
    elif source == "camera":
        index = "0"
    elif source.startswith("camera:"):
        index = source.split(":", 1)[1]
    if index is None:
        return source
    system = platform.system()
    if system == "Darwin":
        return f"avfoundation:{index}"
    if system == "Windows":
        return f"dshow:video={index}"
    return f"/dev/video{index}"


def check_source(source: str) -> None:
    """A clear UsageError for a camera or file that does not exist (before opening it)."""
    kind = source_kind(source)
    if source.startswith("/dev/video") and not os.path.exists(source):
        cams = sorted(str(p) for p in Path("/dev").glob("video*")) if os.path.isdir("/dev") else []
        have = f"cameras here: {', '.join(cams)}" if cams else "no camera found on this machine"
        raise UsageError(f"source={source}: no such camera ({have})")
    if kind == "file" and not os.path.exists(source):
        raise UsageError(f"source={source}: no such file")


@dataclass
class Captured:
    index: int  # capture order (0, 1, ...): gaps in processed indices are drops
    frame: np.ndarray  # uint8 (H, W, C)
    t_capture: float  # perf_counter when the frame left the decoder


@dataclass
class _Stats:
    captured: int = 0
    processed: int = 0
    queue_ms: list[float] = field(default_factory=list)
    model_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    page_ms: list[float] = field(default_factory=list)
    capture_error: str | None = None
    reconnects: int = 0


# --------------------------------------------------------------------------- the streamer
class Streamer:
    """A running live stream: capture thread, model loop, page server, recorder.

    `start()` opens the source (errors raise UsageError) and starts the threads; `wait()` runs
    until the source ends or a limit is reached and returns the result dict; `stop()` ends it
    early. `url` is the live page's address once started.
    """

    def __init__(
        self,
        source: str,
        predictor: FramePredictor,
        frame_size: int,
        channels: int,
        options: StreamConfig,
    ) -> None:
        s = options
        if s.horizon < 1:
            raise UsageError(f"stream.horizon must be >= 1, got {s.horizon}")
        if s.queue < 1:
            raise UsageError(f"stream.queue must be >= 1, got {s.queue}")
        if s.scale < 1:
            raise UsageError(f"stream.scale must be >= 1, got {s.scale}")
        if s.max_frames is not None and s.max_frames < 1:
            raise UsageError(f"stream.max_frames must be >= 1, got {s.max_frames}")
        if s.seconds is not None and s.seconds <= 0:
            raise UsageError(f"stream.seconds must be > 0, got {s.seconds}")
        if s.record and Path(s.record).suffix.lower() not in (".mp4", ".mkv", ".webm", ".mov"):
            raise UsageError(f"stream.record={s.record}: use a .mp4, .mkv, .mov or .webm name")
        self.source = camera_source(source)
        self.predictor = predictor
        self.size, self.channels = frame_size, channels
        self.opt = s
        self.queue = DropOldestQueue(s.queue)
        self.stats = _Stats()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._latest: dict[str, Any] = {"seq": -1}
        self._capture_times: collections.OrderedDict[int, float] = collections.OrderedDict()
        self._served: set[int] = set()
        self._recent: collections.deque[float] = collections.deque(maxlen=60)
        self._threads: list[threading.Thread] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._record_q: queue.Queue[np.ndarray | None] | None = None
        self._record_error: str | None = None
        self.recorded = 0
        self.fps_source: float | None = None
        self.url: str | None = None
        self._t0 = 0.0
        self._decoder: Any = None

    # ----------------------------------------------------------------- lifecycle
    def _open(self) -> Any:
        check_source(self.source)
        try:
            return Decoder(
                self.source,
                size=self.size,
                gray=self.channels == 1,
                fps=self.opt.fps,
                max_frames=self.opt.max_frames,
                max_seconds=self.opt.seconds,
            )
        except VideoError as e:
            what = "camera" if self.source.startswith(("/dev/video", "v4l2:")) else "source"
            raise UsageError(f"source={self.source}: cannot open {what}: {e}") from None
        except ValueError as e:
            raise UsageError(f"source={self.source}: {e}") from None

    def start(self) -> Streamer:
        self._decoder = self._open()
        self.fps_source = self._decoder.out_fps
        if self.opt.page:
            self._start_page()
        if self.opt.record:
            self._start_recorder()
        self._t0 = time.perf_counter()
        t = threading.Thread(target=self._capture_loop, name="stream-capture", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()

    def wait(self) -> dict[str, Any]:
        """Run the model loop here until the stream ends; returns the result."""
        try:
            self._model_loop()
        finally:
            self._stop.set()
            self.queue.close()
            for t in self._threads:
                t.join(timeout=10)
            self._finish_recorder()
        elapsed = time.perf_counter() - self._t0
        result = self.result(elapsed)
        if self.opt.linger > 0 and self._httpd is not None:
            time.sleep(self.opt.linger)
        self.close_page()
        self.predictor.close()
        return result

    # ----------------------------------------------------------------- capture
    def _pace(self) -> bool:
        if not self.opt.realtime:
            return False
        # cameras and live protocols deliver at their own pace; files and filter sources
        # (lavfi generates as fast as asked) are played at their frame rate here
        return self.source.startswith("lavfi:") or not is_live(self.source)

    def _capture_loop(self) -> None:
        dec = self._decoder
        pace = self._pace()
        period = 1.0 / (self.fps_source or 30.0)
        deadline = None if self.opt.seconds is None else self._t0 + self.opt.seconds
        index = 0
        attempts = 0
        try:
            while True:
                try:
                    for frame in dec:
                        if self._stop.is_set():
                            return
                        now = time.perf_counter()
                        if deadline is not None and now >= deadline:
                            return
                        if pace:
                            due = self._t0 + index * period
                            if due > now:
                                time.sleep(due - now)
                                now = time.perf_counter()
                        self.queue.put(Captured(index, frame, now))
                        index += 1
                        with self._lock:
                            self.stats.captured = index
                finally:
                    dec.close()
                broke = dec.break_error
                if broke is None:
                    return
                limit_hit = self.opt.max_frames is not None and index >= self.opt.max_frames
                if source_kind(self.source) != "url" or attempts >= self.opt.reconnect or limit_hit:
                    self.stats.capture_error = f"source={self.source}: stream broke: {broke}"
                    return
                attempts += 1
                self.stats.reconnects = attempts
                print(f"stream: {self.source} broke ({broke}); reconnecting", file=sys.stderr)
                time.sleep(min(5.0, 0.5 * attempts))
                left = None if self.opt.max_frames is None else self.opt.max_frames - index
                dec = self._open()
                if left is not None:
                    dec.max_frames = left
        except Exception as e:  # noqa: BLE001 - reported in the result, the model loop ends
            self.stats.capture_error = f"source={self.source}: {type(e).__name__}: {e}"
        finally:
            self.queue.close()

    # ----------------------------------------------------------------- model
    def _model_loop(self) -> None:
        k = self.opt.horizon
        while not self._stop.is_set():
            item = self.queue.get(timeout=0.2)
            if item is None:
                if self.queue.closed and not len(self.queue):
                    return
                continue
            t_start = time.perf_counter()
            try:
                pred = self.predictor.push(item.frame, k)
            except UsageError:
                raise
            except Exception as e:  # noqa: BLE001 - e.g. a server that went away
                raise UsageError(f"prediction failed: {type(e).__name__}: {e}") from None
            t_model = time.perf_counter()
            view = self._publish(item, pred)
            t_pub = time.perf_counter()
            rq = self._record_q
            if rq is not None:
                rq.put(view)
            with self._lock:
                st = self.stats
                st.processed += 1
                st.queue_ms.append((t_start - item.t_capture) * 1e3)
                st.model_ms.append((t_model - t_start) * 1e3)
                st.total_ms.append((t_pub - item.t_capture) * 1e3)
                self._recent.append(t_pub)

    def _upscale(self, a: np.ndarray) -> np.ndarray:
        s = self.opt.scale
        if a.shape[-1] == 1:
            a = np.repeat(a, 3, axis=-1)
        return a.repeat(s, axis=-3).repeat(s, axis=-2) if s > 1 else a

    def side_by_side(self, frame: np.ndarray, pred: np.ndarray) -> np.ndarray:
        """(H·s, W·s·(K+1) + gap, 3) uint8: the incoming frame | K predicted frames."""
        obs = self._upscale(frame)
        strip = self._upscale(np.concatenate(list(pred), axis=1))
        gap = np.full((obs.shape[0], max(2, obs.shape[1] // 16), 3), 96, np.uint8)
        return np.concatenate([obs, gap, strip], axis=1)

    def _publish(self, item: Captured, pred: np.ndarray) -> np.ndarray:
        view = self.side_by_side(item.frame, pred)
        if self._httpd is not None:
            w_obs = self.size * self.opt.scale
            gap = max(2, w_obs // 16)
            obs_jpg = encode_jpeg(view[:, :w_obs])
            pred_jpg = encode_jpeg(view[:, w_obs + gap :])
            with self._lock:
                self._latest = {"seq": item.index, "observed": obs_jpg, "predicted": pred_jpg}
                self._capture_times[item.index] = item.t_capture
                while len(self._capture_times) > 256:
                    self._capture_times.popitem(last=False)
        return view

    # ----------------------------------------------------------------- recording
    def _start_recorder(self) -> None:
        self._record_q = queue.Queue(maxsize=512)
        fps = self.fps_source or 30.0
        path = str(self.opt.record)

        def frames() -> Iterator[np.ndarray]:
            assert self._record_q is not None
            while True:
                v = self._record_q.get()
                if v is None:
                    return
                self.recorded += 1
                yield v

        def write() -> None:
            try:
                write_video(path, frames(), fps=fps)
            except Exception as e:  # noqa: BLE001 - reported in the result
                self._record_error = f"stream.record={path}: {e}"
                self._record_q = None  # the model loop stops feeding it

        t = threading.Thread(target=write, name="stream-record", daemon=True)
        t.start()
        self._record_thread = t

    def _finish_recorder(self) -> None:
        q = self._record_q
        if q is not None:
            q.put(None)
        if self.opt.record:
            self._record_thread.join(timeout=120)

    # ----------------------------------------------------------------- page
    def _start_page(self) -> None:
        handler = _page_handler(self)
        try:
            self._httpd = ThreadingHTTPServer((self.opt.host, self.opt.port), handler)
        except OSError as e:
            raise UsageError(
                f"stream.port={self.opt.port}: cannot serve the live page on "
                f"{self.opt.host}:{self.opt.port} ({e.strerror or e})"
            ) from None
        self._httpd.daemon_threads = True
        host, port = self._httpd.server_address[:2]
        self.url = f"http://{host}:{port}/"
        t = threading.Thread(target=self._httpd.serve_forever, name="stream-page", daemon=True)
        t.start()

    def close_page(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def frame_jpeg(self, which: str) -> tuple[int, bytes | None]:
        """(seq, JPEG) of the latest observed or predicted image; counts page latency."""
        with self._lock:
            latest = self._latest
            seq = latest["seq"]
            t_cap = self._capture_times.get(seq)
            if t_cap is not None and which == "predicted" and seq not in self._served:
                self._served.add(seq)
                if len(self._served) > 4096:
                    self._served = set(sorted(self._served)[-1024:])
                self.stats.page_ms.append((time.perf_counter() - t_cap) * 1e3)
            return seq, latest.get(which)

    def state(self) -> dict[str, Any]:
        """Live figures for the page (and /state.json)."""
        with self._lock:
            st = self.stats
            recent = list(self._recent)
            fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 else 0.0
            last_total = st.total_ms[-30:]
            last_page = st.page_ms[-30:]
            return {
                "seq": self._latest["seq"],
                "captured": st.captured,
                "processed": st.processed,
                "dropped": self.queue.dropped,
                "fps": round(fps, 2),
                "source_fps": self.fps_source,
                "latency_ms": round(float(np.median(last_total)), 2) if last_total else None,
                "page_latency_ms": round(float(np.median(last_page)), 2) if last_page else None,
                "horizon": self.opt.horizon,
                "source": self.source,
                "running": not self._stop.is_set(),
            }

    # ----------------------------------------------------------------- result
    def result(self, elapsed: float) -> dict[str, Any]:
        st = self.stats
        return {
            "stage": "stream",
            "source": self.source,
            "frame_size": self.size,
            "channels": self.channels,
            "horizon": self.opt.horizon,
            "server": self.opt.server,
            "frames_captured": st.captured,
            "frames_processed": st.processed,
            "frames_dropped": self.queue.dropped,
            "seconds": round(elapsed, 3),
            "fps": round(st.processed / elapsed, 3) if elapsed > 0 else 0.0,
            "capture_fps": round(st.captured / elapsed, 3) if elapsed > 0 else 0.0,
            "source_fps": self.fps_source,
            "latency_ms": {
                "total": percentiles(st.total_ms),
                "queue": percentiles(st.queue_ms),
                "model": percentiles(st.model_ms),
                "page": percentiles(st.page_ms),
            },
            "record": self.opt.record,
            "frames_recorded": self.recorded if self.opt.record else 0,
            "record_error": self._record_error,
            "capture_error": st.capture_error,
            "reconnects": st.reconnects,
        }


def encode_jpeg(rgb: np.ndarray, quality: int = 85) -> bytes:
    """JPEG bytes of a uint8 (H, W, 3) image (Pillow; FFmpeg's mjpeg encoder without it)."""
    try:
        from PIL import Image
    except ImportError:  # a bare GPU host: PyAV is there anyway
        return _encode_jpeg_av(rgb)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _encode_jpeg_av(rgb: np.ndarray) -> bytes:
    h, w = rgb.shape[:2]
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height, ctx.pix_fmt = w + w % 2, h + h % 2, "yuvj420p"
    ctx.time_base = Fraction(1, 30)
    ctx.qscale = 3
    if w % 2 or h % 2:
        rgb = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    frame = frame.reformat(format="yuvj420p")
    frame.pts = 0
    return b"".join(bytes(p) for p in [*ctx.encode(frame), *ctx.encode(None)])


def _page_handler(streamer: Streamer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                self._send(200, PAGE.encode(), "text/html; charset=utf-8")
            elif path == "/state.json":
                self._send(200, json.dumps(streamer.state()).encode(), "application/json")
            elif path in ("/observed.jpg", "/predicted.jpg"):
                seq, body = streamer.frame_jpeg(path[1:-4])
                if body is None:
                    self._send(404, b"no frame yet\n", "text/plain")
                else:
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("Cache-Control", "no-store")
                    self.send_header("X-Frame-Seq", str(seq))
                    self.end_headers()
                    self.wfile.write(body)
            else:
                self._send(404, b"not found\n", "text/plain")

    return Handler


# --------------------------------------------------------------------------- the stage
def make_predictor(cfg: DictConfig, s: StreamConfig) -> tuple[FramePredictor, int, int]:
    """(predictor, frame size, channels) for `checkpoint=` or `stream.server=`."""
    if s.server:
        token = s.token or os.environ.get("FRAMECAST_TOKEN")
        client = Client(s.server, token=token)
        try:
            session = client.session()
        except ServeClientError as e:
            raise UsageError(f"stream.server={s.server}: {e}") from None
        return session, session.frame_size, session.channels
    ckpt_path = str(required(cfg, "checkpoint"))
    if s.threads:
        torch.set_num_threads(s.threads)
    # a generator or classifier checkpoint stops here, before any source is opened
    loaded = load_model(ckpt_path, s.device, want=("predictor",), stage="stream")
    return LocalSession(loaded), loaded.frame_size, loaded.channels


def run(cfg: DictConfig) -> dict[str, Any]:
    s = typed(cfg.stream, StreamConfig, "stream")
    source = str(required(cfg, "source"))
    predictor, size, channels = make_predictor(cfg, s)
    streamer = Streamer(source, predictor, size, channels, s)
    streamer.start()
    limits = []
    if s.max_frames:
        limits.append(f"{s.max_frames} frames")
    if s.seconds:
        limits.append(f"{s.seconds:g} s")
    print(
        f"stream: {streamer.source} at {streamer.fps_source or '?'} fps -> {size}x{size}x"
        f"{channels}, predicting {s.horizon} frames"
        + (f"; live page {streamer.url}" if streamer.url else "")
        + (f"; stops after {' or '.join(limits)}" if limits else "; Ctrl-C stops"),
        file=sys.stderr,
        flush=True,
    )
    try:
        result = streamer.wait()
    except KeyboardInterrupt:
        streamer.stop()
        result = streamer.result(time.perf_counter() - streamer._t0)
        streamer.close_page()
        predictor.close()  # a server's session ends now, not when it expires
    if result["capture_error"] and result["frames_processed"] == 0:
        raise UsageError(result["capture_error"])
    write_result(cfg, result, None)
    lat = result["latency_ms"]["total"]
    print(
        f"stream: {result['frames_processed']} frames in {result['seconds']:.1f} s "
        f"({result['fps']:.1f} fps), {result['frames_dropped']} dropped; latency capture->page "
        f"p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms"
        + (f"; recorded {s.record}" if s.record else "")
        + (f"; {result['capture_error']}" if result["capture_error"] else "")
    )
    return result
