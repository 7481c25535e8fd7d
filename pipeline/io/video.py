"""The one video I/O module of framecast: PyAV decoding (ingest, predict, stream) and the one
video writer (predict, generate, report).

Decoding
    `open_input(source)` opens files, URLs (http(s), rtsp, ...), fsspec URLs (s3://, gs://, ...),
    devices (/dev/video0 -> v4l2, or "FORMAT:target" such as "x11grab::0.0") and FFmpeg filter
    sources ("lavfi:testsrc2=size=320x240:rate=30").
    `Decoder` is the decode loop: threaded decoding, scaling and pixel-format conversion done by
    FFmpeg's swscale through one persistent `VideoReformatter` (a scaler context is set up once per
    video, not once per frame), frame-rate resampling by timestamps, bounded recording of live
    sources, and a record of what happened (frames decoded, packets that failed, whether the
    stream broke part-way). `decode_frames()` is the plain iterator on top of it.

    What "decoded" means: every frame FFmpeg's decoder returns for the first video stream, in
    presentation order. A packet the decoder rejects is skipped and counted (as the ffmpeg CLI
    does); a demuxer error ends the stream; the decoder is always drained, so frames decoded
    before a break are kept. Errors FFmpeg conceals are invisible here, by design.

Writing
    `write_video(path, frames, fps)`: .mp4/.mkv/.mov -> libx264 yuv420p (odd sizes padded to even
    by repeating the last row/column), .webm -> VP9, .gif -> GIF with a per-file palette, .avi ->
    MPEG-4 part 2; `codec=` overrides.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

import av
import av.logging
import numpy as np
from av.video.reformatter import VideoReformatter

from pipeline.core.errors import VideoError

RESIZE_MODES = ("crop", "pad", "stretch")
INTERPOLATIONS = ("area", "fast_bilinear", "bilinear", "bicubic", "point", "lanczos")
# Prefixes handed to FFmpeg as URLs (its own protocols), never to fsspec.
_FFMPEG_PROTOCOLS = ("http", "https", "rtsp", "rtsps", "rtmp", "rtmps", "udp", "tcp", "srt", "hls")
_LIVE_PROTOCOLS = ("rtsp", "rtsps", "rtmp", "rtmps", "udp", "tcp", "srt")
# "FORMAT:target" for libavdevice inputs and filter sources.
_DEVICE_FORMATS = (
    "lavfi",
    "v4l2",
    "avfoundation",
    "dshow",
    "x11grab",
    "alsa",
    "pulse",
    "kmsgrab",
    "fbdev",
    "xcbgrab",
)
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
DEFAULT_TIMEOUT = 30.0  # seconds: network open and read timeout for URL sources


@dataclass(frozen=True)
class SourceInfo:
    """What the container says about the first video stream (before decoding)."""

    format: str  # container format (FFmpeg demuxer name)
    codec: str  # decoder name, e.g. "h264"
    width: int
    height: int
    pix_fmt: str | None
    fps: float | None  # average frame rate from the container, when known
    frames: int | None  # frame count declared in the header, when known
    duration: float | None  # seconds, of the video stream (or the container's single stream)
    live: bool  # a device, filter source or live protocol: unbounded unless told otherwise

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _quiet_ffmpeg_logs() -> None:
    """Keep FFmpeg's last error line for our messages without printing every concealed error."""
    if av.logging.get_level() is None:
        av.logging.set_level(av.logging.ERROR)
        logging.getLogger("libav").setLevel(logging.CRITICAL + 1)


def source_kind(source: str) -> str:
    """'device' ("FORMAT:target", /dev/video*), 'url' (FFmpeg protocol), 'fsspec' or 'file'."""
    m = _URL.match(source)
    if m:
        return "url" if m.group(1).lower() in _FFMPEG_PROTOCOLS else "fsspec"
    if source.startswith("/dev/video"):
        return "device"
    head = source.split(":", 1)[0]
    if ":" in source and head in _DEVICE_FORMATS:
        return "device"
    return "file"


def is_live(source: str) -> bool:
    """True when the source has no natural end (devices, filter sources without a duration,
    live network protocols): such a source needs max_frames or max_seconds."""
    kind = source_kind(source)
    if kind == "device":
        if source.startswith("lavfi:"):
            return not re.search(r"(?:^|[:,=])(?:d|duration)=", source[len("lavfi:") :])
        return True
    if kind == "url":
        return source.split("://", 1)[0].lower() in _LIVE_PROTOCOLS
    return False


