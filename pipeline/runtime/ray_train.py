"""What a Ray Train worker decides on its own node: its device, checked before DDP starts.

`checked_torch_config()` is Ray Train's torch backend with one addition: before the process
group is set up (NCCL on GPU), every worker checks on its own node that the GPU Ray assigned it
is one PyTorch can use (`worker_device`), so a node whose GPU PyTorch cannot see fails with a
message naming the node, the GPU and the likely cause rather than with NCCL's. Ray is imported
inside the functions: the local training path never imports it.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from pipeline.core.errors import StageFailed


class WorkerDeviceError(StageFailed):
    """A worker's node cannot run the device Ray placed it for."""


def worker_device(use_gpu: bool) -> torch.device:
    """The device of this Ray Train worker, checked here on the worker's node: the GPU Ray
    assigned it must be one PyTorch can use."""
    if not use_gpu:
        return torch.device("cpu")
    import ray
    from ray.train.torch import get_device

    if not torch.cuda.is_available():
        node = ray.get_runtime_context().get_node_id()[:12]
        fix = (
            f"torch {torch.__version__} is a CPU-only build: install a CUDA build there"
            if torch.version.cuda is None
            else f"torch {torch.__version__} is built for CUDA {torch.version.cuda}: check "
            f"the node's NVIDIA driver (CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', '')!r})"
        )
        raise WorkerDeviceError(
            f"Ray placed this worker on a GPU (node {node}, GPU ids {ray.get_gpu_ids()}) but "
            f"PyTorch there sees no CUDA device; {fix}; or use trainer.device=cpu"
        )
    return get_device()


def checked_torch_config() -> Any:
    """A `ray.train.torch.TorchConfig` whose workers run `worker_device` before the process
    group starts (the classes travel to Ray's controller by value, with cloudpickle)."""
    from ray.train.torch import TorchConfig
    from ray.train.torch.config import _TorchBackend

    class CheckedTorchBackend(_TorchBackend):
        def on_start(self, worker_group: Any, backend_config: TorchConfig) -> None:
            if worker_group.get_resources_per_worker().get("GPU", 0) > 0:
                worker_group.execute(worker_device, True)
            super().on_start(worker_group, backend_config)

    class CheckedTorchConfig(TorchConfig):
        @property
        def backend_cls(self) -> type:
            return CheckedTorchBackend

    return CheckedTorchConfig()
