"""Which Ray cluster a stage runs on: the one place that calls `ray.init` for ingest, train
(trainer.backend=ray), generate (generate.backend=ray) and serve.

The address comes from, in order: `cluster.address=` (configs/cluster/default.yaml), then
`$RAY_ADDRESS`, else a new local Ray instance on this machine. A stage submitted with
`ray job submit` has `$RAY_ADDRESS` set by Ray, so the same command line runs on a laptop and
on a cluster. Ray is imported only inside these functions (the local training path never
imports it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pipeline.core.errors import UsageError


def address_of(cfg: Mapping[str, Any] | Any | None) -> str | None:
    """The Ray address a stage with config `cfg` (a DictConfig or a plain dict) should join:
    `cluster.address`, else `$RAY_ADDRESS`, else None (a local instance)."""
    cluster = None
    if cfg is not None:
        try:
            cluster = cfg.get("cluster")
        except AttributeError:
            cluster = None
    address = None
    if cluster is not None:
        address = cluster.get("address") if hasattr(cluster, "get") else None
    if address in (None, ""):
        address = os.environ.get("RAY_ADDRESS") or None
    if address is not None and not isinstance(address, str):
        raise UsageError(f"cluster.address={address!r}: use auto, HOST:PORT or ray://HOST:PORT")
    return address.strip() if address else None


# A private local instance binds its node to this loopback address. Not 127.0.0.1: Ray rewrites
# that one to the host's network address, and a local instance has no business off loopback.
LOCAL_NODE_IP = "127.0.0.2"


def ray_init(address: str | None = None, log_to_driver: bool = False) -> bool:
    """Connect to the Ray cluster at `address` (None: `$RAY_ADDRESS`, else start a local one).

    Returns True when this call initialised Ray (the caller then calls `ray.shutdown()` when
    done), False when Ray was already initialised in this process (its connection is reused:
    tests and `framecast run` share one instance). An address with no cluster behind it is a
    UsageError naming the address.
    """
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {"log_to_driver": log_to_driver}
    if address is None:
        kwargs["include_dashboard"] = False  # a private local instance: no dashboard port
        kwargs["_node_ip_address"] = LOCAL_NODE_IP
    try:
        ray.init(address=address, **kwargs)
    except ConnectionError as e:
        raise UsageError(
            f"cluster.address={address}: cannot connect to a Ray cluster ({_one_line(e)})"
        ) from None
    return True


def connect(cfg: Mapping[str, Any] | Any | None, log_to_driver: bool = False) -> bool:
    """`ray_init(address_of(cfg))`: what a stage calls before it uses Ray."""
    return ray_init(address_of(cfg), log_to_driver=log_to_driver)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:300] + ("..." if len(text) > 300 else "")