def open_input(
    source: str, *, options: dict | None = None, timeout: float | None = None
) -> av.container.InputContainer:
    """Open a video source with PyAV, choosing the input format from the source.

    - "lavfi:GRAPH" (an FFmpeg filter source), "v4l2:/dev/video0", "x11grab::0.0", ...:
      the part before the first ':' is the libavdevice format.
    - /dev/video*: v4l2.
    - http(s)://, rtsp://, rtmp://, udp:// ...: FFmpeg's own protocols (with a timeout).
    - other URLs with a scheme (s3://, gs://, memory://, ...): opened through fsspec.
    - anything else: a local path.
    Raises VideoError with a one-line reason when the source cannot be opened.
    """
    _quiet_ffmpeg_logs()
    opts = {str(k): str(v) for k, v in (options or {}).items()}
    kind = source_kind(source)
    try:
        if kind == "device":
            if source.startswith("/dev/video"):
                fmt, target = "v4l2", source
            else:
                fmt, target = source.split(":", 1)
            return av.open(target, format=fmt, options=opts)
        if kind == "url":
            t = DEFAULT_TIMEOUT if timeout is None else timeout
            return av.open(source, options=opts, timeout=(t, t))
        if kind == "fsspec":
            import fsspec

            f = fsspec.open(source, "rb").open()
            try:
                return av.open(f, options=opts)
            except BaseException:
                f.close()
                raise
        if not os.path.exists(source):
            raise VideoError("no such file")
        if os.path.isdir(source):
            raise VideoError("is a directory, not a video")
        if os.path.getsize(source) == 0:
            raise VideoError("empty file (0 bytes)")
        return av.open(source, options=opts)
    except VideoError:
        raise
    except FileNotFoundError as e:
        raise VideoError(f"cannot open: {e.strerror or e}") from None
    except av.error.FFmpegError as e:
        raise VideoError(_open_reason(e)) from None
    except OSError as e:
        raise VideoError(f"cannot open: {e}") from None


def _ffmpeg_detail(e: Exception) -> str:
    """FFmpeg's own last error line (e.g. 'moov atom not found') when PyAV captured it."""
    log = getattr(e, "log", None)
    if isinstance(log, tuple) and len(log) == 3 and log[2]:
        return str(log[2]).strip()
    return ""


def _open_reason(e: av.error.FFmpegError) -> str:
    detail = _ffmpeg_detail(e)
    strerror = getattr(e, "strerror", None) or type(e).__name__
    if "moov atom not found" in detail:
        return "not a readable video: no index (moov atom not found; truncated or not an MP4)"
    if isinstance(e, av.error.InvalidDataError):
        reason = "not a video FFmpeg can read (invalid data)"
    else:
        reason = f"cannot open: {strerror}"
    return f"{reason}: {detail}" if detail else reason


def _video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    streams = [s for s in container.streams if s.type == "video"]
    if not streams:
        kinds = ", ".join(
            f"{s.type} {getattr(s.codec_context, 'name', None) or '?'}" for s in container.streams
        )
        raise VideoError(f"no video stream (streams: {kinds or 'none'})")
    # Prefer a real video over an attached picture (cover art).
    for s in streams:
        if not (s.disposition & av.stream.Disposition.attached_pic):
            return s
    return streams[0]


def _codec_name(stream: av.video.stream.VideoStream) -> str | None:
    try:
        cc = stream.codec_context
    except av.error.FFmpegError:
        return None
    return None if cc is None else cc.name


