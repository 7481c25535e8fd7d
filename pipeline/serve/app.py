"""`framecast serve`'s Ray Serve application: predictors and generators over HTTP.

Deployments (one Serve application, "framecast"):

    Ingress (routes.py, FastAPI: parses and checks input, auth, metrics; with serve.replicas=1
      │      it also holds the predictor and its sessions, saving an actor hop per frame)
      ├── predictor_0 .. predictor_{R-1}   SessionHost (hosts.py): the model and the live
      │                                    sessions of a shard (only when serve.replicas > 1)
      └── generator                        GeneratorHost (hosts.py): a generator (optional)

A stream session holds the model's recurrent state (a StreamSession), so every request of a
session must reach the replica that holds it: each of the `serve.replicas` predictor replicas is
its own deployment (one replica each), and a session id names its shard. Sessions idle for
`serve.idle_seconds` are dropped. A replica steps the frames of concurrent sessions through the
model as one batch: on a GPU, many streams cost about one. The HTTP API is in routes.py.

The driver reads each checkpoint once (`plan`: its kind decides predictor or generator); every
replica loads its own once. `serve_app` builds the same application for `serve run` and KubeRay.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Any

from pipeline.core.config import typed
from pipeline.core.errors import UsageError
from pipeline.runtime.inference import CheckpointInfo, inspect_checkpoint
from pipeline.serve.hosts import GeneratorHost, SessionHost
from pipeline.serve.routes import ingress_deployment

APP_NAME = "framecast"


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"  # HTTP address; anything but loopback needs serve.token
    port: int = 8000
    token: str | None = None  # clients send `Authorization: Bearer TOKEN` (else $FRAMECAST_TOKEN)
    replicas: int = 1  # predictor replicas (session shards); 1: the ingress holds the model
    gpus_per_replica: float = 0.0
    cpus_per_replica: float = 1.0
    threads: int = 1  # torch CPU threads per replica
    horizon: int | None = None  # default predicted frames (null: the model's training horizon)
    max_horizon: int = 100
    max_batch: int = 256  # frames in one request
    max_request_mb: float | None = None  # body limit (null: max_batch frames, base64, + 1 MiB)
    max_sessions: int = 1000  # per replica
    batch_sessions: int = 32  # most sessions stepped through the model as one batch
    batch_wait_ms: float = 0.0  # wait for more sessions to batch (0: only those waiting)
    idle_seconds: float = 300.0  # sessions idle this long are dropped
    ws_queue: int = 2  # WebSocket frames waiting for the model; the oldest are dropped beyond
    generator: str | None = None  # a generator checkpoint served beside the predictor
    max_videos: int = 64  # videos per generate request
    max_length: int = 256  # frames per generated video
    seconds: float | None = None  # stop after this many seconds (null: until Ctrl-C)
    address: str | None = None  # Ray address (null: cluster.address, $RAY_ADDRESS or local)
    access_log: bool = False  # Serve's per-request access log lines (proxy and replicas)


@dataclass
class Plan:
    """What `framecast serve` hosts, checked before anything starts."""

    predictor: CheckpointInfo | None
    generator: CheckpointInfo | None
    token: str | None

    def models(self) -> dict[str, str | None]:
        """{"predictor": path or None, "generator": path or None}."""
        return {
            "predictor": self.predictor.path if self.predictor else None,
            "generator": self.generator.path if self.generator else None,
        }


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "127.0.0.1", "::1"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plan(cfg_checkpoint: str | None, s: ServeConfig) -> Plan:
    """Check the options and read each checkpoint's kind (once) before anything starts."""
    token = s.token or os.environ.get("FRAMECAST_TOKEN") or None
    if not _is_loopback(s.host) and not token:
        raise UsageError(
            f"serve.host={s.host}: binding to a non-loopback address needs a token "
            "(serve.token=... or $FRAMECAST_TOKEN) that clients must send"
        )
    if s.replicas < 1:
        raise UsageError(f"serve.replicas must be >= 1, got {s.replicas}")
    if s.gpus_per_replica < 0 or s.cpus_per_replica < 0:
        raise UsageError("serve.gpus_per_replica and serve.cpus_per_replica must be >= 0")
    predictor = generator = None
    if cfg_checkpoint:
        info = inspect_checkpoint(cfg_checkpoint, ("predictor", "generator"), "serve")
        if info.kind == "predictor":
            predictor = info
        else:
            generator = info
    if s.generator:
        if generator is not None:
            raise UsageError(
                "checkpoint= is a generator already: serve.generator adds a generator only "
                "beside a predictor checkpoint"
            )
        generator = inspect_checkpoint(s.generator, ("generator",), "serve (serve.generator)")
    if predictor is None and generator is None:
        raise UsageError("missing required key 'checkpoint' (add checkpoint=...)")
    return Plan(predictor, generator, token)


