"""What both paths of `framecast evaluate` (predictors in `__init__`, generators in
`generator.py`) share: the `evaluate:` keys, the default output folder and the check that the
held-out digits were never training digits. A module of its own so that the two paths import it
without importing each other."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.config import UsageError
from pipeline.datasets.mnist import FULL_SOURCE, PACKAGED_SOURCE, digit_source
from pipeline.io.store import FrameStore


@dataclass
class EvaluateConfig:
    """The `evaluate:` keys of configs/evaluate.yaml (documented there)."""

    context: int | None = None
    horizon: int | None = None
    batch_size: int = 64
    max_sequences: int | None = None
    split: str = "test"
    device: str = "auto"
    out: str | None = None
    grid_sequences: int = 4
    baseline: str | None = None  # another predictor checkpoint, evaluated on the same sequences
    # generator checkpoints (generator.py)
    classifier: str | None = None
    i3d: str | None = None
    i3d_size: int = 224
    num_videos: int = 256
    seed: int = 0
    length: int | None = None


def default_out(ckpt_path: str) -> Path:
    """RUN/evaluate for RUN/checkpoints/X.pt, else a folder beside the checkpoint."""
    p = Path(ckpt_path)
    if p.parent.name == "checkpoints":
        return p.parent.parent / "evaluate"
    return p.with_name(f"{p.stem}-evaluate")


def _store_digit_sources(url: str, split: str | None) -> set[str]:
    """The digit_source values of a store's Moving MNIST videos of `split` (None: all but the
    test videos, what training read); empty when the store cannot be read or records none
    (stores made before videos recorded it)."""
    try:
        entries = FrameStore.open(url).entries()
    except Exception:  # noqa: BLE001 - a missing or unreadable store: nothing to say
        return set()
    found = set()
    for e in entries:
        side = e.attrs.get("split")
        if e.attrs.get("source") != "moving_mnist" or "digit_source" not in e.attrs:
            continue
        if (side != "test") if split is None else (split in ("all", side)):
            found.add(str(e.attrs["digit_source"]))
    return found


def check_digit_leak(train_config: dict[str, Any], store: str, split: str, ckpt: str) -> None:
    """Refuse to evaluate on Moving MNIST videos of the packaged digits (digit_source
    "mnist_5k") a model trained on the full MNIST (data.mnist_root): the packaged digits are
    MNIST digits, so the model may have trained on the very digits of these "held-out" videos.

    `train_config` is the checkpoint's training config: data=moving_mnist records its
    mnist_root; data=store its training store, whose training videos record their source (read
    when the store is still there). Stores made before videos recorded their digit source are
    not checked."""
    data = train_config.get("data") or {}
    if data.get("name") == "moving_mnist":
        trained = {digit_source(data.get("mnist_root"))}
        how = f"data=moving_mnist data.mnist_root={data.get('mnist_root')}"
    elif train_config.get("store"):
        trained = _store_digit_sources(str(train_config["store"]), None)
        how = f"the training videos of store={train_config['store']}"
    else:
        return
    if FULL_SOURCE not in trained or PACKAGED_SOURCE not in _store_digit_sources(store, split):
        return
    raise UsageError(
        f"store={store}: its {split} videos are Moving MNIST made from the packaged digits "
        f"(mnist_5k, data.mnist_root=null), but checkpoint={ckpt} was trained on Moving MNIST "
        f"from the full MNIST ({how}). The packaged digits are MNIST digits, so the model may "
        "have trained on these very test digits. Evaluate on a store made from the digits it "
        "was trained on: framecast synth data=moving_mnist data.mnist_root=<the same root> ..."
    )


__all__ = ["EvaluateConfig", "check_digit_leak", "default_out"]
