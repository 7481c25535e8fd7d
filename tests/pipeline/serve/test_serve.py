"""`framecast serve`: input parsing (unit), and one Ray Serve app on loopback shared by the
integration tests (sessions, batches, PNG/JPEG, WebSocket, bad input, token, expiry, generator,
a bounded load test with per-session isolation)."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from models.lstm_autoencoder import LSTMAutoencoderTask
from models.mocogan import MoCoGANTask
from models.protocols import video_seed
from pipeline.core.config import UsageError
from pipeline.core.errors import BadInput, ServeClientError
from pipeline.runtime import checkpoint
from pipeline.runtime.client import Client
from pipeline.runtime.inference import LocalSession, load_model
from pipeline.serve import app as fserve
from pipeline.serve.app import ServeConfig, build_app, plan, start
from pipeline.serve.hosts import SessionHost
from pipeline.serve.wire import parse_frames

SIZE, CH = 16, 1
TOKEN = "s3cret-token"


def tiny_predictor(path: Path) -> str:
    torch.manual_seed(0)
    task = LSTMAutoencoderTask(frame_size=SIZE, channels=CH, context=4, horizon=3, hidden=32)
    checkpoint.save(path, task, task.make_optimizers(), 1, {})
    return str(path)


def tiny_generator(path: Path) -> str:
    torch.manual_seed(0)
    task = MoCoGANTask(
        frame_size=16,
        channels=3,
        length=4,
        dim_content=8,
        dim_motion=4,
        dim_noise=4,
        gen_channels=8,
        disc_channels=8,
        num_categories=2,
    )
    checkpoint.save(path, task, task.make_optimizers(), 1, {})
    return str(path)


def png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------- unit: parsing
def test_parse_frames_raw_png_json_and_errors() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, SIZE, SIZE, CH), dtype=np.uint8)
    raw = parse_frames(frames.tobytes(), "application/octet-stream", SIZE, CH, None, 8)
    np.testing.assert_array_equal(raw, frames)
    one = parse_frames(png(frames[0]), "image/png", SIZE, CH, None, 8)
    np.testing.assert_array_equal(one[0], frames[0])
    body = json.dumps({"frames": [base64.b64encode(png(f)).decode() for f in frames]}).encode()
    np.testing.assert_array_equal(parse_frames(body, "application/json", SIZE, CH, None, 8), frames)

    def status(body: bytes, ctype: str, shape: str | None = None, max_batch: int = 8) -> int:
        with pytest.raises(BadInput) as e:
            parse_frames(body, ctype, SIZE, CH, shape, max_batch)
        assert str(e.value)  # a message, not a traceback
        return e.value.status

    assert status(b"", "application/octet-stream") == 400
    assert status(b"\x00" * 100, "application/octet-stream") == 422  # not whole frames
    assert status(b"garbage!", "image/png") == 400
    rgb = np.zeros((SIZE, SIZE, 3), np.uint8)
    assert status(png(rgb), "image/png") == 422  # wrong channels
    assert status(png(np.zeros((8, 8, 1), np.uint8)), "image/png") == 422  # wrong size
    assert status(frames.tobytes(), "text/plain") == 415
    assert status(frames.tobytes(), "application/octet-stream", max_batch=2) == 413
    assert status(rgb.tobytes(), "application/octet-stream", f"1,{SIZE},{SIZE},3") == 422
    assert status(b"{", "application/json") == 400


def bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with almost no pixel data: what a
    decompression bomb looks like before decoding (a real one inflates to gigabytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_images_are_checked_from_their_header_before_decoding() -> None:
    import tracemalloc

    tracemalloc.start()
    for status, body in [(422, bomb_png(12000, 12000)), (413, bomb_png(60000, 60000))]:
        with pytest.raises(BadInput) as e:
            parse_frames(body, "image/png", SIZE, CH, None, 4)
        assert e.value.status == status
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 * 2**20  # nothing of the 144 MB (or 10 GB) the pixels would take
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (SIZE, SIZE)).save(buf, format="GIF")
    with pytest.raises(BadInput) as e:
        parse_frames(buf.getvalue(), "image/png", SIZE, CH, None, 4)
    assert e.value.status == 415


def test_request_limit_and_reading_bodies_under_it() -> None:
    import asyncio

    from pipeline.serve.routes import read_body, request_limit

    assert request_limit(64, 3, 256, None) == int(256 * 64 * 64 * 3 * 4 / 3) + 2**20
    assert request_limit(64, 3, 256, 0.5) == 2**19

    class FakeRequest:
        def __init__(self, chunks: list[bytes], declared: int | None) -> None:
            self.chunks = chunks
            self.headers = {} if declared is None else {"content-length": str(declared)}
            self.read = 0

        async def stream(self):  # noqa: ANN202
            for c in self.chunks:
                self.read += 1
                yield c

    ok = FakeRequest([b"ab", b"cd"], 4)
    assert asyncio.run(read_body(ok, 4)) == b"abcd"
    declared = FakeRequest([b"x" * 10], 10)
    with pytest.raises(BadInput) as e:
        asyncio.run(read_body(declared, 4))
    assert e.value.status == 413 and declared.read == 0  # refused before reading
    endless = FakeRequest([b"xxx"] * 1000, None)
    with pytest.raises(BadInput):
        asyncio.run(read_body(endless, 10))
    assert endless.read == 4  # cut off as soon as it passed the limit


def test_non_loopback_needs_token(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="token"):
        plan(tiny_predictor(tmp_path / "p.pt"), ServeConfig(host="0.0.0.0"))


# --------------------------------------------------------------------------- the served app
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_session_host_steps_sessions_as_one_batch(tmp_path: Path) -> None:
    """Pushes of distinct sessions that arrive together go through the model as one batch
    (what Serve's batch queue hands to step_batch), and each session still gets exactly its
    own prediction; the same session twice in one batch runs in order."""
    import asyncio

    ckpt = tiny_predictor(tmp_path / "p.pt")
    store = SessionHost(ckpt, "cpu", batch_sessions=8)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 5, SIZE, SIZE, CH), dtype=np.uint8)
    sids = [f"0-s{i}" for i in range(4)]
    for sid in sids:
        store.create(sid)
    for t in range(5):  # the four sessions push their frame t at the same moment
        outs = store.step_batch(sids, [frames[i, t : t + 1] for i in range(4)], [3, 1, 3, 2])
    for i, k in enumerate([3, 1, 3, 2]):
        want = expected(ckpt, frames[i], k)
        assert outs[i]["frames"].shape == (k, SIZE, SIZE, CH)
        assert np.abs(outs[i]["frames"].astype(int) - want.astype(int)).max() <= 1
        assert outs[i]["frames_seen"] == 5
    stats = store.stats()
    assert stats["batched_pushes"] == 4 * 5 and stats["batches"] == 5
    f = frames[0, :1]
    res = store.step_batch([sids[0], "0-gone", sids[0]], [f, f, f], [0, 1, 2])
    assert res[0]["frames"] is None and res[0]["frames_seen"] == 6
    assert res[1]["status"] == 404 and "no such session" in res[1]["error"]
    assert res[2]["frames"].shape == (2, SIZE, SIZE, CH) and res[2]["frames_seen"] == 7
    assert store.stats()["batched_pushes"] == 4 * 5  # nothing merged there

    async def together() -> list[dict]:  # four pushes arriving at once: one model batch
        pushes = [store.push(sid, frames[i, :1], 1) for i, sid in enumerate(sids)]
        return await asyncio.gather(*pushes)

    batches = store.stats()["batches"]
    outs = asyncio.run(together())
    assert [o["frames_seen"] for o in outs] == [8, 6, 6, 6]
    assert store.stats()["batches"] == batches + 1
    assert store.stats()["batched_pushes"] == 4 * 5 + 4


@pytest.fixture(scope="module")
def server(ray_local, tmp_path_factory):
    d = tmp_path_factory.mktemp("serve")
    pred, gen = tiny_predictor(d / "pred.pt"), tiny_generator(d / "gen.pt")
    s = ServeConfig(
        port=free_port(),
        token=TOKEN,
        cpus_per_replica=0.5,
        idle_seconds=2.0,
        horizon=3,
        generator=gen,
        max_batch=16,
        batch_wait_ms=5.0,  # sessions pushing at the same moment are stepped as one batch
    )
    url = start(plan(pred, s), s)
    deadline = time.time() + 90
    client = Client(url, TOKEN, timeout=30)
    while True:
        try:
            client.healthz()
            break
        except ServeClientError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)
    yield {"url": url, "pred": pred, "gen": gen}
    fserve.stop()


def expected(pred_ckpt: str, frames: np.ndarray, horizon: int) -> np.ndarray:
    """In-process prediction after `frames` (N, H, W, C): what the server must return."""
    p = LocalSession(load_model(pred_ckpt, "cpu"))
    for f in frames[:-1]:
        p.push(f, 1)
    return p.push(frames[-1], horizon)


@pytest.mark.slow
def test_sessions_batches_formats_and_isolation(server) -> None:
    c = Client(server["url"], TOKEN)
    assert c.healthz()["status"] == "ok"
    rng = np.random.default_rng(1)
    a = c.session()
    b = c.session()
    assert (a.frame_size, a.channels) == (SIZE, CH) and a.id != b.id
    fa = rng.integers(0, 256, (5, SIZE, SIZE, CH), dtype=np.uint8)
    fb = rng.integers(0, 256, (5, SIZE, SIZE, CH), dtype=np.uint8)
    out_a = out_b = None
    for i in range(5):  # interleaved: each session sees only its own frames
        out_a = a.push(fa[i], 3)
        out_b = b.push(fb[i], 3)
    assert out_a.shape == (3, SIZE, SIZE, CH)
    assert np.abs(out_a.astype(int) - expected(server["pred"], fa, 3)).max() <= 1
    assert np.abs(out_b.astype(int) - expected(server["pred"], fb, 3)).max() <= 1
    # a batch of frames in one request equals one at a time
    batch = c.session()
    out = batch.push(fa, 3)
    assert np.abs(out.astype(int) - out_a.astype(int)).max() <= 1
    # PNG in, PNG strip out; JSON out
    _, hdrs, body = c.request(
        "POST",
        f"/v1/sessions/{a.id}/frames",
        png(fa[0]),
        {"Content-Type": "image/png"},
        {"horizon": 2, "out": "png"},
    )
    assert body[:8] == b"\x89PNG\r\n\x1a\n" and hdrs["x-frames-seen"] == "6"
    _, _, body = c.request(
        "POST", f"/v1/sessions/{a.id}/frames", fa[0].tobytes(), {}, {"out": "json"}
    )
    assert len(json.loads(body)["frames"]) == 3
    for s in (a, b, batch):
        s.close()


@pytest.mark.slow
def test_bad_input_is_4xx_and_others_keep_working(server) -> None:
    c = Client(server["url"], TOKEN)
    good = c.session()
    frame = np.full((SIZE, SIZE, CH), 128, np.uint8)
    good.push(frame, 1)
    sid = c.session().id
    cases = [
        (b"\xde\xad\xbe\xef" * 7, "application/octet-stream", 422),  # garbage / wrong size
        (b"garbage", "image/jpeg", 400),
        (png(np.zeros((SIZE, SIZE, 3), np.uint8)), "image/png", 422),  # wrong channels
        (png(np.zeros((SIZE * 2, SIZE * 2, 1), np.uint8)), "image/png", 422),  # wrong size
        (b"", "application/octet-stream", 400),
    ]
    for body, ctype, code in cases:
        with pytest.raises(ServeClientError) as e:
            c.request("POST", f"/v1/sessions/{sid}/frames", body, {"Content-Type": ctype})
        assert e.value.status == code, str(e.value)
        assert len(str(e.value)) < 300
    with pytest.raises(ServeClientError) as e:
        c.request("POST", "/v1/sessions/0-nope/frames", frame.tobytes())
    assert e.value.status == 404 and "no such session" in str(e.value)
    with pytest.raises(ServeClientError) as e:
        c.request("POST", f"/v1/sessions/{sid}/frames", frame.tobytes(), query={"horizon": -1})
    assert e.value.status == 400
    # missing and wrong token: 401; healthz stays open
    for tok in (None, "wrong"):
        anon = Client(server["url"], tok)
        assert anon.healthz()["status"] == "ok"
        with pytest.raises(ServeClientError) as e:
            anon.session()
        assert e.value.status == 401 and "token" in str(e.value)
    # the good session still works after all that
    assert good.push(frame, 2).shape == (2, SIZE, SIZE, CH)
    m = c.metrics()
    assert m["errors"].get("422", 0) >= 3 and m["errors"].get("401", 0) >= 2
    good.close()


@pytest.mark.slow
def test_oversized_and_bomb_requests_get_4xx_and_sessions_go_on(server) -> None:
    c = Client(server["url"], TOKEN)
    honest = c.session(transport="http")
    frames = np.random.default_rng(5).integers(0, 256, (4, SIZE, SIZE, CH), dtype=np.uint8)
    before = honest.push(frames[0], 2)
    big = np.zeros((17, SIZE, SIZE, CH), np.uint8).tobytes() * 400  # far over the limit
    with pytest.raises(ServeClientError) as e:
        Client(server["url"], TOKEN).request(
            "POST", f"/v1/sessions/{honest.id}/frames", big,
            {"Content-Type": "application/octet-stream"},
        )  # fmt: skip
    assert e.value.status == 413
    with pytest.raises(ServeClientError) as e:
        Client(server["url"], TOKEN).request(
            "POST", f"/v1/sessions/{honest.id}/frames", bomb_png(12000, 12000),
            {"Content-Type": "image/png"},
        )  # fmt: skip
    assert e.value.status == 422
    after = honest.push(frames[1], 2)
    assert after.shape == before.shape == (2, SIZE, SIZE, CH)
    assert np.abs(after.astype(int) - expected(server["pred"], frames[:2], 2)).max() <= 1
    honest.close()


@pytest.mark.slow
def test_websocket_stream_and_errors(server) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    c = Client(server["url"], TOKEN)
    s = c.session()
    ws_url = server["url"].replace("http://", "ws://") + f"/v1/sessions/{s.id}/ws"
    frames = np.random.default_rng(2).integers(0, 256, (4, SIZE, SIZE, CH), dtype=np.uint8)
    with connect(f"{ws_url}?horizon=2&token={TOKEN}", open_timeout=30) as ws:
        ws.send(b"bad bytes")
        err = json.loads(ws.recv(timeout=30))
        assert err["status"] == 422 and "frames" in err["error"]
        ws.send('{"horizon": 3}')
        assert json.loads(ws.recv(timeout=30)) == {"horizon": 3}
        outs = []
        for f in frames:  # send and wait: no drops
            ws.send(f.tobytes())
            outs.append(ws.recv(timeout=30))
    last = np.frombuffer(outs[-1], np.uint8).reshape(3, SIZE, SIZE, CH)
    assert np.abs(last.astype(int) - expected(server["pred"], frames, 3)).max() <= 1
    # a message over serve.max_request_mb: a 413 reply, then the socket closes with 1009
    with connect(f"{ws_url}?horizon=2&token={TOKEN}", open_timeout=30) as ws:
        ws.send(np.zeros((17, SIZE, SIZE, CH), np.uint8).tobytes() * 400)
        err = json.loads(ws.recv(timeout=30))
        assert err["status"] == 413 and "serve.max_request_mb" in err["error"]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    with pytest.raises(Exception):  # noqa: B017 - any rejection of the handshake
        with connect(f"{ws_url}?token=wrong", open_timeout=30) as ws:
            ws.recv(timeout=10)
    s.close()


@pytest.mark.slow
def test_remote_session_over_websocket_and_http_agree(server) -> None:
    """The stream client's two transports give the same predictions; over the WebSocket a bad
    frame is a 422 and the session goes on; a horizon change is sent as a text message."""
    frames = np.random.default_rng(4).integers(0, 256, (4, SIZE, SIZE, CH), dtype=np.uint8)
    ws = Client(server["url"], TOKEN).session()
    http = Client(server["url"], TOKEN).session("http")
    assert ws.transport == "ws" and http.transport == "http"
    for f in frames[:3]:
        a, b = ws.push(f, 2), http.push(f, 2)
        assert a.shape == (2, SIZE, SIZE, CH) and np.abs(a.astype(int) - b).max() <= 1
    with pytest.raises(ServeClientError) as e:
        ws.push(np.zeros((SIZE + 1, SIZE, CH), np.uint8), 2)
    assert e.value.status == 422 and "bytes" in str(e.value)
    out = ws.push(frames[3], 4)  # a new horizon on the same socket
    assert np.abs(out.astype(int) - expected(server["pred"], frames, 4)).max() <= 1
    assert ws.push(frames[3], 0).shape == (0, SIZE, SIZE, CH)
    ws.close()
    http.close()
    with pytest.raises(ServeClientError) as e:
        Client(server["url"]).session()  # no token
    assert e.value.status == 401


@pytest.mark.slow
def test_idle_sessions_expire(server) -> None:
    c = Client(server["url"], TOKEN)
    s = c.session()
    s.push(np.zeros((SIZE, SIZE, CH), np.uint8), 1)
    time.sleep(3.5)  # idle_seconds=2, swept every 0.5 s
    with pytest.raises(ServeClientError) as e:
        s.push(np.zeros((SIZE, SIZE, CH), np.uint8), 1)
    assert e.value.status == 404 and "expired" in str(e.value)
    assert c.metrics()["sessions_expired"] >= 1


@pytest.mark.slow
def test_generate_streams_videos(server) -> None:
    import av

    c = Client(server["url"], TOKEN)
    vids = c.generate(count=2, length=4, seed=3, fix="content", category=1, format="mp4")
    assert [v["index"] for v in vids] == [0, 1]
    for v in vids:
        with av.open(io.BytesIO(v["data"])) as f:
            assert sum(1 for _ in f.decode(video=0)) == 4
    again = c.generate(count=1, length=4, seed=3, fix="content", category=1)
    assert again[0]["data"] == vids[0]["data"]  # same seed, same video
    with pytest.raises(ServeClientError) as e:
        c.generate(count=1, length=4, category=7)
    assert e.value.status == 400 and "categor" in str(e.value)


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra", [{}, {"fix": "content"}, {"fix": "motion", "category": 1}], ids=str
)
def test_generate_gives_the_videos_of_framecast_generate(server, tmp_path: Path, extra) -> None:
    """POST /v1/generate with seed S returns, for index i, the frames `framecast generate
    generate.seed=S` writes as video i (one seed scheme: runtime/sampling.py)."""
    from pipeline.cli import main

    c = Client(server["url"], TOKEN)
    vids = c.generate(count=3, length=5, seed=11, format="npy", **extra)
    args = [f"generate.{k}={v}" for k, v in extra.items()]
    out = tmp_path / "gen"
    rc = main(
        ["generate", f"checkpoint={server['gen']}", f"out={out}", "num_videos=3",
         "generate.length=5", "generate.seed=11", "generate.format=npy",
         "generate.backend=local", "generate.preview=0", *args]
    )  # fmt: skip
    assert rc == 0
    for i, v in enumerate(vids):
        assert (v["index"], v["seed"], v["format"]) == (i, 11, "npy")
        assert v["video_seed"] == video_seed(11, i)
        served = np.load(io.BytesIO(v["data"]), allow_pickle=False)
        written = np.load(out / f"video_{i:06d}.npy", allow_pickle=False)
        assert served.shape == (5, 16, 16, 3)
        np.testing.assert_array_equal(served, written)
    assert not np.array_equal(
        np.load(io.BytesIO(vids[0]["data"])), np.load(io.BytesIO(vids[1]["data"]))
    )


def test_each_process_reads_a_checkpoint_once(tmp_path: Path, monkeypatch) -> None:
    """The driver reads each checkpoint once to plan the app (no second read to build it);
    a predictor replica loads its model once."""
    from ray import serve  # noqa: F401 - build_app binds deployments (no cluster needed)

    from pipeline.runtime import inference

    reads: list[str] = []
    real = inference.checkpoint.load

    def counting(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        reads.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(inference.checkpoint, "load", counting)
    pred, gen = tiny_predictor(tmp_path / "p.pt"), tiny_generator(tmp_path / "g.pt")
    s = ServeConfig(generator=gen)
    build_app(plan(pred, s), s)
    assert sorted(reads) == sorted([pred, gen])
    reads.clear()
    host = SessionHost(pred, "cpu")
    assert reads == [pred]
    assert host.create("0-a") == {"session": "0-a"}
    assert reads == [pred]  # a new session reads nothing


@pytest.mark.slow
def test_bomb_and_oversized_probe_leaves_an_honest_session_alone(server, capsys) -> None:
    """20 concurrent bomb PNGs (12000x12000 in the header) and 20 oversized raw bodies (3x the
    limit) on loopback while one honest session streams: every bad request gets a 4xx, the
    honest predictions are the in-process ones, and the replica's RSS stays within 50 MB."""
    c = Client(server["url"], TOKEN)
    rss_before = c.metrics()["replicas"][0]["rss_mb"]
    honest = c.session(transport="http")
    rng = np.random.default_rng(9)
    frames = rng.integers(0, 256, (12, SIZE, SIZE, CH), dtype=np.uint8)
    limit = 16 * SIZE * SIZE * CH * 4 // 3 + 2**20  # the server fixture's max_batch=16
    oversized = b"\0" * (3 * limit)
    statuses: list[int] = []
    lock = threading.Lock()

    def bad(kind: int) -> None:
        body, ctype = (
            (bomb_png(12000, 12000), "image/png")
            if kind % 2
            else (oversized, "application/octet-stream")
        )
        try:
            Client(server["url"], TOKEN, timeout=60).request(
                "POST", f"/v1/sessions/{honest.id}/frames", body, {"Content-Type": ctype}
            )
            status = 200
        except ServeClientError as e:
            status = e.status
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=bad, args=(i,), daemon=True) for i in range(40)]
    latency = []
    for t in threads:
        t.start()
    outs = []
    for f in frames:  # the honest stream, while the probe runs
        t0 = time.perf_counter()
        outs.append(honest.push(f, 2))
        latency.append((time.perf_counter() - t0) * 1e3)
    for t in threads:
        t.join(timeout=120)
    rss_after = c.metrics()["replicas"][0]["rss_mb"]
    assert len(statuses) == 40 and all(400 <= s < 500 for s in statuses), statuses
    assert sorted(set(statuses)) == [413, 422]
    assert np.abs(outs[-1].astype(int) - expected(server["pred"], frames, 2)).max() <= 1
    assert rss_after - rss_before < 50, (rss_before, rss_after)
    honest.close()
    with capsys.disabled():  # the probe's numbers, for the record
        print(
            f"\nprobe: RSS {rss_before} -> {rss_after} MB; 4xx {statuses.count(413)}x413 "
            f"{statuses.count(422)}x422; honest push p50 {np.median(latency):.1f} ms, "
            f"max {max(latency):.1f} ms"
        )


