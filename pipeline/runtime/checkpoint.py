"""The one checkpoint format: weights, optimisers, step, RNG states and the resolved config.

Everything in a checkpoint is a tensor or a plain Python value, so it loads with
`torch.load(weights_only=True)`: nothing in it is unpickled as code.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models import FAMILIES, TrainingTask, build_task, task_class
from pipeline.core.errors import UsageError
from pipeline.io import storage

FORMAT = "framecast-checkpoint/1"
RAY_FILE = "checkpoint.pt"  # the file in each checkpoint folder that Ray Train persists


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as weights_only-loadable values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos)},
        "numpy_gauss": [int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate((state["python_version"], tuple(state["python"]), None))
    has_gauss, gauss = state["numpy_gauss"]
    keys = state["numpy"]["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, state["numpy"]["pos"], int(has_gauss), gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(
    path: str | os.PathLike[str],
    task: TrainingTask,
    optimizers: dict[str, torch.optim.Optimizer],
    step: int,
    config: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> None:
    """Write a checkpoint atomically (tmp + rename): a crash never leaves a torn last.pt."""
    networks = {name: task.unwrap(name).state_dict() for name in task.networks}
    body = {
        "format": FORMAT,
        "model": task.config()["name"],
        "model_config": task.config(),
        "networks": networks,
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "step": int(step),
        "rng": rng_state(),
        "config": config,
        **(extra or {}),
    }
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    torch.save(body, tmp)
    os.replace(tmp, p)


def load(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu", mmap: bool = False
) -> dict[str, Any]:
    """Load a framecast checkpoint with weights_only=True; a clear UsageError otherwise.
    `path`: a .pt file, a folder that Ray Train persisted (run_dir/checkpoints/step-N/, which
    holds checkpoint.pt) or an fsspec URL of either (s3://...). `mmap`: map a local file
    instead of reading it (inference: the optimiser state it holds is never paged in)."""
    source: Any
    if storage.is_url(path):
        url = str(path)
        source = storage.read_bytes(url) or storage.read_bytes(storage.join(url, RAY_FILE))
        if source is None:
            raise UsageError(f"checkpoint={path}: no such object")
        mmap = False
    else:
        source = Path(os.path.expanduser(str(path)))
        if source.is_dir() and (source / RAY_FILE).is_file():
            source = source / RAY_FILE
        if not source.is_file():
            raise UsageError(f"checkpoint={path}: no such file")
    try:
        ckpt = torch.load(source, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(
            f"checkpoint={path}: not a loadable framecast checkpoint ({first})"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UsageError(f"checkpoint={path}: not a framecast checkpoint (format {FORMAT})")
    return ckpt


def build(options: dict[str, Any]) -> TrainingTask:
    """Build the task of `options` (a model config: `name` and the family's options), loading
    the frozen pretrained weights it needs from the user's files (`pretrained_files`).

    Models never read files; this is the one place that builds a task for the pipeline. A
    weights file that is not on disk raises the family's `MissingWeights` (a ValueError).
    """
    name = options.get("name")
    if name not in FAMILIES:
        return build_task(**options)  # its KeyError names the known models
    cls = task_class(name)
    pretrained: dict[str, Any] = {}
    for key, given in cls.pretrained_files(options).items():
        default = cls.default_files.get(key)
        hub = Path(torch.hub.get_dir()) / "checkpoints" / default if default else None
        path = Path(os.path.expanduser(given)) if given else hub
        if path is None or not path.is_file():
            raise cls.missing_weights(key, given, None if hub is None else str(hub))
        pretrained[key] = torch.load(path, map_location="cpu", weights_only=True)
    if not pretrained:
        return build_task(**options)
    return build_task(**options, pretrained=pretrained)


def restore_task(ckpt: dict[str, Any], device: str | torch.device = "cpu") -> TrainingTask:
    """Rebuild the task recorded in a checkpoint and load its weights."""
    task = build(ckpt["model_config"])
    for name, state in ckpt["networks"].items():
        task.networks[name].load_state_dict(state)
    task.networks.to(device)
    return task
