"""Plain PyTorch model families. No Ray, no PyAV, no zarr, no files.

Each family lives in one module with its networks, its losses and a `TrainingTask` subclass
that the generic trainer (`pipeline/stages/train.py`) drives; the task's `inference_model()`
implements the protocol of the family's kind (`models/protocols.py`), the only thing the
pipeline's other stages rely on. `FAMILIES` is the one registry: `model.name` (the key of
`configs/model/*.yaml`) -> (task class, kind). Adding a family: its module, one line here, one
config, its tests (README, "Adding a model family").
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

from models.protocols import KINDS, Kind
from models.task import TrainingTask


class Family(NamedTuple):
    task: str  # "module:TaskClass", imported on first use (a family's import cost is paid lazily)
    kind: Kind  # which protocol of models/protocols.py its inference model implements


FAMILIES: dict[str, Family] = {
    "lstm_autoencoder": Family("models.lstm_autoencoder:LSTMAutoencoderTask", "predictor"),
    "hierarchical": Family("models.hierarchical:HierarchicalTask", "predictor"),
    "mocogan": Family("models.mocogan:MoCoGANTask", "generator"),
    "transformer_predictor": Family(
        "models.transformer_predictor:TransformerPredictorTask", "predictor"
    ),
    "video_classifier": Family("models.video_classifier:VideoClassifierTask", "classifier"),
}


def _known() -> str:
    return ", ".join(sorted(FAMILIES))


def task_class(name: str) -> type[TrainingTask]:
    """The training task class of family `name` (KeyError naming the known families)."""
    if name not in FAMILIES:
        raise KeyError(f"unknown model '{name}' (known: {_known()})")
    module_name, class_name = FAMILIES[name].task.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def kind_of(name: str) -> Kind:
    """ "predictor", "generator" or "classifier" for family `name`."""
    if name not in FAMILIES:
        raise KeyError(f"unknown model '{name}' (known: {_known()})")
    return FAMILIES[name].kind


def families_of(kind: str) -> list[str]:
    """The registered families of one kind, sorted (for messages)."""
    return sorted(name for name, f in FAMILIES.items() if f.kind == kind)


def build_task(name: str, **options: Any) -> TrainingTask:
    """Instantiate the training task of family `name` with its config options."""
    return task_class(name)(**options)


__all__ = [
    "FAMILIES",
    "KINDS",
    "Family",
    "Kind",
    "TrainingTask",
    "build_task",
    "families_of",
    "kind_of",
    "task_class",
]
