"""`framecast train`: the one training loop, for every model family.

`trainer.backend=local` runs the loop in this process (Ray is never imported: GPU machines
without Ray, notebooks and debuggers use this path). `trainer.backend=ray` runs the same loop
on `trainer.workers` Ray Train workers with DDP (gloo on CPU, NCCL on GPU).

With Ray, everything that depends on the hardware is decided where the hardware is. Whether
workers get GPUs comes from the cluster's resources (the driver of `ray job submit` usually runs
on a CPU-only head node), and each worker checks that the GPU Ray gave it is usable. Checkpoints
go through Ray Train (`ray.train.report` with a `Checkpoint`; `CheckpointConfig` keeps the newest
`trainer.keep_checkpoints`) to `run_dir`, a local path or `s3://`, because a worker's local disk
is not the driver's. A worker group that Ray restarts after a failure resumes from the newest
one (`ray.train.get_checkpoint`), and the step log travels inside every checkpoint.

Data parallelism is exact: the global batches are one seeded sequence, each rank reads and trains
on its own rows of each (`ClipDataset(rows=...)`, `MovingMNISTStream(rows=...)`: a rank reads
only the frames of its rows), and DDP averages the gradients, so W workers compute the gradient
of the concatenated batch: the same run as one worker, up to float rounding. A task
that draws random inputs of its own (a GAN's codes) is told its rows (`TrainingTask.distribute`)
and draws theirs.

The family supplies its networks, optimisers and one step (`models.task.TrainingTask`); this
module supplies device, precision, DDP, gradient clipping, checkpoints, resume and logging.
"""

from __future__ import annotations

import json
import math
import random
import time
import uuid
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from models.task import TrainingTask
from pipeline.core.config import (
    StageFailed,
    UsageError,
    existing_path,
    required,
    to_plain,
    typed,
    write_json,
    write_result,
)
from pipeline.core.progress import progress, summary
from pipeline.datasets.moving_mnist import MovingMNISTStream
from pipeline.io import storage
from pipeline.io.loader import ClipDataset, to_model_input
from pipeline.io.store import FrameStore
from pipeline.runtime import checkpoint
from pipeline.runtime.cluster import address_of, ray_init
from pipeline.runtime.ray_train import checked_torch_config, worker_device


class TrainingFailed(StageFailed):
    """The run stopped for a reason that is not a user mistake (e.g. a NaN loss)."""


@dataclass
class TrainerConfig:
    backend: str = "local"
    workers: int = 1
    device: str = "auto"
    max_steps: int = 1000
    max_minutes: float | None = None
    batch_size: int = 32
    lr: float | None = None
    seed: int = 0
    precision: str = "auto"
    clip_grad_norm: float | None = 1.0
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 25
    resume: bool = False
    cache: str = "auto"
    loader_workers: int = 0
    stride: int = 1
    test_fraction: float = 0.1
    max_failures: int = 2
    compile: bool = False
    grad_compression: str = "none"  # DDP all-reduce of fp32 grads | fp16 | bf16 (half the bytes)


def _check(t: TrainerConfig) -> None:
    if t.grad_compression not in ("none", "fp16", "bf16"):
        raise UsageError(f"trainer.grad_compression={t.grad_compression}: use none, fp16 or bf16")
    if t.backend not in ("local", "ray"):
        raise UsageError(f"trainer.backend={t.backend}: use local or ray")
    if t.device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"trainer.device={t.device}: use auto, cpu or cuda")
    if t.backend == "local" and t.device == "cuda" and not torch.cuda.is_available():
        # with backend=ray the workers' nodes decide (see cluster_device)
        raise UsageError("trainer.device=cuda: no CUDA device is available on this machine")
    if t.precision not in ("auto", "fp32", "bf16"):
        raise UsageError(f"trainer.precision={t.precision}: use auto, fp32 or bf16")
    if t.cache not in ("auto", "true", "false"):
        raise UsageError(f"trainer.cache={t.cache}: use auto, true or false")
    for key in (
        "workers",
        "max_steps",
        "batch_size",
        "checkpoint_every",
        "keep_checkpoints",
        "log_every",
    ):
        if getattr(t, key) < 1:
            raise UsageError(f"trainer.{key}={getattr(t, key)}: must be >= 1")
    if t.batch_size % t.workers:
        raise UsageError(
            f"trainer.batch_size={t.batch_size} must be divisible by trainer.workers={t.workers}"
        )
    if t.backend == "local" and t.workers != 1:
        raise UsageError("trainer.workers > 1 needs trainer.backend=ray")


