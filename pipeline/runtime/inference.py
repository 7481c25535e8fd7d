"""Using a trained model: the one place that loads a checkpoint for inference, picks the device
and the precision, checks the model's kind, and steps live sessions.

    loaded = load_model("run/checkpoints/last.pt", device="auto", want=("predictor",),
                        stage="predict")
    with loaded.inference():
        future = loaded.model.predict(to_model(frames, loaded.device)[None], loaded.horizon)

`loaded.model` implements the protocol of `loaded.kind` (models/protocols.py); stages never read
a family's internals, and a checkpoint of a kind the stage does not take is one UsageError that
names the checkpoint, its family and what the stage accepts. The checkpoint file is read once
(memory-mapped: the optimiser state it also holds is never paged in).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from models import FAMILIES, families_of, kind_of
from models.protocols import KINDS, PROTOCOLS, Kind, Predictor, StreamSession
from pipeline.core.errors import UsageError
from pipeline.core.frames import to_model, to_uint8
from pipeline.runtime import checkpoint

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(name: str | torch.device = "auto") -> torch.device:
    """ "auto" (CUDA when there is one, else the CPU), "cpu", "cuda" or "cuda:N"."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device={name}: no CUDA device is available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UsageError(f"device={name}: use auto, cpu or cuda") from None


@dataclass
class CheckpointInfo:
    """What a checkpoint holds, without its model built: enough to plan a stage."""

    path: str  # where it came from ("<memory>" for a payload)
    family: str  # model.name, a key of models.FAMILIES
    kind: Kind
    step: int
    model_config: dict[str, Any]
    config: dict[str, Any]  # the training run's resolved config
    categories: list[str] = field(default_factory=list)  # category names (conditional models)

    @property
    def frame_size(self) -> int:
        return int(self.model_config.get("frame_size", 64))

    @property
    def channels(self) -> int:
        return int(self.model_config.get("channels", 3))

    @property
    def context(self) -> int:
        """Observed frames the predictor was trained on."""
        return int(self.model_config.get("context", 10))

    @property
    def horizon(self) -> int:
        """Future frames the predictor was trained on."""
        return int(self.model_config.get("horizon", 10))

    @property
    def length(self) -> int:
        """Frames of a generated video by default."""
        return int(self.model_config.get("length", 16))

    @property
    def num_categories(self) -> int:
        return int(self.model_config.get("num_categories", 0) or 0)

    @property
    def test_fraction(self) -> float:
        """The held-out share of the store's videos in training (the evaluation split)."""
        return float((self.config.get("trainer") or {}).get("test_fraction", 0.1))


@dataclass
class LoadedModel(CheckpointInfo):
    """A checkpoint's inference model, built, loaded, in eval mode on `device`."""

    model: nn.Module = None  # type: ignore[assignment]  # implements PROTOCOLS[kind]
    device: torch.device = torch.device("cpu")
    precision: str = "fp32"
    networks: dict[str, Any] = field(default_factory=dict)  # the inference networks' weights

    @contextlib.contextmanager
    def inference(self, streaming: bool = False) -> Iterator[None]:
        """no_grad, the precision's autocast, and for live sessions on the CPU PyTorch's
        native LSTM kernel (oneDNN's reorders its weights on every call: ~20x slower for one
        step at batch 1, 38 ms vs 2 ms at 512 units on the 2-core CPU)."""
        dtype = PRECISIONS[self.precision]
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.no_grad())
            if dtype is not None:
                stack.enter_context(torch.autocast(self.device.type, dtype=dtype))
            if streaming and self.device.type == "cpu":
                stack.enter_context(native_lstm())
            yield

    def payload(self) -> dict[str, Any]:
        """What an inference worker needs to rebuild this model (`load_model(payload)`): the
        config and the inference networks' weights; no optimiser state."""
        return {
            "format": checkpoint.FORMAT,
            "model": self.family,
            "model_config": self.model_config,
            "networks": self.networks,
            "step": self.step,
            "categories": self.categories,
            "config": {"trainer": {"test_fraction": self.test_fraction}},
        }


def _read(source: str | os.PathLike[str] | dict[str, Any]) -> tuple[dict[str, Any], str]:
    if isinstance(source, dict):
        return source, "<memory>"
    return checkpoint.load(source, mmap=True), str(source)


def _info(ckpt: dict[str, Any], path: str) -> CheckpointInfo:
    family = str(ckpt.get("model"))
    if family not in FAMILIES:
        raise UsageError(
            f"checkpoint={path}: a '{family}' model, which this framecast does not know "
            f"(known: {', '.join(sorted(FAMILIES))})"
        )
    return CheckpointInfo(
        path=path,
        family=family,
        kind=kind_of(family),
        step=int(ckpt.get("step", 0)),
        model_config=dict(ckpt["model_config"]),
        config=dict(ckpt.get("config") or {}),
        categories=[str(c) for c in ckpt.get("categories") or []],
    )


def check_kind(info: CheckpointInfo, want: Sequence[str], stage: str | None) -> None:
    """UsageError unless the checkpoint's kind is one of `want`."""
    if info.kind in want:
        return
    takes = " or a ".join(want)
    examples = ", ".join(name for k in want for name in families_of(k))
    who = f"framecast {stage}" if stage else "this stage"
    raise UsageError(
        f"checkpoint={info.path} holds a {info.family} model (a {info.kind}); {who} takes a "
        f"{takes} checkpoint ({examples})"
    )