def build_app(p: Plan, s: ServeConfig) -> Any:
    """The bound Serve application of a plan (no checkpoint is read here: the replicas load
    theirs)."""
    from ray import serve

    predictor, generator = p.predictor, p.generator

    actor_opts = {"num_cpus": s.cpus_per_replica, "num_gpus": s.gpus_per_replica}
    device = "cuda" if s.gpus_per_replica > 0 else "cpu"
    shards = []
    local = None  # SessionHost arguments when the ingress holds the one predictor replica
    meta: dict[str, Any] = {}
    ingress_opts: dict[str, Any] = {"num_cpus": 0}
    if predictor is not None:
        meta["predictor"] = {
            "checkpoint": predictor.path,
            "model": predictor.family,
            "frame_size": predictor.frame_size,
            "channels": predictor.channels,
            "horizon": int(s.horizon or predictor.horizon),
            "replicas": s.replicas,
        }
        args = (
            predictor.path,
            device,
            s.threads,
            s.idle_seconds,
            s.max_sessions,
            s.batch_sessions,
            s.batch_wait_ms,
        )
        if s.replicas == 1:
            # one replica: the ingress holds the sessions itself, saving an actor hop per frame
            local, ingress_opts = args, actor_opts
        else:
            queue = max(64, s.batch_sessions)  # Serve's batch queue needs that many in flight
            host = serve.deployment(SessionHost, max_ongoing_requests=queue)
            for i in range(s.replicas):
                shards.append(
                    host.options(name=f"predictor_{i}", ray_actor_options=actor_opts).bind(*args)
                )
    gen = None
    if generator is not None:
        meta["generator"] = {
            "checkpoint": generator.path,
            "model": generator.family,
            "frame_size": generator.frame_size,
            "channels": generator.channels,
            "num_categories": generator.num_categories,
        }
        gen = (
            serve.deployment(GeneratorHost)
            .options(name="generator", ray_actor_options=actor_opts)
            .bind(generator.path, device, s.threads)
        )
    ingress = ingress_deployment()
    return ingress.options(ray_actor_options=ingress_opts).bind(
        shards,
        local,
        gen,
        meta,
        p.token,
        s.max_batch,
        s.max_horizon,
        s.ws_queue,
        s.max_videos,
        s.max_length,
        s.max_request_mb,
    )


def start(p: Plan, s: ServeConfig) -> str:
    """Start the Serve application of plan `p` (Ray must be initialised); returns its URL."""
    from ray import serve

    app = build_app(p, s)
    # the access log writes (and flushes) a line per request in the proxy and the replica
    logging = {"enable_access_log": s.access_log}
    serve.start(http_options={"host": s.host, "port": s.port}, logging_config=logging)
    serve.run(app, name=APP_NAME, route_prefix="/", blocking=False, logging_config=logging)
    host = f"[{s.host}]" if ":" in s.host else s.host
    return f"http://{host}:{s.port}"


def stop() -> None:
    """Shut the Serve application and Serve itself down."""
    from ray import serve

    serve.shutdown()


def serve_app(args: dict[str, Any]) -> Any:
    """A Ray Serve application builder for `serve run` / KubeRay RayService
    (`import_path: pipeline.serve.app:serve_app`): the app `framecast serve` deploys.

    `args` are the RayService's `serveConfigV2.applications[].args`: `checkpoint` (a predictor
    or generator checkpoint path the replicas can read: a volume mounted in every pod) and any
    `serve.*` option of configs/serve.yaml (e.g. `replicas`, `gpus_per_replica`, `generator`).
    The bearer token comes from `$FRAMECAST_TOKEN` (a Kubernetes secret), never from the
    manifest.
    """
    options = dict(args or {})
    checkpoint = options.pop("checkpoint", None)
    # A RayService's HTTP proxy listens on all interfaces of its pod: the non-loopback rule of
    # `framecast serve` applies (a token is required).
    options.setdefault("host", "0.0.0.0")
    s = typed(options, ServeConfig, "serve")
    return build_app(plan(checkpoint, s), s)


__all__ = ["APP_NAME", "Plan", "ServeConfig", "build_app", "plan", "serve_app", "start", "stop"]