def run(cfg: DictConfig) -> dict:
    t = typed(cfg.trainer, TrainerConfig, "trainer")
    _check(t)
    run_dir = storage.resolve(str(required(cfg, "run_dir")))
    if storage.is_url(run_dir) and t.backend != "ray":
        raise UsageError(
            f"run_dir={run_dir}: a URL run directory needs trainer.backend=ray (Ray Train "
            "writes the checkpoints there); use a local folder with backend=local"
        )
    data = to_plain(cfg.data) if cfg.get("data") is not None else {"name": "store"}
    if data["name"] == "store":
        store = str(required(cfg, "store"))
        FrameStore.open(store)  # a clear error now rather than inside a worker
    elif data["name"] == "moving_mnist":
        store = "moving_mnist (generated on the fly)"
        if data.get("mnist_root") is not None:  # checked here, not inside a worker
            root = existing_path(data["mnist_root"], "data.mnist_root")
            if not (root / "MNIST" / "raw").is_dir():
                raise UsageError(
                    f"data.mnist_root={data['mnist_root']}: no MNIST dataset there (expected "
                    "torchvision's layout ROOT/MNIST/raw/*-ubyte); leave it unset for the "
                    "packaged 5,000 digits"
                )
    else:
        raise UsageError(f"data={data['name']}: train reads a store (data=store) or moving_mnist")
    model_options = to_plain(cfg.model)
    if t.lr is not None:
        model_options["lr"] = t.lr
    _build(model_options)  # unknown/mistyped model options fail here, as a usage error
    job = {
        # identifies this invocation: a worker that Ray Train restarts after a failure finds
        # its own run's last.pt and continues from it without trainer.resume=true
        "run_id": uuid.uuid4().hex,
        "store": store,
        "data": data,
        "run_dir": run_dir,
        "trainer": asdict(t),
        "model": model_options,
        "config": to_plain(cfg),
    }
    if t.backend == "ray":
        result = _run_ray(job, t)
        train_json = storage.join(run_dir, "train.json")
        storage.write_text(train_json, json.dumps(result, indent=2, sort_keys=True) + "\n")
        write_result(cfg, result, None)  # and report=PATH
    else:
        result = train_loop(job)  # wrote run_dir/train.json
        write_result(cfg, result, None)

    summary(
        f"train {model_options.get('name')} -> {run_dir}",
        {k: result[k] for k in ("steps", "loss", "samples_per_s", "seconds", "checkpoint")},
    )
    return result


def _build(model_options: dict[str, Any]):  # noqa: ANN202
    try:
        return checkpoint.build(model_options)
    except (TypeError, KeyError, ValueError) as e:
        raise UsageError(f"model: {e}") from None


def cluster_device(device: str, workers: int, resources: dict[str, float]) -> bool:
    """Whether Ray Train workers get a GPU each, decided from the cluster's `resources`
    (`ray.cluster_resources()`), never from the driver's own hardware: under `ray job submit`
    the driver runs on a head node that usually has no GPU while the workers' nodes do."""
    gpus = float(resources.get("GPU", 0.0))
    if device == "cpu":
        return False
    if device == "cuda" and gpus < 1:
        raise UsageError(
            f"trainer.device=cuda: the Ray cluster has no GPU ({describe_resources(resources)});"
            " add GPU nodes or use trainer.device=cpu"
        )
    use_gpu = gpus >= 1  # auto: GPUs when the cluster has them
    if use_gpu and gpus < workers:
        print(
            f"trainer.workers={workers} need {workers} GPUs; the cluster has {gpus:g} now: Ray "
            "Train waits until it has them (an autoscaler adds nodes; a fixed cluster waits "
            "for ever, so lower trainer.workers)"
        )
    return use_gpu


