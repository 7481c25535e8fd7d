"""pipeline.io.video: PyAV decoding (sizes, colour, fps resampling, broken inputs), the writer."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.io.video import (
    Decoder,
    VideoError,
    decode_frames,
    is_live,
    open_input,
    output_geometry,
    source_kind,
    write_video,
)
from tests.pipeline.io.sample_videos import (
    broken_inputs,
    frame_index,
    plain_pyav_count,
    ramp_frames,
)


def test_source_kinds() -> None:
    assert source_kind("/data/a.mp4") == "file"
    assert source_kind("rel/a b.mp4") == "file"
    assert source_kind("https://x.org/a.mp4") == "url"
    assert source_kind("rtsp://cam/stream") == "url"
    assert source_kind("s3://bucket/a.mp4") == "fsspec"
    assert source_kind("/dev/video0") == "device"
    assert source_kind("lavfi:testsrc2") == "device"
    assert is_live("/dev/video0") and is_live("lavfi:testsrc2=size=64x48")
    assert not is_live("lavfi:testsrc2=size=64x48:d=2")
    assert is_live("rtsp://cam/stream") and not is_live("https://x.org/a.mp4")


@pytest.mark.parametrize(
    "resize, expected",
    [("crop", (85, 64, 64, 64)), ("pad", (64, 48, 64, 64)), ("stretch", (64, 64, 64, 64))],
)
def test_output_geometry(resize: str, expected: tuple) -> None:
    assert output_geometry(640, 480, 64, resize) == expected
    assert output_geometry(640, 480, None, resize) == (640, 480, 640, 480)


def test_roundtrip_mp4(tmp_path: Path) -> None:
    frames = ramp_frames()
    path = str(tmp_path / "a.mp4")
    write_video(path, frames, 30)
    out = np.stack(list(decode_frames(path)))
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - frames).mean() < 4
    assert [frame_index(f) for f in out] == list(range(30))
    assert plain_pyav_count(path) == 30


@pytest.mark.parametrize(
    "name, codec", [("a.webm", None), ("a.avi", None), ("a.mkv", "ffv1"), ("b.mkv", "mjpeg")]
)
def test_writer_codecs(tmp_path: Path, name: str, codec: str | None) -> None:
    frames = ramp_frames(12)
    path = str(tmp_path / name)
    write_video(path, iter(frames), 12.5, codec=codec)  # any iterable, any rate
    out = np.stack(list(decode_frames(path)))
    assert out.shape == frames.shape
    assert np.abs(out.astype(int) - frames).mean() < 4


def test_writer_gif_gray_and_odd_sizes(tmp_path: Path) -> None:
    frames = ramp_frames(10, 47, 63)
    write_video(str(tmp_path / "a.gif"), frames, 10)
    gif = np.stack(list(decode_frames(str(tmp_path / "a.gif"))))
    assert gif.shape == (10, 47, 63, 3)
    assert np.abs(gif.astype(int) - frames).mean() < 12
    write_video(str(tmp_path / "odd.mp4"), frames, 10)
    odd = np.stack(list(decode_frames(str(tmp_path / "odd.mp4"))))
    assert odd.shape == (10, 48, 64, 3)  # padded to even by repeating the edge
    assert np.abs(odd[:, :47, :63].astype(int) - frames).mean() < 4
    write_video(str(tmp_path / "g.mp4"), frames[..., :1], 10)
    gray = np.stack(list(decode_frames(str(tmp_path / "g.mp4"), gray=True)))
    assert gray.shape == (10, 48, 64, 1)
    with pytest.raises(ValueError, match="extension"):
        write_video(str(tmp_path / "a.xyz"), frames, 10)
    with pytest.raises(ValueError, match="uint8"):
        write_video(str(tmp_path / "b.mp4"), frames.astype(np.float32), 10)


def test_resize_modes_and_gray(tmp_path: Path) -> None:
    frames = ramp_frames(4)
    path = str(tmp_path / "a.mp4")
    write_video(path, frames, 30)
    crop = np.stack(list(decode_frames(path, size=32, resize="crop")))
    pad = np.stack(list(decode_frames(path, size=32, resize="pad")))
    stretch = np.stack(list(decode_frames(path, size=32, resize="stretch", gray=True)))
    assert crop.shape == pad.shape == (4, 32, 32, 3)
    assert stretch.shape == (4, 32, 32, 1)
    # pad: 64x48 -> 32x24 centred, 4 black rows above and below
    assert pad[:, :4].max() == 0 and pad[:, -4:].max() == 0 and pad[:, 4:28].max() > 0
    # crop cuts the left and right of the 43x32 scaled frame: the red band narrows
    red_crop = (crop[0, 16, :, 0] > 200).sum()
    red_stretch = np.stack(list(decode_frames(path, size=32, resize="stretch")))[0, 16, :, 0] > 200
    assert 0 < red_crop < red_stretch.sum()


def test_fps_resampling_constant_rate(tmp_path: Path) -> None:
    path = str(tmp_path / "a.mp4")
    write_video(path, ramp_frames(30), 30)
    down = [frame_index(f) for f in decode_frames(path, fps=10)]
    assert down == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27]
    up = [frame_index(f) for f in decode_frames(path, fps=60)]
    assert len(up) == 60 and up[::2] == list(range(30)) and up[1::2] == list(range(30))
    assert [frame_index(f) for f in decode_frames(path, fps=30)] == list(range(30))
    assert len(list(decode_frames(path, max_frames=7))) == 7
    assert len(list(decode_frames(path, fps=10, max_frames=4))) == 4


def test_fps_resampling_variable_rate(tmp_path: Path) -> None:
    """Timestamps, not frame counts, decide: a frame shows until the next one starts."""
    path = str(tmp_path / "vfr.mkv")
    pts_ms = [0, 100, 150, 400, 500, 520, 540, 900]  # frame i is shown from pts_ms[i]
    frames = ramp_frames(len(pts_ms))
    with av.open(path, "w") as out:
        s = out.add_stream("ffv1", rate=30)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate(pts_ms):
            f = av.VideoFrame.from_ndarray(frames[i], format="rgb24").reformat(format="yuv420p")
            f.pts, f.time_base = t, Fraction(1, 1000)
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    got = [frame_index(f) for f in decode_frames(path, fps=10)]
    # slots at 0, 100, ..., 900 ms (the last frame lasts one source frame period)
    assert got == [0, 1, 2, 2, 3, 5, 6, 6, 6, 7]
    # without resampling: every frame once, whatever its duration
    assert [frame_index(f) for f in decode_frames(path)] == list(range(8))


def test_lavfi_source_and_bounds() -> None:
    src = "lavfi:testsrc2=size=64x48:rate=30"
    with open_input(src) as c:
        assert c.streams.video[0].codec_context.width == 64
    assert len(list(decode_frames(src, max_frames=5))) == 5
    assert len(list(decode_frames(src, max_seconds=0.5))) == 15
    assert len(list(decode_frames(src + ":d=1", size=16))) == 30


def test_threads_do_not_change_frames(tmp_path: Path) -> None:
    path = str(tmp_path / "a.mp4")
    write_video(path, ramp_frames(20), 30)
    one = np.stack(list(decode_frames(path, size=24, threads=1)))
    auto = np.stack(list(decode_frames(path, size=24, threads=0)))
    assert np.array_equal(one, auto)


def test_broken_inputs_have_one_line_reasons(tmp_path: Path) -> None:
    for name, (path, words) in broken_inputs(tmp_path).items():
        with pytest.raises(VideoError) as e:
            list(decode_frames(path))
        msg = str(e.value)
        assert words in msg and "\n" not in msg, (name, msg)


def test_truncated_stream_is_partial(tmp_path: Path) -> None:
    path = tmp_path / "a.mkv"
    write_video(str(path), ramp_frames(60), 30, codec="ffv1")
    data = path.read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: len(data) // 2])
    with Decoder(str(tmp_path / "cut.mkv")) as dec:
        frames = list(dec)
        assert 0 < len(frames) < 60
        assert len(frames) == plain_pyav_count(str(tmp_path / "cut.mkv"))
        assert dec.partial_reason() is not None
    with Decoder(str(path)) as dec:
        assert len(list(dec)) == 60 and dec.partial_reason() is None


def test_http_source(tmp_path: Path) -> None:
    import functools
    import http.server
    import threading

    write_video(str(tmp_path / "a.mp4"), ramp_frames(12), 30)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert len(list(decode_frames(f"{url}/a.mp4", size=16))) == 12
        with pytest.raises(VideoError):
            list(decode_frames(f"{url}/missing.mp4"))
    finally:
        server.shutdown()


_EARLY_STOP = """
import sys
from pipeline.io.video import decode_frames
for _ in range(12):
    frames = list(decode_frames(sys.argv[1], size=64, gray=True, max_frames=20))
    assert len(frames) == 20
print("ok")
"""


def test_stopping_early_never_hangs_in_close(tmp_path: Path) -> None:
    """A frame-threaded decoder closed mid-stream used to deadlock about half the time."""
    import subprocess
    import sys

    path = str(tmp_path / "ramp.mp4")
    write_video(path, ramp_frames(30, 256, 512), fps=10)  # big enough for frame threading
    r = subprocess.run(
        [sys.executable, "-c", _EARLY_STOP, path], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
