"""The contract between a model family and the generic trainer.

A family owns its networks, optimisers and one training step; the trainer (pipeline/stages/train.py)
owns everything else: device placement, precision, DDP wrapping, gradient clipping,
checkpoints, resume and logging. Keeping the step inside the family is what lets a GAN with
three optimisers and an autoencoder with one share one trainer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

import torch
from torch import nn

# update(loss, optimizer_name): zero the optimizer's grads, backpropagate `loss`, clip the
# gradients of that optimizer's parameters by global norm, and step it. Supplied by the trainer.
UpdateFn = Callable[[torch.Tensor, str], None]


ConfigT = TypeVar("ConfigT")


def family_config(config: type[ConfigT], family: str, options: dict[str, Any]) -> ConfigT:
    """A family's config dataclass from its model options; an option the dataclass lacks is a
    TypeError naming it and the known ones (a typo in model.KEY=... must not pass silently)."""
    known = [f.name for f in fields(config)]  # type: ignore[arg-type]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(
            f"unknown {family} option(s): {', '.join(unknown)} (known: {', '.join(known)})"
        )
    return config(**options)


class MissingWeights(ValueError):
    """Pretrained weights the user must supply are not on disk (a usage error)."""


class TrainingTask:
    """Base class of a family's training task.

    Subclasses set `self.networks` (an nn.ModuleDict of everything that has weights) in
    `__init__`. The trainer moves `networks` to the device, may replace entries with DDP
    wrappers, and saves `networks.state_dict()` in checkpoints; so a subclass always reaches
    its networks through `self.networks[name]`, never through a cached attribute.
    """

    networks: nn.ModuleDict
    # Frames per training clip; the loader cuts clips of this length from the store.
    clip_length: int = 20
    # Whether `training_step` needs each clip's category: then `batch` is a dict
    # {"frames": (B, T, C, H, W), "label": (B,) long}, labels indexing `categories` below.
    needs_labels: bool = False
    # Whether `training_step` needs each clip's per-frame keypoints from the store: then `batch`
    # is a dict with "keypoints" (B, T, K, 2) float32 (NaN where missing) beside "frames".
    needs_keypoints: bool = False
    # How many categories the task was built for (0: none); the trainer checks the data has them.
    num_categories: int = 0
    # The networks `inference_model()` uses (None: all): what a checkpoint ships to inference
    # workers (a GAN's workers need no discriminator).
    inference_networks: tuple[str, ...] | None = None

    # Frozen pretrained networks (not checkpointed; the user supplies their weights files).
    # Models never read files: `pipeline.runtime.checkpoint.build` asks `pretrained_files(options)`
    # which ones the options need, loads each file's state dict and passes them to the
    # constructor as `pretrained={name: state_dict}`. A name whose option is unset (None) is
    # looked up in PyTorch Hub's checkpoint cache under `default_files[name]`, if it has one.
    default_files: dict[str, str] = {}
    # Where this process stands in a data-parallel run (set by `distribute`): rank of world,
    # and the run's seed. A task that draws random inputs (a GAN's codes) draws those of its
    # rank's rows of the global batch, so W workers train as one on the concatenated batch.
    rank: int = 0
    world: int = 1
    seed: int = 0

    def distribute(self, rank: int, world: int, seed: int) -> None:
        """Called by the trainer before the first step: this process is rank `rank` of `world`
        data-parallel processes of a run seeded `seed`, holding rows rank·n .. (rank+1)·n - 1
        of every global batch of W·n clips. The base class records it."""
        self.rank, self.world, self.seed = int(rank), int(world), int(seed)

    @staticmethod
    def pretrained_files(options: dict[str, Any]) -> dict[str, str | None]:
        """name -> the option's value (the user's weights file, or None) for each frozen
        pretrained network that these options need. Default: none."""
        return {}

    @staticmethod
    def missing_weights(name: str, given: str | None, default: str | None) -> MissingWeights:
        """The error for weights `name` not found (`given`: the option, `default`: where the
        default file was looked for, if anywhere); families override it to say how to get them."""
        return MissingWeights(f"pretrained weights '{name}' not found ({given or default})")

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimisers by name; the names are the ones `training_step` passes to `update`."""
        raise NotImplementedError

    def training_step(self, batch: torch.Tensor, step: int, update: UpdateFn) -> dict[str, float]:
        """One optimisation step on `batch` (B, T, C, H, W) float in [0, 1]; returns scalars to log.

        The returned dict must contain "loss" (the value the trainer watches for NaN).
        """
        raise NotImplementedError

    def unwrap(self, name: str) -> nn.Module:
        """The network `name` without any DDP wrapper (for inference and sampling)."""
        net = self.networks[name]
        return getattr(net, "module", net)

    def inference_model(self) -> nn.Module:
        """The module used by evaluate/predict/serve (a predictor or a generator)."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """The options this task was built with (saved in checkpoints to rebuild it)."""
        raise NotImplementedError
