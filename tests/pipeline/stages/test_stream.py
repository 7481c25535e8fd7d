"""`framecast stream`: drop-oldest queue, a stream from an FFmpeg test source with a tiny
untrained checkpoint (report, recording, live page over HTTP), clear errors, and a headless
chromium test of the live page."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from models.lstm_autoencoder import LSTMAutoencoderTask
from models.mocogan import MoCoGANTask
from pipeline.cli import main
from pipeline.core.config import UsageError
from pipeline.core.frames import to_model, to_uint8
from pipeline.core.stats import percentiles
from pipeline.io.video import frame_count
from pipeline.runtime import checkpoint
from pipeline.runtime.inference import LocalSession, load_model
from pipeline.stages.stream import (
    DropOldestQueue,
    StreamConfig,
    Streamer,
    _encode_jpeg_av,
    camera_source,
)

SRC = "lavfi:testsrc2=size=320x240:rate=30"
ARTIFACTS = Path(__file__).resolve().parents[3] / ".artifacts"


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> str:
    torch.manual_seed(0)
    task = LSTMAutoencoderTask(frame_size=16, channels=1, context=4, horizon=3, hidden=32)
    path = tmp_path_factory.mktemp("stream") / "tiny.pt"
    checkpoint.save(path, task, task.make_optimizers(), 1, {})
    return str(path)


def session(ckpt: str) -> LocalSession:
    """The live session `framecast stream checkpoint=CKPT` runs, on the CPU."""
    return LocalSession(load_model(ckpt, "cpu", want=("predictor",)))


# --------------------------------------------------------------------------- units
def test_drop_oldest_queue() -> None:
    q = DropOldestQueue(3)
    assert [q.put(i) for i in range(5)] == [0, 0, 0, 1, 1]
    assert q.dropped == 2 and len(q) == 3
    assert [q.get(0.1) for _ in range(3)] == [2, 3, 4]  # the newest survive, in order
    assert q.get(timeout=0.05) is None  # empty: times out
    q.put(9)
    q.close()
    assert q.get() == 9 and q.get() is None  # closed: drains, then None without blocking
    with pytest.raises(ValueError):
        DropOldestQueue(0)


def test_drop_oldest_queue_threads_never_exceed_bound() -> None:
    q = DropOldestQueue(2)
    got: list[int] = []

    def consumer() -> None:
        while (item := q.get(timeout=2)) is not None:
            got.append(item)
            time.sleep(0.002)  # slower than the producer

    t = threading.Thread(target=consumer)
    t.start()
    for i in range(300):
        q.put(i)
        assert len(q) <= 2
    q.close()
    t.join(5)
    assert got == sorted(got) and got[-1] == 299  # order kept, the last frame never dropped
    assert len(got) + q.dropped == 300


def test_percentiles_and_camera_names() -> None:
    p = percentiles(list(range(1, 101)))
    assert p["p50"] == 50.5 and p["p99"] == pytest.approx(99.01) and p["n"] == 100
    assert percentiles([])["p95"] is None
    assert camera_source("clip.mp4") == "clip.mp4"
    assert camera_source("/dev/video2") == "/dev/video2"
    import platform

    if platform.system() == "Linux":
        assert camera_source("camera") == "/dev/video0"
        assert camera_source("1") == "/dev/video1"


def test_local_session_matches_model_predict(tiny_ckpt: str) -> None:
    frames = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 1), dtype=np.uint8)
    p = session(tiny_ckpt)
    for f in frames:
        out = p.push(f, 3)
    model = p.loaded.model
    with torch.no_grad():
        want = to_uint8(model.predict(to_model(frames)[None], 3)[0])
    assert out.shape == (3, 16, 16, 1)
    assert np.abs(out.astype(int) - want.astype(int)).max() <= 1


# --------------------------------------------------------------------------- stream runs
def get(url: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()


def test_stream_report_record_and_page(tiny_ckpt: str, tmp_path: Path) -> None:
    """A bounded stream from testsrc2: page frames over HTTP while it runs, the report's keys,
    and a recording with one frame per processed frame."""
    rec = tmp_path / "live.mp4"
    opts = StreamConfig(horizon=3, port=0, max_frames=60, record=str(rec), scale=2)
    st = Streamer(SRC, session(tiny_ckpt), 16, 1, opts).start()
    pages: dict[str, object] = {}

    def poll() -> None:
        deadline = time.time() + 30
        while time.time() < deadline:
            _, _, body = get(st.url + "state.json")
            state = json.loads(body)
            if state["seq"] >= 0:
                pages["state"] = state
                pages["observed"] = get(st.url + "observed.jpg")
                pages["predicted"] = get(st.url + "predicted.jpg")
                pages["html"] = get(st.url)[2].decode()
                return
            time.sleep(0.05)

    t = threading.Thread(target=poll)
    t.start()
    result = st.wait()
    t.join(30)
    assert st.url.startswith("http://127.0.0.1:")
    # the live page served both images while streaming
    code, hdrs, obs = pages["observed"]
    assert code == 200 and hdrs["content-type"] == "image/jpeg" and obs[:2] == b"\xff\xd8"
    _, hdrs, pred = pages["predicted"]
    assert pred[:2] == b"\xff\xd8" and int(hdrs["x-frame-seq"]) >= 0
    import io

    from PIL import Image

    assert Image.open(io.BytesIO(pred)).size == (3 * 16 * 2, 16 * 2)  # K frames side by side
    assert 'id="predicted"' in pages["html"] and 'id="latency"' in pages["html"]
    assert {"fps", "latency_ms", "dropped", "seq"} <= set(pages["state"])
    # the result
    assert result["frames_captured"] == 60
    assert result["frames_processed"] + result["frames_dropped"] == 60
    assert result["frames_processed"] >= 1
    for key in ("total", "queue", "model", "page"):
        assert {"p50", "p95", "p99"} <= set(result["latency_ms"][key])
    assert result["latency_ms"]["total"]["n"] == result["frames_processed"]
    assert result["latency_ms"]["page"]["n"] >= 1
    assert result["source_fps"] == 30.0
    assert result["capture_fps"] < 40  # played at the source's rate, not as fast as decoded
    assert result["capture_error"] is None and result["record_error"] is None
    assert result["frames_recorded"] == result["frames_processed"]
    assert frame_count(str(rec)) == result["frames_processed"]


def test_stream_drops_oldest_when_model_is_slow(tiny_ckpt: str) -> None:
    """A model slower than the source: the queue stays bounded and drops are counted."""

    class Slow(LocalSession):
        def push(self, frame: np.ndarray, horizon: int) -> np.ndarray:
            time.sleep(0.1)  # 10 fps against a 30 fps source
            return super().push(frame, horizon)

    opts = StreamConfig(horizon=2, page=False, max_frames=30, queue=2)
    slow = Slow(load_model(tiny_ckpt, "cpu", want=("predictor",)))
    res = Streamer(SRC, slow, 16, 1, opts).start().wait()
    assert res["frames_dropped"] > 5
    assert res["frames_processed"] + res["frames_dropped"] == 30
    assert res["latency_ms"]["queue"]["max"] < 600  # bounded: never a growing backlog


def test_stream_stage_cli(tiny_ckpt: str, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    rc = main(
        [
            "stream",
            f"checkpoint={tiny_ckpt}",
            f"source='{SRC}'",
            "stream.max_frames=20",
            "stream.port=0",
            "stream.realtime=false",
            f"report={report}",
        ]
    )
    assert rc == 0
    r = json.loads(report.read_text())
    assert r["stage"] == "stream" and r["frames_captured"] == 20
    assert {"p50", "p95", "p99"} <= set(r["latency_ms"]["total"]) and "fps" in r


def test_stream_clear_errors(tiny_ckpt: str, tmp_path: Path, capsys) -> None:
    assert main(["stream", f"checkpoint={tiny_ckpt}", "source=/dev/video97"]) == 2
    assert "no such camera" in capsys.readouterr().err
    assert main(["stream", f"checkpoint={tiny_ckpt}", f"source={tmp_path}/nope.mp4"]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    assert main(["stream", f"checkpoint={tiny_ckpt}", f"source={bad}"]) == 2
    assert "cannot open" in capsys.readouterr().err
    assert main(["stream", f"source='{SRC}'"]) == 2  # no checkpoint, no server
    with pytest.raises(UsageError, match="record"):
        Streamer(SRC, session(tiny_ckpt), 16, 1, StreamConfig(record="x.txt"))


def test_stream_refuses_a_generator_in_one_line(tmp_path: Path, capsys) -> None:
    """A generator checkpoint is refused before any source is opened (the camera here does not
    exist: the checkpoint's kind is what the one line is about)."""
    torch.manual_seed(0)
    task = MoCoGANTask(frame_size=16, length=4, dim_content=4, dim_motion=4, dim_noise=2,
                       gen_channels=4, disc_channels=4)  # fmt: skip
    gen = tmp_path / "gen.pt"
    checkpoint.save(gen, task, task.make_optimizers(), 1, {})
    capsys.readouterr()
    assert main(["stream", f"checkpoint={gen}", "source=/dev/video97"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert str(gen) in err[0] and "mocogan" in err[0] and "takes a predictor" in err[0]


# --------------------------------------------------------------------------- browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_live_page_in_headless_chromium(tiny_ckpt: str) -> None:
    """The live page in Debian's chromium (Playwright): the predicted panel updates over time
    and the latency figure is shown; a screenshot goes to .artifacts/."""
    if CHROMIUM is None or not _has_playwright():
        if os.environ.get("CI"):
            pytest.fail("CI needs chromium and playwright for the live page browser test")
        pytest.skip("chromium or playwright not installed")
    from playwright.sync_api import sync_playwright

    opts = StreamConfig(horizon=3, port=0, seconds=20, scale=4)
    st = Streamer(SRC, session(tiny_ckpt), 16, 1, opts).start()
    done: dict[str, object] = {}
    t = threading.Thread(target=lambda: done.update(st.wait()), daemon=True)
    t.start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page(viewport={"width": 900, "height": 400})
            page.goto(st.url, timeout=30000)
            page.wait_for_function(
                "document.getElementById('predicted').naturalWidth > 0", timeout=30000
            )
            src1 = page.get_attribute("#predicted", "src")
            page.wait_for_function(
                f"document.getElementById('predicted').getAttribute('src') !== {src1!r}"
                " && document.getElementById('predicted').complete",
                timeout=30000,
            )
            src2 = page.get_attribute("#predicted", "src")
            page.wait_for_function(
                "/\\d+(\\.\\d+)? ms/.test(document.getElementById('latency').textContent)",
                timeout=30000,
            )
            latency = page.text_content("#latency")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "live_page.png"))
            browser.close()
    finally:
        st.stop()
        t.join(30)
    assert src1 != src2 and src2.startswith("/predicted.jpg?seq=")
    assert latency.endswith(" ms")
    assert (ARTIFACTS / "live_page.png").stat().st_size > 1000
    assert done["latency_ms"]["page"]["n"] >= 2


def _has_playwright() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


def test_jpeg_without_pillow_uses_ffmpeg() -> None:
    data = _encode_jpeg_av(np.full((32, 48, 3), 200, np.uint8))
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