@pytest.mark.slow
def test_load_bounded_sessions_isolated(server) -> None:
    """Scaled-down load test (the full 50 x 10 fps x 30 s is `bench/stream.py --serve-load`):
    N concurrent sessions at F fps for S seconds; every session gets its own frames back."""
    from bench.stream import serve_load

    c = Client(server["url"], TOKEN)
    merged_before = c.metrics()["replicas"][0]["batched_pushes"]
    out = serve_load(server["url"], TOKEN, sessions=6, fps=5, seconds=3, check=server["pred"])
    assert out["errors"] == 0, out
    assert out["mismatched_sessions"] == 0
    assert out["requests"] >= 6 * 5 * 3 * 0.5
    assert c.metrics()["sessions"] == 0  # every load session was closed
    # sessions pushing at the same moment (released together) go through the model as one batch
    sessions = [Client(server["url"], TOKEN).session() for _ in range(6)]
    frames = np.random.default_rng(2).integers(0, 256, (6, 8, SIZE, SIZE, CH), dtype=np.uint8)
    outs: list[np.ndarray | None] = [None] * 6
    go = threading.Barrier(6, timeout=30)

    def client(i: int) -> None:
        for t in range(8):
            go.wait()
            outs[i] = sessions[i].push(frames[i, t], 2)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for i in range(6):
        assert np.abs(outs[i].astype(int) - expected(server["pred"], frames[i], 2)).max() <= 1
        sessions[i].close()
    assert c.metrics()["replicas"][0]["batched_pushes"] > merged_before


