"""Plain PyTorch model families. No Ray, no PyAV, no zarr, no files.

Each family lives in one module with its networks, its losses and a `TrainingTask` subclass
that the generic trainer in `pipeline/train.py` drives. `build_task(name, **options)` looks a
family up by the `model.name` key of its Hydra config.
"""

from __future__ import annotations

import importlib
from typing import Any

from models.task import TrainingTask

# model.name -> "module:TaskClass"; modules are imported lazily so a family's import cost is
# paid only when it is used.
TASKS: dict[str, str] = {
    "lstm_autoencoder": "models.lstm_autoencoder:LSTMAutoencoderTask",
    "mocogan": "models.mocogan:MoCoGANTask",
    "hierarchical": "models.hierarchical:HierarchicalTask",
    "video_classifier": "models.video_classifier:VideoClassifierTask",
}


def build_task(name: str, **options: Any) -> TrainingTask:
    """Instantiate the training task of family `name` with its config options."""
    if name not in TASKS:
        raise KeyError(f"unknown model '{name}' (known: {', '.join(sorted(TASKS))})")
    module_name, class_name = TASKS[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**options)


__all__ = ["TASKS", "TrainingTask", "build_task"]