def describe_resources(resources: dict[str, float]) -> str:
    """'CPU 2, GPU 0, memory 3.1 GiB' from `ray.cluster_resources()` (node markers left out)."""
    parts = [f"CPU {resources.get('CPU', 0):g}", f"GPU {resources.get('GPU', 0):g}"]
    for key in ("memory", "object_store_memory"):
        if key in resources:
            parts.append(f"{key} {resources[key] / 2**30:.1f} GiB")
    named = sorted(
        k
        for k in resources
        if k not in ("CPU", "GPU", "memory", "object_store_memory") and not k.startswith("node:")
    )
    parts += [f"{k} {resources[k]:g}" for k in named]
    return ", ".join(parts)


def _run_ray(job: dict[str, Any], t: TrainerConfig) -> dict[str, Any]:
    import ray
    from ray.train import (
        CheckpointConfig,
        FailureConfig,
        RunConfig,
        ScalingConfig,
        TrainingFailedError,
    )
    from ray.train.torch import TorchTrainer

    ray_init(address_of(job["config"]), log_to_driver=True)  # cluster.address or $RAY_ADDRESS
    use_gpu = cluster_device(t.device, t.workers, ray.cluster_resources())
    job = {**job, "trainer": {**job["trainer"], "device": "cuda" if use_gpu else "cpu"}}
    run_dir = storage.resolve(job["run_dir"])
    ckpt_dir = storage.join(run_dir, "checkpoints")
    if not t.resume and storage.remove(ckpt_dir):
        # Ray Train would continue a run it finds there; a fresh run replaces it, as a fresh
        # local run replaces last.pt (and a checkpoint folder name never means two runs)
        print(
            f"a fresh run: replaced the checkpoints in {ckpt_dir} (trainer.resume=true continues)"
        )
    trainer = TorchTrainer(
        _ray_worker,
        train_loop_config=job,
        torch_config=checked_torch_config(),  # workers check their GPU before NCCL starts
        scaling_config=ScalingConfig(num_workers=t.workers, use_gpu=use_gpu),
        run_config=RunConfig(
            # Ray Train persists every reported checkpoint to run_dir/checkpoints/step-N/ and
            # restores a restarted worker group from the newest (same name, same storage)
            name="checkpoints",
            storage_path=run_dir,
            failure_config=FailureConfig(max_failures=t.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=t.keep_checkpoints),
        ),
    )
    try:
        fit = trainer.fit()
    except TrainingFailedError as e:
        raise _worker_error(e) from None
    if fit.checkpoint is None:
        raise TrainingFailed(f"Ray Train finished without a checkpoint in {run_dir}")
    # the user-facing files of a run, as the local backend writes them
    with fit.checkpoint.as_directory() as d:
        result = json.loads((Path(d) / "train.json").read_text())
        last = storage.join(run_dir, "checkpoints", "last.pt")
        storage.put(Path(d) / checkpoint.RAY_FILE, last)
        storage.put(Path(d) / "metrics.jsonl", storage.join(run_dir, "metrics.jsonl"))
        if (Path(d) / "tensorboard").is_dir():
            storage.put(Path(d) / "tensorboard", storage.join(run_dir, "tensorboard"))
    result["checkpoint"] = last
    return result


