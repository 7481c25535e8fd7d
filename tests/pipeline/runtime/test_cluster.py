"""Multi-node Ray on loopback: `ray job submit` of ingest and 2-worker training against a frame
store on an S3-compatible server (moto), training that survives losing a node, checkpoints on S3,
and GPU placement decided by the cluster (a worker node that claims a GPU resource) rather than
by the CPU-only head that runs the driver.

Everything runs in subprocesses: two `ray start --block` nodes (head + worker, one CPU each, so
two Ray Train workers or two ingest actors can only be placed on both nodes), a moto S3 server,
and the `ray job submit` CLI. The pytest process never joins this cluster (the session's
`ray_local` instance may be up in it). Each node is its own process group and is stopped by
killing that group: never `ray stop`, which would stop every Ray instance on the machine.

`RAY_AUTH_MODE=disabled` is set for these loopback clusters only (deploy/README.md says what a
production cluster uses instead).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent  # the venv's bin: ray, framecast, moto_server
S3_KEYS = {"AWS_ACCESS_KEY_ID": "framecast-test", "AWS_SECRET_ACCESS_KEY": "framecast-test"}
TINY_MODEL = ["model.frame_size=16", "model.hidden=32", "model.context=5", "model.horizon=5"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.25):  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 5) -> None:
    """Stop a process started with start_new_session=True and everything in its group."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=timeout)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    try:  # children that outlived their parent (e.g. Ray workers) are in the same group
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class MotoS3:
    """moto's S3 server on 127.0.0.1 (a subprocess)."""

    def __init__(self, log: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        try:
            wait_for(self._up, 60, f"moto S3 server on port {self.port}")
        except BaseException:
            self.stop()
            raise

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"moto server exited: {self.log.name}")
        try:
            urllib.request.urlopen(self.endpoint, timeout=2).read()
            return True
        except urllib.error.HTTPError:
            return True  # it answers (403 where it checks signatures)
        except OSError:
            return False

    @property
    def env(self) -> dict[str, str]:
        return {**S3_KEYS, "AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": "us-east-1"}

    @property
    def storage_options(self) -> dict:
        return {
            "key": S3_KEYS["AWS_ACCESS_KEY_ID"],
            "secret": S3_KEYS["AWS_SECRET_ACCESS_KEY"],
            "client_kwargs": {"endpoint_url": self.endpoint},
        }

    def make_bucket(self, name: str) -> None:
        import s3fs

        s3fs.S3FileSystem(**self.storage_options, skip_instance_cache=True).mkdir(name)

    def stop(self) -> None:
        stop_group(self.proc)
        self.log.close()