@pytest.mark.slow
def test_sessions_shard_across_predictor_replicas(server) -> None:
    """serve.replicas=2: each replica is its own deployment holding its sessions; a session id
    names its replica (a second app on the same Serve, under /two)."""
    from ray import serve

    s = ServeConfig(replicas=2, cpus_per_replica=0.25, horizon=2)
    serve.run(build_app(plan(server["pred"], s), s), name="two", route_prefix="/two")
    try:
        c = Client(server["url"] + "/two", timeout=30)
        sessions = [c.session() for _ in range(4)]
        assert sorted(x.id.split("-")[0] for x in sessions) == ["0", "0", "1", "1"]
        rng = np.random.default_rng(3)
        for x in sessions:
            frames = rng.integers(0, 256, (3, SIZE, SIZE, CH), dtype=np.uint8)
            for f in frames:
                out = x.push(f, 2)
            assert np.abs(out.astype(int) - expected(server["pred"], frames, 2)).max() <= 1
        m = c.metrics()
        assert [r["sessions"] for r in m["replicas"]] == [2, 2] and m["sessions"] == 4
        with pytest.raises(ServeClientError) as e:
            c.request("POST", "/v1/sessions/7-abc/frames", b"\0" * SIZE * SIZE * CH)
        assert e.value.status == 404
    finally:
        serve.delete("two")


def test_serve_stage_usage_errors(tmp_path: Path) -> None:
    from pipeline.cli import main

    assert main(["serve"]) == 2
    ckpt = tiny_predictor(tmp_path / "p.pt")
    assert main(["serve", f"checkpoint={ckpt}", "serve.host=0.0.0.0"]) == 2


@pytest.mark.slow
def test_stream_stage_against_running_serve(server, tmp_path: Path) -> None:
    """`framecast stream stream.server=URL`: the model runs in serve, the session is closed."""
    from pipeline.cli import main

    report = tmp_path / "r.json"
    rc = main(
        [
            "stream",
            "source='lavfi:testsrc2=size=320x240:rate=30'",
            f"stream.server='{server['url']}'",
            f"stream.token={TOKEN}",
            "stream.max_frames=15",
            "stream.port=0",
            f"report={report}",
        ]
    )
    assert rc == 0
    r = json.loads(report.read_text())
    assert r["server"] == server["url"] and r["frames_processed"] >= 1
    assert r["frames_processed"] + r["frames_dropped"] == 15
    assert Client(server["url"], TOKEN).metrics()["sessions"] == 0
    assert main(["stream", "source='lavfi:testsrc2'", "stream.server=http://127.0.0.1:9"]) == 2