def _worker_error(e: Exception) -> Exception:
    """A worker's own UsageError/StageFailed (its one-line message) out of Ray Train's error
    (WorkerGroupError: per-rank failures; ControllerError: a failure while starting the group,
    e.g. the workers' GPU check), else a TrainingFailed that keeps Ray's text."""
    causes = (
        [failures[r] for r in sorted(failures)]
        if (failures := getattr(e, "worker_failures", None))
        else []
    )
    if getattr(e, "controller_failure", None) is not None:
        causes.append(e.controller_failure)  # type: ignore[attr-defined]
    for err in causes:
        for _ in range(4):  # Ray wraps the worker's exception (UserExceptionWithTraceback,
            # RayTaskError); unwrap to the worker's own
            inner = getattr(err, "_base_exc", None) or getattr(err, "cause", None)
            if inner is None or inner is err:
                break
            err = inner
        if isinstance(err, (UsageError, StageFailed)):
            return err
    return TrainingFailed(str(e))


def _ray_worker(job: dict[str, Any]) -> None:
    import ray.train

    ctx = ray.train.get_context()
    device = worker_device(job["trainer"]["device"] == "cuda")
    train_loop(job, rank=ctx.get_world_rank(), world=ctx.get_world_size(), device=device)


def make_update(optimizers: dict[str, torch.optim.Optimizer], clip_grad_norm: float | None) -> Any:
    """The `update(loss, name)` given to a task: zero grads, backward, clip by global norm, step."""
    params = {
        name: [p for g in opt.param_groups for p in g["params"]] for name, opt in optimizers.items()
    }

    def update(loss: torch.Tensor, name: str) -> None:
        opt = optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(params[name], clip_grad_norm)
        opt.step()

    return update


def compile_networks(task: TrainingTask) -> None:
    """trainer.compile: torch.compile every network of `task` in place (nn.Module.compile), so
    the modules, their state_dict keys and therefore checkpoints stay what they were. The first
    step compiles (slow); later steps run the fused kernels. Call before any DDP wrapping."""
    for net in task.networks.values():
        net.compile()