class LocalCluster:
    """A Ray head and worker nodes, each a `ray start --block` process group on loopback."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # Ray's unix sockets live under the temp dir: keep its path short (108-byte limit).
        self.temp_dir = tempfile.mkdtemp(prefix="fc-ray-", dir="/tmp")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
        self.env.update(
            RAY_AUTH_MODE="disabled",  # loopback test clusters only
            RAY_USAGE_STATS_ENABLED="0",
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        self.port = free_port()
        self.dashboard_port = free_port()
        self.address = f"127.0.0.2:{self.port}"
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        self.nodes: list[subprocess.Popen] = []
        self._logs: list = []
        self.head = self._start(
            [
                "--head",
                f"--port={self.port}",
                "--include-dashboard=true",  # the job API lives in the dashboard process
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard_port}",
                f"--ray-client-server-port={free_port()}",
                f"--temp-dir={self.temp_dir}",
            ],
            "head",
        )
        try:
            wait_for(self._jobs_api_up, 90, "the Ray head's job API")
        except BaseException:
            self.stop()
            raise

    def _start(self, args: list[str], name: str, gpus: int = 0) -> subprocess.Popen:
        log = open(self.root / f"ray-{name}.log", "wb")  # noqa: SIM115
        self._logs.append(log)
        proc = subprocess.Popen(
            [
                str(BIN / "ray"),
                "start",
                "--block",
                "--node-ip-address=127.0.0.2",  # Ray rewrites 127.0.0.1 to the host address
                "--num-cpus=1",
                f"--num-gpus={gpus}",  # > 0: a GPU resource only (no device behind it)
                "--object-store-memory=100000000",
                f"--node-manager-port={free_port()}",
                f"--object-manager-port={free_port()}",
                f"--metrics-export-port={free_port()}",
                f"--runtime-env-agent-port={free_port()}",
                f"--dashboard-agent-listen-port={free_port()}",
                f"--dashboard-agent-grpc-port={free_port()}",
                "--disable-usage-stats",
                *args,
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.nodes.append(proc)
        return proc

    def add_worker(self, name: str, gpus: int = 0) -> subprocess.Popen:
        return self._start([f"--address={self.address}"], name, gpus)

    def _jobs_api_up(self) -> bool:
        if self.head.poll() is not None:
            raise RuntimeError(f"the Ray head exited: {self.root / 'ray-head.log'}")
        try:
            with urllib.request.urlopen(f"{self.dashboard}/api/version", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def alive_nodes(self) -> int:
        with urllib.request.urlopen(f"{self.dashboard}/nodes?view=summary", timeout=10) as r:
            body = json.loads(r.read())
        return sum(n["raylet"]["state"] == "ALIVE" for n in body["data"]["summary"])

    def ray(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "ray"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def submit(self, entrypoint: list[str], env: dict[str, str], wait: bool = True) -> str:
        """`ray job submit` (the store's credentials in the job's runtime_env); the job id."""
        job_id = f"fc-{uuid.uuid4().hex[:8]}"
        runtime_env = {"env_vars": env}
        args = [
            "job",
            "submit",
            f"--address={self.dashboard}",
            f"--submission-id={job_id}",
            f"--runtime-env-json={json.dumps(runtime_env)}",
            *([] if wait else ["--no-wait"]),
            "--",
            *entrypoint,
        ]
        p = self.ray(*args, timeout=240)
        (self.root / f"job-{job_id}.log").write_text(p.stdout + p.stderr)
        if p.returncode != 0 and wait:
            raise AssertionError(f"ray job submit failed ({p.returncode}):\n{p.stdout[-3000:]}")
        return job_id

    def status(self, job_id: str) -> str:
        with urllib.request.urlopen(f"{self.dashboard}/api/jobs/{job_id}", timeout=10) as r:
            return json.loads(r.read())["status"]

    def logs(self, job_id: str) -> str:
        with urllib.request.urlopen(f"{self.dashboard}/api/jobs/{job_id}/logs", timeout=10) as r:
            return json.loads(r.read())["logs"]

    def wait_job(self, job_id: str, timeout: float) -> str:
        done = ("SUCCEEDED", "FAILED", "STOPPED")
        status = wait_for(
            lambda: (s := self.status(job_id)) in done and s, timeout, f"job {job_id}", 1.0
        )
        return status

    def stop(self) -> None:
        for proc in reversed(self.nodes):
            stop_group(proc)
        for log in self._logs:
            log.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    pytest.importorskip("moto")
    pytest.importorskip("s3fs")
    server = MotoS3(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.add_worker("worker-1")
        wait_for(lambda: c.alive_nodes() == 2, 90, "two alive Ray nodes")
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def s3_store(cluster: LocalCluster, s3: MotoS3, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Six short videos ingested by a `ray job submit` job into s3://frames/clips.zarr."""
    from pipeline.io.video import write_video

    videos = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    for i in range(6):
        frames = rng.integers(0, 256, (24, 16, 16, 3), dtype=np.uint8)
        write_video(str(videos / f"clip{i}.mp4"), frames, 8)
    s3.make_bucket("frames")
    url = "s3://frames/clips.zarr"
    report = videos.parent / "ingest.json"
    cluster.submit(
        [
            "framecast",
            "ingest",
            f"source={videos}",
            f"store={url}",
            "ingest.size=16",
            "ingest.color=gray",
            f"report={report}",
        ],
        s3.env,
    )
    return {"url": url, "report": json.loads(report.read_text())}


def store_digest(url: str, storage_options: dict) -> dict[str, str]:
    from pipeline.io.store import FrameStore

    store = FrameStore.open(url, storage_options)
    return {v: hashlib.sha256(store.frames(v).tobytes()).hexdigest() for v in store.video_ids()}


def train_entrypoint(store: str, run_dir: Path | str, *extra: str) -> list[str]:
    return [
        "framecast",
        "train",
        f"store={store}",
        f"run_dir={run_dir}",
        *TINY_MODEL,
        "trainer.backend=ray",
        "trainer.workers=2",
        "trainer.batch_size=8",
        "trainer.log_every=1",
        *extra,
    ]


def test_ingest_job_writes_the_s3_store_from_both_nodes(s3_store: dict, s3: MotoS3) -> None:
    from pipeline.io.store import FrameStore

    report = s3_store["report"]
    assert report["failed"] == [] and len(report["ok"]) == 6
    assert report["workers"] == 2  # one actor per node: each node has one CPU
    store = FrameStore.open(s3_store["url"], s3.storage_options)
    assert store.video_ids() == [f"clip{i}.mp4" for i in range(6)]
    for v in store.video_ids():
        assert store.frames(v).shape == (24, 16, 16, 1)
    assert store.summary()["frames"] == report["frames"] == 6 * 24


