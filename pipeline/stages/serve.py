"""`framecast serve`: predictors and generators over HTTP on Ray Serve.

The application (deployments, routes, wire format) is `pipeline/serve/`; this command checks the
options, starts Ray and the application, and writes the result JSON with the final metrics.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from omegaconf import DictConfig

from pipeline.core.config import required, typed, write_result
from pipeline.core.errors import ServeClientError
from pipeline.runtime.client import Client
from pipeline.runtime.cluster import address_of, ray_init
from pipeline.serve.app import ServeConfig, plan, start, stop


def run(cfg: DictConfig) -> dict[str, Any]:
    s = typed(cfg.serve, ServeConfig, "serve")
    ckpt = cfg.get("checkpoint") or None
    if ckpt is None and not s.generator:
        required(cfg, "checkpoint")
    hosted = plan(ckpt, s)  # user mistakes before Ray starts; each checkpoint read once
    # serve.address, else cluster.address, else $RAY_ADDRESS, else a private local instance
    ray_init(s.address or address_of(cfg))
    url = start(hosted, s)
    models = hosted.models()
    hosted = ", ".join(f"{k} {v}" for k, v in models.items() if v)
    print(f"serve: {hosted} on {url} (healthz, metrics, /v1/...); Ctrl-C stops", file=sys.stderr)
    t0 = time.time()
    result: dict[str, Any] = {"stage": "serve", "url": url, **models}
    try:
        while s.seconds is None or time.time() - t0 < s.seconds:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        try:
            token = s.token or os.environ.get("FRAMECAST_TOKEN") or None
            result["metrics"] = Client(url.replace("0.0.0.0", "127.0.0.1"), token).metrics()
        except (ServeClientError, OSError):
            pass
        stop()
    result["seconds"] = round(time.time() - t0, 3)
    write_result(cfg, result, None)
    return result