def _device(t: TrainerConfig) -> torch.device:
    """trainer.backend=local: this machine's device."""
    if t.device == "cpu" or (t.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", 0)


def train_loop(
    job: dict[str, Any], rank: int = 0, world: int = 1, device: torch.device | None = None
) -> dict[str, Any]:
    """The training loop; rank 0 writes checkpoints, logs and train.json (through `ray.train`
    when it runs on Ray Train workers, else into run_dir)."""
    t = TrainerConfig(**job["trainer"])
    run_dir = Path(job["run_dir"])
    store_ckpts: _Checkpoints = (
        _RayCheckpoints(rank, t.keep_checkpoints)
        if t.backend == "ray"
        else _RunDirCheckpoints(run_dir, t.keep_checkpoints)
    )
    device = device if device is not None else _device(t)
    torch.manual_seed(t.seed)
    np.random.seed(t.seed)
    random.seed(t.seed)

    task = _build(dict(job["model"]))
    task.networks.to(device)
    task.distribute(rank, world, t.seed)  # which rows of each global batch are this rank's
    start_step = 0
    ckpt = store_ckpts.latest(device, strict=t.resume)
    same_run = ckpt is not None and ckpt.get("run_id") == job.get("run_id")
    resumed = ckpt is not None and (t.resume or same_run)
    if not resumed:
        ckpt = None  # a fresh run replaces whatever is there
    if t.resume and ckpt is None and rank == 0:
        print(f"trainer.resume=true but there is no checkpoint in {store_ckpts.where}: from step 0")
    if ckpt is not None:
        for name, state in ckpt["networks"].items():
            task.networks[name].load_state_dict(state)
        start_step = int(ckpt["step"])
    if t.compile:
        compile_networks(task)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        for name in list(task.networks):
            net = task.networks[name]
            if any(p.requires_grad for p in net.parameters()):
                ids = [device.index] if device.type == "cuda" else None
                # gradients live in DDP's all-reduce buckets: no copy in and out per step
                ddp = DDP(net, device_ids=ids, gradient_as_bucket_view=True)
                if t.grad_compression != "none":
                    # gradients cross the network as 16-bit floats and are averaged back into
                    # fp32: half the all-reduce traffic, what bounds multi-worker scaling
                    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

                    hook = {
                        "fp16": default_hooks.fp16_compress_hook,
                        "bf16": default_hooks.bf16_compress_hook,
                    }[t.grad_compression]
                    ddp.register_comm_hook(None, hook)
                task.networks[name] = ddp
    optimizers = task.make_optimizers()
    if ckpt is not None:
        for name, state in ckpt["optimizers"].items():
            optimizers[name].load_state_dict(state)
        checkpoint.set_rng_state(ckpt["rng"])

    use_bf16 = t.precision == "bf16" or (t.precision == "auto" and device.type == "cuda")
    autocast = (
        torch.autocast(device_type=device.type, dtype=torch.bfloat16) if use_bf16 else nullcontext()
    )
    update = make_update(optimizers, t.clip_grad_norm)

    per_rank = t.batch_size // world
    rows = (rank * per_rank, (rank + 1) * per_rank)  # this rank's rows of every global batch
    data = job.get("data") or {"name": "store"}
    if data["name"] == "moving_mnist":
        # fresh sequences on the fly, the paper's protocol (no fixed training set to overfit)
        if task.needs_labels:
            raise UsageError("data=moving_mnist has no labels; train a labelled model on a store")
        if task.needs_keypoints:
            raise UsageError(
                "data=moving_mnist has no keypoints; train this model on a store with keypoints"
            )
        dataset: Any = MovingMNISTStream(
            task.clip_length,
            t.batch_size,
            num_digits=int(data.get("num_digits", 2)),
            seed=t.seed,
            root=data.get("mnist_root"),
            skip_batches=start_step,
            rows=rows,  # only this rank's slice is made
        )
    else:
        dataset = ClipDataset(
            job["store"],
            task.clip_length,
            t.batch_size,
            stride=t.stride,
            split="train",
            test_fraction=t.test_fraction,
            cache={"auto": "auto", "true": True, "false": False}[t.cache],
            seed=t.seed,
            epochs=None,
            drop_last=True,
            skip_batches=start_step,
            labels=task.needs_labels,
            keypoints=task.needs_keypoints,
            rows=rows,  # only the frames of this rank's rows are read
        )
    if isinstance(dataset, ClipDataset) and len(dataset) == 0:  # drop_last: no full batch
        raise UsageError(
            f"store {job['store']}: {dataset.num_clips} training clips of {task.clip_length} "
            f"frames, fewer than one batch (trainer.batch_size={t.batch_size}): lower the "
            "batch size or add videos"
        )
    if task.needs_labels and len(dataset.categories) > task.num_categories:
        raise UsageError(
            f"store {job['store']} has {len(dataset.categories)} label categories "
            f"({dataset.categories[:8]}...) but model.num_categories={task.num_categories}"
        )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        num_workers=t.loader_workers,
        persistent_workers=t.loader_workers > 0,
    )

    # label names (for generate and evaluate) and the invocation, for restarts (see run())
    extra = {"categories": list(dataset.categories), "run_id": job.get("run_id")}
    writer = _Logs(store_ckpts.log_dir, start_step) if rank == 0 else None
    samples = 0
    wall0 = time.perf_counter()
    deadline = None if t.max_minutes is None else wall0 + 60.0 * t.max_minutes
    step = start_step
    loss_value = float("nan")
    bar_cm = _progress(rank, t.max_steps, start_step, t.max_minutes)
    with bar_cm as bar:
        for batch in loader:
            if step >= t.max_steps:
                break
            # the batch holds this rank's rows of the global batch only
            if isinstance(batch, dict):  # frames and e.g. "label", "keypoints"
                x: Any = {
                    k: to_model_input(v, device) if k == "frames" else v.to(device)
                    for k, v in batch.items()
                }
            else:
                x = to_model_input(batch, device)
            for net in task.networks.values():
                net.train()
            with autocast:
                logs = task.training_step(x, step, update)
            stop = deadline is not None and time.perf_counter() > deadline
            if world > 1:
                # One collective per step for both: the global batch's logged values (the mean
                # over ranks of their slices' values) and whether any rank hit the deadline
                # (the last entry; summed, > 0 if any). Each collective is a barrier.
                keys = sorted(logs)
                vals = torch.tensor([float(logs[k]) for k in keys] + [float(stop)], device=device)
                torch.distributed.all_reduce(vals)
                logs = dict(zip(keys, (vals[:-1] / world).tolist()))
                stop = bool(vals[-1].item() > 0)
            loss_value = float(logs["loss"])
            if not math.isfinite(loss_value):
                raise TrainingFailed(
                    f"loss is {loss_value} at step {step}: stopped; the last good checkpoint "
                    f"in {store_ckpts.where} is kept. Lower the learning "
                    f"rate (trainer.lr) or clip harder (trainer.clip_grad_norm)."
                )
            step += 1
            samples += t.batch_size
            elapsed = time.perf_counter() - wall0
            if writer is not None:
                rate = samples / max(elapsed, 1e-9)
                if step % t.log_every == 0 or step == t.max_steps or stop:
                    writer.log(step, {**logs, "samples_per_s": rate})
                if bar is not None:
                    bar.advance(1, loss=loss_value, samples_s=round(rate, 1))
            final = stop or step >= t.max_steps
            if step % t.checkpoint_every == 0 and not final:
                state = _State(task, optimizers, step, job["config"], extra)
                store_ckpts.save(state, periodic=True, writer=writer, metrics={"step": step})
            if stop:
                break
    seconds = time.perf_counter() - wall0
    result = {
        "stage": "train",
        "model": job["model"].get("name"),
        "store": job["store"],
        "run_dir": job["run_dir"],
        "backend": t.backend,
        "workers": world,
        "device": str(device),
        "steps": step,
        "start_step": start_step,
        "resumed": resumed,
        "loss": loss_value,
        "seconds": round(seconds, 3),
        "samples_per_s": round(samples / max(seconds, 1e-9), 2),
        "frames_read": int(getattr(dataset, "frames_read", 0)),  # by rank 0 from the store
        "checkpoint": store_ckpts.where,
    }
    state = _State(task, optimizers, step, job["config"], extra)
    # every rank takes part (a Ray report is a barrier); rank 0 writes
    store_ckpts.save(state, periodic=step % t.checkpoint_every == 0, writer=writer, metrics=result)
    if writer is not None:
        writer.close()
        if t.backend == "local":
            write_json(run_dir / "train.json", result)
    store_ckpts.close()
    return result