def test_framecast_run_is_one_ray_job_on_an_s3_store(
    cluster: LocalCluster, s3: MotoS3, tmp_path: Path
) -> None:
    """`ray job submit -- framecast run pipeline=ingest_train`: the whole chain as one job,
    each stage joining the cluster (RAY_ADDRESS); the store it passes on lives on S3, so ingest
    writes it there and train, evaluate and generate read it from there."""
    from pipeline.io.store import FrameStore
    from pipeline.io.video import write_video

    rng = np.random.default_rng(1)
    for label in ("left", "right"):
        (tmp_path / "videos" / label).mkdir(parents=True)
        for i in range(4):
            frames = rng.integers(0, 256, (24, 16, 16, 3), dtype=np.uint8)
            write_video(str(tmp_path / "videos" / label / f"c{i}.mp4"), frames, 8)
    s3.make_bucket("runs")
    url, run_dir = "s3://runs/run.zarr", tmp_path / "run"
    cluster.submit(
        [
            "framecast",
            "run",
            "pipeline=ingest_train",
            f"run_dir={run_dir}",
            f"source={tmp_path / 'videos'}",
            f"stages.ingest.outputs.store={url}",
            "stages.ingest.ingest.size=16",
            "++stages.train.model.frame_size=16",
            "++stages.train.model.hidden=16",
            "stages.train.trainer.max_steps=2",
            "++stages.train.trainer.batch_size=4",
            "++stages.evaluate.evaluate.max_sequences=2",
            "stages.rollouts.num_videos=2",
            "stages.rollouts.generate.preview=2",
            f"report={tmp_path / 'run.json'}",
        ],
        s3.env,
    )
    result = json.loads((tmp_path / "run.json").read_text())
    assert result["ran"] == ["ingest", "train", "evaluate", "rollouts"], result
    store = FrameStore.open(url, s3.storage_options)
    assert len(store.video_ids()) == 8 and store.summary()["frames"] == 8 * 24
    train = json.loads((run_dir / "train" / "train.json").read_text())
    assert train["store"] == url and train["steps"] == 2
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    assert metrics["data"] == url and np.isfinite(metrics["mse"])
    manifest = (run_dir / "rollouts" / "manifest.jsonl").read_text().splitlines()
    assert len(manifest) == 2
    assert (run_dir / "report.html").exists()