def output_geometry(
    width: int, height: int, size: int | None, resize: str
) -> tuple[int, int, int, int]:
    """(scaled_w, scaled_h, out_w, out_h) for a source frame of width x height.

    crop: scale the short side to `size`, cut the centre; pad: scale the long side to `size`,
    centre on black; stretch: scale to size x size; size None: keep the source size.
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    if size is None:
        return width, height, width, height
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if resize == "stretch":
        return size, size, size, size
    if resize == "crop":
        k = size / min(width, height)
        return max(size, round(width * k)), max(size, round(height * k)), size, size
    k = size / max(width, height)
    sw, sh = min(size, max(1, round(width * k))), min(size, max(1, round(height * k)))
    return sw, sh, size, size


class Decoder:
    """Decode the first video stream of a source to uint8 (H, W, C) frames.

    Use as a context manager; iterate for frames, or `batches(n)` for (n, H, W, C) arrays. After
    iteration, `decoded`, `emitted`, `decode_errors`, `break_error` and `partial_reason()` say
    what happened. Scaling and colour conversion run in FFmpeg (swscale, one thread per decoder),
    frames dropped by fps resampling are never converted.
    """

    def __init__(
        self,
        source: str,
        *,
        size: int | None = None,
        resize: str = "crop",
        gray: bool = False,
        fps: float | None = None,
        max_frames: int | None = None,
        max_seconds: float | None = None,
        threads: int = 0,
        interpolation: str = "area",
        options: dict | None = None,
        timeout: float | None = None,
    ) -> None:
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}")
        if fps is not None and fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        self.source = source
        self.size, self.resize, self.gray = size, resize, gray
        self.fps = None if fps is None else Fraction(fps).limit_denominator(100_000)
        self.max_frames, self.max_seconds = max_frames, max_seconds
        self.decoded = 0  # frames the decoder returned
        self.emitted = 0  # frames yielded (after resampling and max_frames)
        self.decode_errors = 0  # packets the decoder rejected (skipped)
        self.packets = 0
        self.last_decode_error: str | None = None
        self.break_error: str | None = None  # demuxer error that ended the stream early
        self.stopped_early = False  # max_frames / max_seconds reached before the end
        self.end_time: float | None = None  # seconds after the first frame where decoding ended
        self._container = open_input(source, options=options, timeout=timeout)
        try:
            self._stream = _video_stream(self._container)
            codec = _codec_name(self._stream)
            if codec is None:
                raise VideoError(
                    f"unsupported video codec (this FFmpeg has no decoder for the "
                    f"{self._container.format.name} video stream)"
                )
            cc = self._stream.codec_context
            if not cc.width or not cc.height:
                raise VideoError(f"video stream ({codec}) has no frame size: no decodable frames")
            if threads == 1:
                cc.thread_type = "SLICE"
                cc.thread_count = 1
            else:
                cc.thread_type = "AUTO"
                cc.thread_count = max(0, threads)
            self.info = SourceInfo(
                format=self._container.format.name,
                codec=codec,
                width=int(cc.width),
                height=int(cc.height),
                pix_fmt=cc.pix_fmt,
                fps=_rate(self._stream),
                frames=int(self._stream.frames) or None,
                duration=self._duration(),
                live=is_live(source),
            )
        except BaseException:
            self._container.close()
            raise
        sw, sh, ow, oh = output_geometry(self.info.width, self.info.height, size, resize)
        self._scaled = (sw, sh)
        self.shape = (oh, ow, 1 if gray else 3)
        self._format = "gray" if gray else "rgb24"
        self._interp = interpolation.upper()
        self._reformatter = VideoReformatter()

    # ---------------------------------------------------------------- metadata
    def _duration(self) -> float | None:
        s = self._stream
        if s.duration and s.time_base:
            return float(s.duration * s.time_base)
        if len(self._container.streams) == 1 and self._container.duration:
            return self._container.duration / av.time_base
        return None

    @property
    def out_fps(self) -> float | None:
        """Frame rate of the yielded frames: the resampling rate, else the source's."""
        return float(self.fps) if self.fps is not None else self.info.fps

    def partial_reason(self) -> str | None:
        """Why the decoded frames are fewer than the source holds, or None when complete."""
        if self.break_error:
            return f"stream broke after {self.decoded} frames: {self.break_error}"
        if self.decode_errors:
            return (
                f"{self.decode_errors} of {self.packets} packets could not be decoded "
                f"({self.last_decode_error})"
            )
        if self.stopped_early or self.info.live:
            return None
        declared = self.info.frames
        if declared and self.decoded < declared:
            return f"decoded {self.decoded} of the {declared} frames the header declares"
        dur = self.info.duration
        if dur and self.end_time is not None and self.end_time < dur - max(0.5, 0.05 * dur):
            return f"stream ended at {self.end_time:.2f} s of the {dur:.2f} s the header declares"
        return None

    # ---------------------------------------------------------------- decoding
    def _raw_frames(self) -> Iterator[av.VideoFrame]:
        """Decoded frames in presentation order; rejected packets are skipped and counted."""
        container, stream = self._container, self._stream
        cc = stream.codec_context
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as e:
                self.break_error = _short(e)
                break
            except OSError as e:
                self.break_error = str(e)
                break
            self.packets += packet.size > 0
            try:
                frames = cc.decode(packet)
            except av.error.FFmpegError as e:
                # The flush packet at the end can report the same error again: count packets.
                if packet.size > 0:
                    self.decode_errors += 1
                    self.last_decode_error = _short(e)
                continue
            for frame in frames:
                self.decoded += 1
                yield frame
        if self.break_error is not None:
            try:  # drain what the decoder holds: frames decoded before the break are kept
                for frame in cc.decode(None):
                    self.decoded += 1
                    yield frame
            except av.error.FFmpegError:
                pass

    def _convert(self, frame: av.VideoFrame) -> np.ndarray:
        sw, sh = self._scaled
        out = self._reformatter.reformat(
            frame,
            width=sw,
            height=sh,
            format=self._format,
            interpolation=self._interp,
            threads=1,
        )
        arr = out.to_ndarray()
        if arr.ndim == 2:
            arr = arr[:, :, None]
        oh, ow, c = self.shape
        if (sh, sw) == (oh, ow):
            return arr
        if self.resize == "crop":
            y, x = (sh - oh) // 2, (sw - ow) // 2
            return arr[y : y + oh, x : x + ow]
        canvas = np.zeros(self.shape, np.uint8)
        y, x = (oh - sh) // 2, (ow - sw) // 2
        canvas[y : y + sh, x : x + sw] = arr
        return canvas

    def _selected(self) -> Iterator[tuple[av.VideoFrame, int]]:
        """(frame, times) pairs: each kept frame and how often it appears in the output.

        Without `fps` every frame appears once. With `fps`, output slot k shows the frame on
        screen at time t0 + k/fps (t0: the first frame's timestamp), from the frames'
        timestamps, so variable frame rate input is resampled correctly. A frame starting up
        to a quarter of an output period after a slot still counts for that slot (timestamps
        rounded by the container, e.g. to milliseconds, do not duplicate or drop frames).
        """
        tb = self._stream.time_base or Fraction(1, 90000)
        src_rate = Fraction(self.info.fps).limit_denominator(100_000) if self.info.fps else None
        step = 1 / src_rate if src_rate else Fraction(1, 30)
        t0: Fraction | None = None
        prev: av.VideoFrame | None = None
        prev_t = Fraction(0)
        next_slot = 0
        limit_t = None if self.max_seconds is None else Fraction(self.max_seconds)
        fps = self.fps
        for frame in self._raw_frames():
            t = Fraction(frame.pts) * tb if frame.pts is not None else None
            if t is None:
                t = prev_t + step if prev is not None else Fraction(0)
            if t0 is None:
                t0 = t
            if limit_t is not None and t - t0 >= limit_t:
                self.stopped_early = True
                break
            if fps is None:
                self.end_time = float(t - t0)
                yield frame, 1
            else:
                slot = _ceil((t - t0) * fps - Fraction(1, 4))
                if prev is not None and slot > next_slot:
                    yield prev, slot - next_slot
                    next_slot = slot
                prev, prev_t = frame, t
        if fps is not None and prev is not None and t0 is not None:
            dur = Fraction(prev.duration) * tb if prev.duration else step
            end = prev_t + dur
            if limit_t is not None:
                end = min(end, t0 + limit_t)
            self.end_time = float(prev_t - t0)
            end_slot = max(_ceil((end - t0) * fps - Fraction(1, 4)), next_slot + (next_slot == 0))
            if end_slot > next_slot:
                yield prev, end_slot - next_slot

    def __iter__(self) -> Iterator[np.ndarray]:
        for batch in self.batches(1):
            yield batch[0]

    def batches(self, n: int) -> Iterator[np.ndarray]:
        """Fresh (k, H, W, C) uint8 arrays with k == n except possibly the last."""
        buf = np.empty((n, *self.shape), np.uint8)
        i = 0
        limit = self.max_frames
        for frame, times in self._selected():
            arr = self._convert(frame)
            for _ in range(times):
                buf[i] = arr
                i += 1
                self.emitted += 1
                if i == n:
                    yield buf
                    buf = np.empty((n, *self.shape), np.uint8)
                    i = 0
                if limit is not None and self.emitted >= limit:
                    self.stopped_early = True
                    break
            if limit is not None and self.emitted >= limit:
                break
        if i:
            yield buf[:i]

    def close(self) -> None:
        # A frame-threaded decoder stopped early (max_frames) can deadlock in close() while its
        # worker threads still hold frames (seen with PyAV 18 / FFmpeg 8): drop them first.
        try:
            self._stream.codec_context.flush_buffers()
        except (av.error.FFmpegError, ValueError):
            pass
        self._container.close()

    def __enter__(self) -> Decoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rate(stream: av.video.stream.VideoStream) -> float | None:
    for r in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if r:
            return float(r)
    return None