@dataclass
class _State:
    """What a checkpoint holds (see pipeline.runtime.checkpoint.save)."""

    task: TrainingTask
    optimizers: dict[str, torch.optim.Optimizer]
    step: int
    config: dict[str, Any]
    extra: dict[str, Any]

    def save(self, path: Path) -> None:
        checkpoint.save(path, self.task, self.optimizers, self.step, self.config, self.extra)


class _Checkpoints:
    """Where a run's checkpoints and step log live; `latest` is what a (re)started rank resumes
    from, `save` is called by every rank at the same steps."""

    where: str
    log_dir: Path

    def latest(self, device: torch.device, strict: bool) -> dict[str, Any] | None:
        raise NotImplementedError

    def close(self) -> None:
        """Release scratch space (the run's files stay)."""

    def save(
        self, state: _State, periodic: bool, writer: _Logs | None, metrics: dict[str, Any]
    ) -> None:
        raise NotImplementedError


class _RunDirCheckpoints(_Checkpoints):
    """trainer.backend=local: run_dir/checkpoints/last.pt, plus step-N.pt every
    trainer.checkpoint_every steps of which the newest trainer.keep_checkpoints are kept."""

    def __init__(self, run_dir: Path, keep: int) -> None:
        self.dir = run_dir / "checkpoints"
        self.last = self.dir / "last.pt"
        self.where = str(self.last)
        self.log_dir = run_dir
        self.keep = keep

    def latest(self, device: torch.device, strict: bool) -> dict[str, Any] | None:
        if not self.last.exists():
            return None
        try:
            return checkpoint.load(self.last, map_location=device)
        except UsageError:
            if strict:
                raise
            return None  # a fresh run replaces an unreadable file

    def save(
        self, state: _State, periodic: bool, writer: _Logs | None, metrics: dict[str, Any]
    ) -> None:
        if writer is None:  # rank 0 writes
            return
        state.save(self.last)
        if periodic:
            state.save(self.dir / f"step-{state.step:08d}.pt")
            # zero-padded steps sort by name; written before the old ones go, so a crash in
            # between leaves one too many, never one too few
            for old in sorted(self.dir.glob("step-*.pt"))[: -self.keep]:
                old.unlink(missing_ok=True)


