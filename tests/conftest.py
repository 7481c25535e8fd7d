"""Shared fixtures: one local Ray instance per test run, synthetic stores, small videos."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local test instances only
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


from pipeline.io.store import FrameStore  # noqa: E402
from pipeline.runtime.cluster import LOCAL_NODE_IP  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that starts Ray (it uses the shared `ray_local` instance, directly or through
    a fixture) is `slow`: `pytest -m "not slow"` runs without Ray."""
    for item in items:
        if "ray_local" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One local Ray instance shared by every test that needs Ray (never one per test)."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        # 127.0.0.2: a loopback address Ray keeps (it rewrites 127.0.0.1 to the host's address,
        # and tests must send traffic to loopback only)
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            _node_ip_address=LOCAL_NODE_IP,
        )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """torch on one intra-op thread for a module's tests: tiny models gain nothing from more,
    and on a busy 2-core machine spinning OpenMP threads slow them down several-fold. Use with
    `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def tiny_store(tmp_path: Path) -> str:
    """A store of 6 random videos (40 frames, 16x16x1) with a train/test split attribute."""
    url = str(tmp_path / "tiny.zarr")
    store = FrameStore.create(url)
    rng = np.random.default_rng(0)
    for i in range(6):
        frames = rng.integers(0, 256, (40, 16, 16, 1), dtype=np.uint8)
        split = "test" if i >= 4 else "train"
        store.write_video(f"v{i}", frames, {"source": "random", "split": split, "fps": 10})
    return url