def _ceil(x: Fraction) -> int:
    return -((-x.numerator) // x.denominator)


def _short(e: Exception) -> str:
    detail = _ffmpeg_detail(e)
    base = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return f"{base}: {detail}" if detail else str(base)


def decode_frames(
    source: str,
    *,
    size: int | None = None,
    resize: str = "crop",
    gray: bool = False,
    fps: float | None = None,
    max_frames: int | None = None,
    max_seconds: float | None = None,
    threads: int = 0,
    interpolation: str = "area",
    options: dict | None = None,
) -> Iterator[np.ndarray]:
    """Yield uint8 (H, W, C) frames of the first video stream of `source` (C = 1 when gray).

    size/resize: output size x size by crop|pad|stretch (None: source size); fps: resample by
    timestamps; max_frames / max_seconds: stop early (needed for live sources); threads: decoder
    threads (0: FFmpeg chooses). Raises VideoError when the source cannot be opened or holds no
    decodable frame; frames of a stream that breaks part-way are yielded up to the break.
    """
    with Decoder(
        source,
        size=size,
        resize=resize,
        gray=gray,
        fps=fps,
        max_frames=max_frames,
        max_seconds=max_seconds,
        threads=threads,
        interpolation=interpolation,
        options=options,
    ) as dec:
        yield from dec
        if dec.emitted == 0:
            raise VideoError(no_frames_reason(dec))


def no_frames_reason(dec: Decoder) -> str:
    """The one-line reason for a source that yielded no frame."""
    if dec.decode_errors:
        return (
            f"no decodable frames ({dec.info.codec}: all {dec.decode_errors} packets rejected: "
            f"{dec.last_decode_error})"
        )
    if dec.break_error:
        return f"no decodable frames ({dec.info.codec}: {dec.break_error})"
    return f"no decodable frames ({dec.info.codec} stream holds no frame)"


def probe(source: str) -> SourceInfo:
    """Container-level facts about a source's video stream, without decoding."""
    with Decoder(source) as dec:
        return dec.info


# -------------------------------------------------------------------- writing
_CODECS = {
    ".mp4": "libx264",
    ".m4v": "libx264",
    ".mkv": "libx264",
    ".mov": "libx264",
    ".webm": "libvpx-vp9",
    ".gif": "gif",
    ".avi": "mpeg4",
}


def encode_video(frames: np.ndarray, fmt: str, fps: float, crf: int = 18) -> bytes:
    """The bytes of one video file of uint8 frames (T, H, W, C): `fmt` mp4, webm or gif through
    `write_video` (a temporary file: the muxers seek), or npy (numpy's format, lossless)."""
    if fmt == "npy":
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(frames), allow_pickle=False)
        return buf.getvalue()
    with tempfile.TemporaryDirectory(prefix="framecast-encode-") as tmp:
        path = os.path.join(tmp, f"video.{fmt}")
        write_video(path, frames, fps, crf=crf)
        with open(path, "rb") as f:
            return f.read()