class _RayCheckpoints(_Checkpoints):
    """trainer.backend=ray: each checkpoint is reported to Ray Train as a folder (checkpoint.pt,
    the step log metrics.jsonl and the TensorBoard events), which Ray persists to
    run_dir/checkpoints/step-N/ and prunes to the newest keep_checkpoints. Rank 0 logs into a
    scratch folder on its own node: only what is in a checkpoint outlives the worker."""

    FILE = checkpoint.RAY_FILE

    def __init__(self, rank: int, keep: int) -> None:
        import tempfile

        self.rank = rank
        self.keep = keep
        self.where = "Ray Train's storage (run_dir/checkpoints)"
        self.log_dir = Path(tempfile.mkdtemp(prefix="framecast-train-"))

    def latest(self, device: torch.device, strict: bool) -> dict[str, Any] | None:
        import ray.train

        found = ray.train.get_checkpoint()
        if found is None:
            return None
        with found.as_directory() as d:
            ckpt = checkpoint.load(Path(d) / self.FILE, map_location=device)
            for name in ("metrics.jsonl", "tensorboard"):
                if (Path(d) / name).exists():
                    storage.put(Path(d) / name, str(self.log_dir / name))
        return ckpt

    def save(
        self, state: _State, periodic: bool, writer: _Logs | None, metrics: dict[str, Any]
    ) -> None:
        import tempfile

        import ray.train

        if self.rank != 0:
            ray.train.report(metrics)
            return
        assert writer is not None
        writer.flush()
        with tempfile.TemporaryDirectory(prefix="framecast-ckpt-") as d:
            state.save(Path(d) / self.FILE)
            for name in ("metrics.jsonl", "tensorboard"):
                if (self.log_dir / name).exists():
                    storage.put(self.log_dir / name, str(Path(d) / name))
            write_json(Path(d) / "train.json", metrics)
            ray.train.report(
                metrics,
                checkpoint=ray.train.Checkpoint.from_directory(d),
                checkpoint_dir_name=f"step-{state.step:08d}",
            )

    def close(self) -> None:
        import shutil

        shutil.rmtree(self.log_dir, ignore_errors=True)


class _Logs:
    """metrics.jsonl (appended, so a resumed run continues the file) and TensorBoard scalars."""

    def __init__(self, run_dir: Path, start_step: int) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / "metrics.jsonl"
        if path.exists():
            # drop records past the checkpoint we resume from: they will be recomputed
            keep = [
                ln
                for ln in path.read_text().splitlines()
                if ln and json.loads(ln)["step"] <= start_step
            ]
            path.write_text("".join(k + "\n" for k in keep))
        self.file = path.open("a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb: Any = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step + 1)
        except ImportError:
            self.tb = None

    def log(self, step: int, values: dict[str, float]) -> None:
        rec = {"step": step, "time": time.time(), **{k: float(v) for k, v in values.items()}}
        self.file.write(json.dumps(rec) + "\n")
        self.file.flush()
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(f"train/{k}", float(v), step)

    def flush(self) -> None:
        self.file.flush()
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


def _progress(rank: int, total: int, start: int, minutes: float | None) -> Any:
    if rank != 0:
        return nullcontext(None)

    limit = None if minutes is None else 60.0 * minutes
    return progress("train", total, "steps", completed=start, time_limit=limit)
