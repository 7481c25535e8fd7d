"""Ray Train's torch backend with one addition: before the process group is set up (NCCL on
GPU), every worker checks on its own node that the GPU Ray assigned it is usable, so a node
whose GPU PyTorch cannot see fails with a message that names it rather than NCCL's. Imported
only with trainer.backend=ray (the local path never imports Ray)."""

from __future__ import annotations

from typing import Any

from ray.train.torch import TorchConfig
from ray.train.torch.config import _TorchBackend


class _CheckedTorchBackend(_TorchBackend):
    def on_start(self, worker_group: Any, backend_config: TorchConfig) -> None:
        if worker_group.get_resources_per_worker().get("GPU", 0) > 0:
            from pipeline.stages.train import worker_device

            worker_group.execute(worker_device, True)
        super().on_start(worker_group, backend_config)


class CheckedTorchConfig(TorchConfig):
    """TorchConfig whose workers check their GPU first (see the module docstring)."""

    @property
    def backend_cls(self) -> type[_TorchBackend]:
        return _CheckedTorchBackend