def test_two_worker_training_job_on_s3_survives_losing_the_worker_node(
    cluster: LocalCluster, s3_store: dict, s3: MotoS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two Ray Train workers (one per node) train on the S3 store with run_dir on S3 too; the
    worker node dies mid-run; Ray Train restarts the group on a replacement node, it resumes
    from the newest checkpoint Ray persisted to S3 and finishes the same number of steps with
    the same step log; only the newest keep_checkpoints checkpoints stay; the store is
    unchanged."""
    import s3fs

    before = store_digest(s3_store["url"], s3.storage_options)
    s3.make_bucket("ckpts")
    run_dir = "s3://ckpts/run"
    fs = s3fs.S3FileSystem(**s3.storage_options, skip_instance_cache=True)
    max_steps = 200
    job = cluster.submit(
        train_entrypoint(
            s3_store["url"],
            run_dir,
            f"trainer.max_steps={max_steps}",
            "trainer.checkpoint_every=10",
            "trainer.keep_checkpoints=2",
            "trainer.max_failures=2",
        ),
        s3.env,
        wait=False,
    )
    first = "ckpts/run/checkpoints/step-00000010/checkpoint.pt"
    try:
        wait_for(
            lambda: fs.exists(first) or cluster.status(job) in ("FAILED", "SUCCEEDED"),
            120,
            "the first checkpoint on S3",
            0.1,
        )
    except TimeoutError:
        raise AssertionError(cluster.logs(job)[-3000:]) from None
    assert cluster.status(job) == "RUNNING", cluster.logs(job)[-3000:]
    victim = cluster.nodes[-1]
    stop_group(victim, signal.SIGKILL)  # the node dies: raylet, its workers, all at once
    cluster.add_worker(f"worker-{len(cluster.nodes)}")  # the replacement (an autoscaler's job)
    status = cluster.wait_job(job, 180)
    logs = cluster.logs(job)
    assert status == "SUCCEEDED", logs[-3000:]
    result = json.loads(fs.cat_file("ckpts/run/train.json"))
    assert result["steps"] == max_steps and result["workers"] == 2 and result["backend"] == "ray"
    assert result["store"] == s3_store["url"]
    assert result["resumed"] and 10 <= result["start_step"] < max_steps
    log = fs.cat_file("ckpts/run/metrics.jsonl").decode().splitlines()
    assert [json.loads(ln)["step"] for ln in log] == list(range(1, max_steps + 1))
    kept = sorted(p.rsplit("/", 1)[1] for p in fs.ls("ckpts/run/checkpoints", refresh=True))
    assert [k for k in kept if k.startswith("step-")] == ["step-00000190", "step-00000200"]
    assert "last.pt" in kept
    # stages read checkpoints from the URL (credentials and endpoint from the environment)
    for k, v in s3.env.items():
        monkeypatch.setenv(k, v)
    from pipeline.runtime import checkpoint

    assert checkpoint.load(f"{run_dir}/checkpoints/last.pt")["step"] == max_steps
    assert checkpoint.load(f"{run_dir}/checkpoints/step-00000190")["step"] == 190
    assert store_digest(s3_store["url"], s3.storage_options) == before  # the store is intact


def test_missing_bucket_and_denied_access_are_clear_store_errors(
    s3: MotoS3, tmp_path: Path
) -> None:
    from pipeline.io.store import FrameStore, FrameStoreError

    for make in (FrameStore.open, FrameStore.create):
        with pytest.raises(FrameStoreError, match="bucket 'no-such-bucket' does not exist"):
            make("s3://no-such-bucket/x.zarr", s3.storage_options)
    # A server that checks signatures: unknown keys are refused (HTTP 403).
    strict = MotoS3(tmp_path / "moto-auth.log", {"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    try:
        for make in (FrameStore.open, FrameStore.create):
            with pytest.raises(FrameStoreError, match="s3://frames/x.zarr: access denied"):
                make("s3://frames/x.zarr", strict.storage_options)
    finally:
        strict.stop()


def test_device_cuda_on_a_cluster_without_gpus_is_a_one_line_error(
    cluster: LocalCluster, s3_store: dict, s3: MotoS3, tmp_path: Path
) -> None:
    job = cluster.submit(
        train_entrypoint(s3_store["url"], tmp_path / "run", "trainer.device=cuda"),
        s3.env,
        wait=False,
    )
    assert cluster.wait_job(job, 120) == "FAILED"
    logs = cluster.logs(job)
    assert (
        "framecast train: error: trainer.device=cuda: the Ray cluster has no GPU (CPU 2, GPU 0"
        in logs
    )
    assert "Traceback" not in logs


def test_gpu_use_is_decided_by_the_cluster_and_checked_on_the_worker(
    cluster: LocalCluster, s3_store: dict, s3: MotoS3, tmp_path: Path
) -> None:
    """The driver runs on the head (no GPU) and the cluster gains a node that claims one GPU.
    With device=auto and device=cuda the driver must not decide from its own hardware: it asks
    for a GPU worker, Ray places the worker on the GPU node, and there (no CUDA behind the
    claimed GPU) the worker's own check fails with a message naming the GPU Ray gave it."""
    gpu_node = cluster.add_worker("gpu-node", gpus=1)
    try:
        wait_for(lambda: cluster.alive_nodes() >= 3, 90, "the GPU node")
        for device in ("auto", "cuda"):
            job = cluster.submit(
                train_entrypoint(
                    s3_store["url"],
                    tmp_path / device,
                    f"trainer.device={device}",
                    "trainer.workers=1",
                    "trainer.max_failures=0",
                ),
                s3.env,
                wait=False,
            )
            assert cluster.wait_job(job, 180) == "FAILED"
            logs = cluster.logs(job)
            assert "Ray placed this worker on a GPU" in logs, logs[-3000:]
            assert "GPU ids [0]" in logs or "GPU ids ['0']" in logs, logs[-3000:]
            assert "PyTorch there sees no CUDA device" in logs
            assert "framecast train: failed: Ray placed this worker on a GPU" in logs
        # device=cpu on the same cluster trains on CPU workers
        run_dir = tmp_path / "cpu"
        cluster.submit(
            train_entrypoint(s3_store["url"], run_dir, "trainer.device=cpu", "trainer.max_steps=2"),
            s3.env,
        )
        result = json.loads((run_dir / "train.json").read_text())
        assert result["device"] == "cpu" and result["steps"] == 2
    finally:
        stop_group(gpu_node, signal.SIGKILL)
        cluster.nodes.remove(gpu_node)