def write_video(
    path: str,
    frames: Iterable[np.ndarray] | np.ndarray,
    fps: float,
    *,
    codec: str | None = None,
    crf: int = 18,
) -> None:
    """Write uint8 frames (T, H, W, C), C in {1, 3}, to `path` at `fps` frames per second.

    The container comes from the extension: .mp4/.m4v/.mkv/.mov -> H.264 (libx264, yuv420p,
    odd sizes padded to even by repeating the edge), .webm -> VP9 (libvpx-vp9), .gif -> GIF
    (palette computed from the frames), .avi -> MPEG-4. `codec` overrides the encoder; `crf` sets
    the quality of x264/x265/VP9 (lower is better, 0 lossless for x264/x265).
    """
    ext = os.path.splitext(str(path))[1].lower()
    codec = codec or _CODECS.get(ext)
    if codec is None:
        raise ValueError(f"{path}: unknown video extension {ext!r} (use .mp4, .webm, .gif, ...)")
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    rate = Fraction(fps).limit_denominator(1001)
    it = iter(frames)
    try:
        first = _check_frame(next(it))
    except StopIteration:
        raise ValueError(f"{path}: no frames to write") from None
    parent = os.path.dirname(os.path.abspath(str(path)))
    os.makedirs(parent, exist_ok=True)
    if codec == "gif":
        _write_gif(str(path), first, it, rate)
        return
    h, w = first.shape[:2]
    pad_h, pad_w = h % 2, w % 2  # yuv420p halves the chroma planes: even sizes only
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height = w + pad_w, h + pad_h
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": str(crf), "preset": "medium"}
        elif codec == "libx265":
            stream.options = {"crf": str(crf), "preset": "medium", "x265-params": "log-level=error"}
        elif codec == "libvpx-vp9":
            stream.options = {"crf": str(crf), "b": "0", "row-mt": "1", "deadline": "good"}
        elif codec in ("mpeg4", "mjpeg"):
            stream.codec_context.qscale = 2
        # MJPEG is full range (JPEG); the others use the usual limited (MPEG) range.
        color_range = "JPEG" if codec == "mjpeg" else "MPEG"
        if codec == "mjpeg":
            stream.codec_context.color_range = 2
        for i, arr in enumerate(_chain(first, it)):
            arr = _check_frame(arr)
            if arr.shape[:2] != (h, w):
                raise ValueError(f"{path}: frame {i} has size {arr.shape[:2]}, expected {(h, w)}")
            if pad_h or pad_w:
                arr = np.pad(arr, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
            frame = _to_frame(arr)
            frame.pts = i
            yuv = frame.reformat(format=stream.pix_fmt, dst_color_range=color_range)
            for packet in stream.encode(yuv):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def _check_frame(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise ValueError(
            f"frames must be uint8 (H, W, C) with C in (1, 3), got {arr.dtype} {arr.shape}"
        )
    return arr


def _to_frame(arr: np.ndarray) -> av.VideoFrame:
    if arr.shape[2] == 1:
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(arr[:, :, 0]), format="gray")
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")


def _write_gif(path: str, first: np.ndarray, rest: Iterator[np.ndarray], rate: Fraction) -> None:
    """GIF with one palette computed from all frames (palettegen + paletteuse)."""
    frames = [_check_frame(first)] + [_check_frame(a) for a in rest]
    h, w = frames[0].shape[:2]
    for i, a in enumerate(frames):
        if a.shape[:2] != (h, w):
            raise ValueError(f"{path}: frame {i} has size {a.shape[:2]}, expected {(h, w)}")
    with av.open(path, "w", format="gif") as out:
        stream = out.add_stream("gif", rate=rate)
        stream.width, stream.height = w, h
        stream.pix_fmt = "pal8"
        graph = av.filter.Graph()
        src = graph.add_buffer(width=w, height=h, format="rgb24", time_base=1 / rate)
        split = graph.add("split")
        gen = graph.add("palettegen", "stats_mode=full")
        use = graph.add("paletteuse", "dither=bayer")
        sink = graph.add("buffersink")
        src.link_to(split)
        split.link_to(use, 0, 0)
        split.link_to(gen, 1, 0)
        gen.link_to(use, 0, 1)
        use.link_to(sink)
        graph.configure()
        outs: list[av.VideoFrame] = []
        for i, a in enumerate(frames):
            rgb = np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            f.pts = i
            f.time_base = 1 / rate
            graph.push(f)
        graph.push(None)
        while True:
            try:
                outs.append(graph.pull())
            except (av.error.BlockingIOError, av.error.EOFError):
                break
        for i, f in enumerate(outs):
            f.pts = i
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def frame_count(source: str) -> int:
    """Frames PyAV decodes from `source` (all of them, no conversion): a reference count."""
    with Decoder(source) as dec:
        return sum(1 for _ in dec._raw_frames())


__all__ = [
    "Decoder",
    "SourceInfo",
    "VideoError",
    "decode_frames",
    "frame_count",
    "is_live",
    "open_input",
    "output_geometry",
    "probe",
    "source_kind",
    "write_video",
]