def inspect_checkpoint(
    source: str | os.PathLike[str] | dict[str, Any],
    want: Sequence[str] | None = None,
    stage: str | None = None,
) -> CheckpointInfo:
    """The checkpoint's family, kind and configs, its model not built (a server's driver plans
    with this; its replicas `load_model`)."""
    info = _info(*_read(source))
    if want is not None:
        check_kind(info, want, stage)
    return info


def load_model(
    source: str | os.PathLike[str] | dict[str, Any],
    device: str | torch.device = "auto",
    want: Sequence[str] | None = None,
    stage: str | None = None,
    precision: str = "fp32",
) -> LoadedModel:
    """Load a checkpoint (a path, or a `LoadedModel.payload()`) once and build its inference
    model on `device` ("auto": CUDA when there is one). `want`: the kinds the calling stage
    takes (default: any); `precision`: fp32, bf16 or fp16 (autocast in `inference()`)."""
    if precision not in PRECISIONS:
        raise UsageError(f"precision={precision}: use {', '.join(PRECISIONS)}")
    ckpt, path = _read(source)
    info = _info(ckpt, path)
    if want is not None:
        unknown = [k for k in want if k not in KINDS]
        assert not unknown, f"unknown kinds {unknown}"
        check_kind(info, want, stage)
    dev = pick_device(device)
    try:
        task = checkpoint.build(info.model_config)
    except (KeyError, TypeError, ValueError) as e:
        raise UsageError(f"checkpoint={path}: cannot rebuild its model ({e})") from None
    keep = task.inference_networks
    networks = {
        name: state
        for name, state in ckpt["networks"].items()
        if keep is None or name in keep or name not in task.networks
    }
    for name, state in networks.items():
        try:
            task.networks[name].load_state_dict(state)
        except (KeyError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0]
            raise UsageError(
                f"checkpoint={path}: weights of '{name}' do not fit ({first})"
            ) from None
    model = task.inference_model().to(dev).eval()
    protocol = PROTOCOLS[info.kind]
    if not isinstance(model, protocol):  # a family that does not keep its registry promise
        raise TypeError(f"{info.family}: its inference model is not a {protocol.__name__}")
    networks = {k: {n: t.detach() for n, t in v.items()} for k, v in networks.items()}
    return LoadedModel(
        **vars(info), model=model, device=dev, precision=precision, networks=networks
    )


# --------------------------------------------------------------------------- live sessions
@contextlib.contextmanager
def native_lstm() -> Iterator[None]:
    """Run CPU LSTMs on PyTorch's native kernel instead of oneDNN's (restored after)."""
    prev = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = prev


def open_session(loaded: LoadedModel, batch_size: int = 1) -> StreamSession:
    """A live session of a predictor checkpoint (UsageError when it cannot stream, e.g. an
    autoencoder trained without its future predictor)."""
    check_kind(loaded, ("predictor",), "stream")
    model: Predictor = loaded.model  # type: ignore[assignment]
    try:
        return model.stream(batch_size)
    except ValueError as e:
        raise UsageError(f"checkpoint={loaded.path}: {e}") from None


def step_sessions(
    loaded: LoadedModel,
    sessions: list[StreamSession],
    frames: list[np.ndarray],
    horizon: int,
) -> tuple[list[StreamSession], np.ndarray | None]:
    """Step sessions through uint8 frames and predict `horizon` frames, as one batch.

    Either several sessions with one frame (1, H, W, C) each (they merge into one batch, step
    together and split back: equal `batch_key()` required), or one session with N frames
    (N, H, W, C), stepped in order. Returns the sessions (new objects when merged) and the
    predictions, uint8 (B, horizon, H, W, C), or None for horizon 0.
    """
    with loaded.inference(streaming=True):
        if len(sessions) == 1:
            stream = sessions[0]
            x = to_model(frames[0], loaded.device)  # (N, C, H, W)
            for i in range(x.shape[0]):
                stream.step(x[i : i + 1])
        else:
            stream = type(sessions[0]).merge(sessions)
            stream.step(to_model(np.concatenate(frames), loaded.device))  # (B, C, H, W)
        pred = to_uint8(stream.predict(horizon)) if horizon > 0 else None
    return (stream.split() if len(sessions) > 1 else sessions), pred


class LocalSession:
    """One live session of a predictor in this process, uint8 frames in and out: what
    `framecast stream` runs without a server (`push` has the signature of the serve client's
    RemoteSession)."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.session: StreamSession | None = open_session(loaded)

    def push(self, frame: np.ndarray, horizon: int) -> np.ndarray:
        """Step through a uint8 frame (H, W, C) (or frames (N, H, W, C)); the next `horizon`
        frames (horizon, H, W, C) uint8."""
        if self.session is None:
            raise RuntimeError("push() on a closed session")
        a = frame[None] if frame.ndim == 3 else frame
        (self.session,), pred = step_sessions(self.loaded, [self.session], [a], horizon)
        if pred is None:
            return np.zeros((0, *a.shape[1:]), np.uint8)
        return pred[0]

    def close(self) -> None:
        self.session = None


__all__ = [
    "CheckpointInfo",
    "LoadedModel",
    "LocalSession",
    "check_kind",
    "inspect_checkpoint",
    "load_model",
    "native_lstm",
    "open_session",
    "pick_device",
    "step_sessions",
]
