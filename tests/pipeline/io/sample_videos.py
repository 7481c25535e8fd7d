"""Small videos with known content and known-broken inputs, shared by the video and ingest
tests (a helper module, not a test file: pytest collects nothing here)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from pipeline.io.video import write_video


def ramp_frames(n: int = 30, h: int = 48, w: int = 64) -> np.ndarray:
    """Frames whose brightness encodes their index (8 levels apart) over a horizontal ramp."""
    frames = np.zeros((n, h, w, 3), np.uint8)
    for i in range(n):
        frames[i] = (i * 8) % 256
        frames[i, :, : w // 4, 0] = 255  # a red band on the left quarter
    return frames


def frame_index(frame: np.ndarray) -> int:
    """Inverse of ramp_frames: the index encoded in a frame's right half brightness."""
    w = frame.shape[1]
    return int(round(float(frame[:, w // 2 :, 1].mean()) / 8))


def plain_pyav_count(path: str) -> int:
    """The reference count: every frame PyAV decodes, rejected packets skipped."""
    n = 0
    with av.open(path) as c:
        s = c.streams.video[0]
        for packet in c.demux(s):
            try:
                n += len(s.codec_context.decode(packet))
            except av.error.FFmpegError:
                continue
    return n


def broken_inputs(d: Path) -> dict[str, tuple[str, str]]:
    """name -> (path, expected words in the reason)."""
    good = d / "good.mp4"
    write_video(str(good), ramp_frames(30), 30)
    data = good.read_bytes()
    (d / "empty.mp4").write_bytes(b"")
    (d / "random.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    (d / "text.mp4").write_text("not a video\n" * 50)
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])  # moov (the index) at the end
    audio = d / "audio.m4a"
    with av.open(str(audio), "w") as out:
        s = out.add_stream("aac", rate=8000)
        for _ in range(4):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), "fltp", "mono")
            f.sample_rate = 8000
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    avi = d / "x.avi"
    write_video(str(avi), ramp_frames(5), 30)
    (d / "unknown.avi").write_bytes(avi.read_bytes().replace(b"FMP4", b"QQQQ"))
    i = data.find(b"mdat")
    end = i - 4 + int.from_bytes(data[i - 4 : i], "big")  # the mdat box: all the packets
    (d / "zeroed.mp4").write_bytes(data[: i + 4] + bytes(end - i - 4) + data[end:])
    return {
        "empty": (str(d / "empty.mp4"), "empty file"),
        "random": (str(d / "random.mp4"), "not a"),
        "text": (str(d / "text.mp4"), "not a"),
        "truncated": (str(d / "truncated.mp4"), "moov atom not found"),
        "audio": (str(audio), "no video stream"),
        "unknown": (str(d / "unknown.avi"), "unsupported video codec"),
        "zeroed": (str(d / "zeroed.mp4"), "no decodable frames"),
        "missing": (str(d / "missing.mp4"), "no such file"),
    }
