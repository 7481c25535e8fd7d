"""`framecast evaluate`: a predictor's metrics per future step, beside the copy-last-frame baseline.

Sequences come from the held-out split of a store (`store=URL`) or from an npy file in the
`mnist_test_seq.npy` layout (`data=npy data.path=FILE`). The first `evaluate.context` frames are
observed and the next `evaluate.horizon` are predicted. Writes `metrics.json`, a per-step plot
(PNG) and a grid of observed | true | predicted frames (PNG and GIF) into `evaluate.out`; for a
motion-compensated predictor also `motion.png`, its predicted flows and masks.

Every metric of `models.metrics.MetricAccumulator` is reported per step, sharpness (gradient
energy of the predictions over that of the truth, < 1 = blur) included. Long horizons: set
`evaluate.context=10 evaluate.horizon=64` (the store's videos must have that many frames).
Predictors that predict poses first (a `StructurePredictor`: `forecast`) also get, when the
store holds keypoints, PCK@0.1 of body size per step ("pck") and the frames their generator
draws from the *true* future poses ("oracle_poses"; for learned keypoints: those detected in the
true future frames). `evaluate.baseline=CKPT` rolls another predictor checkpoint out to the same
horizon on the same sequences and reports it beside copy-last.

A generator checkpoint gets the metrics of `generator.py` instead (the checkpoint's kind
decides); a classifier checkpoint is refused.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from models.metrics import MetricAccumulator, PCKAccumulator, copy_last_baseline
from models.protocols import MotionPredictor, StructurePredictor
from pipeline.core.config import UsageError, existing_path, required, typed, write_result
from pipeline.core.frames import to_model, to_uint8
from pipeline.core.progress import progress, summary
from pipeline.io.loader import ClipDataset
from pipeline.io.previews import flow_to_rgb, rgb, write_atomic, write_png
from pipeline.io.video import write_video
from pipeline.runtime.inference import LoadedModel, load_model
from pipeline.stages.evaluate.common import EvaluateConfig, check_digit_leak, default_out
from pipeline.stages.evaluate.generator import run_generator

METRICS = ("mse", "mae", "psnr", "ssim", "bce")


def _store_sequences(
    url: str, length: int, ev: EvaluateConfig, test_fraction: float, keypoints: bool = False
) -> Iterator[np.ndarray | tuple[np.ndarray, np.ndarray]]:
    """Batches of uint8 sequences (B, L, H, W, C); with `keypoints`, (frames, keypoints
    (B, L, K, 2)) when every selected video has keypoints (else frames alone)."""

    def dataset(with_keypoints: bool) -> ClipDataset:
        return ClipDataset(
            url,
            length,
            ev.batch_size,
            stride=length,
            split=None if ev.split == "all" else ev.split,
            test_fraction=test_fraction,
            cache=False,
            shuffle=False,
            keypoints=with_keypoints,
        )

    try:
        try:
            ds = dataset(keypoints)
        except ValueError:
            if not keypoints:
                raise
            ds = dataset(False)  # a store without keypoints: frame metrics only
    except ValueError as e:
        raise UsageError(str(e)) from None
    for batch in ds:
        if isinstance(batch, dict):
            yield batch["frames"].numpy(), batch["keypoints"].numpy()
        else:
            yield batch.numpy()


def _load_baseline(path: str, size: tuple[int, int], device: torch.device) -> LoadedModel:
    """The predictor of the checkpoint `evaluate.baseline`, checked for frame size."""
    base = load_model(path, device, want=("predictor",), stage="evaluate.baseline")
    theirs = (base.frame_size, base.channels)
    if theirs != size:
        raise UsageError(
            f"evaluate.baseline={path}: frames {theirs[0]}x{theirs[0]}x{theirs[1]} do not match "
            f"the model's {size[0]}x{size[0]}x{size[1]}"
        )
    return base


def _npy_sequences(path: str, length: int, batch: int) -> Iterator[np.ndarray]:
    arr = np.load(existing_path(path, "data.path"), mmap_mode="r", allow_pickle=False)
    if arr.dtype != np.uint8 or arr.ndim != 4:
        raise UsageError(
            f"data.path={path}: expected uint8 (T, N, H, W) like mnist_test_seq.npy, got "
            f"{arr.dtype} {arr.shape}"
        )
    if arr.shape[0] < length:
        raise UsageError(f"data.path={path}: {arr.shape[0]} frames, need context+horizon={length}")
    for i in range(0, arr.shape[1], batch):
        # (T, b, H, W) -> (b, T, H, W, 1)
        yield np.ascontiguousarray(arr[:length, i : i + batch].transpose(1, 0, 2, 3))[..., None]


def run(cfg: DictConfig) -> dict:
    ev = typed(cfg.evaluate, EvaluateConfig, "evaluate")
    ckpt_path = str(required(cfg, "checkpoint"))
    loaded = load_model(ckpt_path, ev.device, want=("predictor", "generator"), stage="evaluate")
    if loaded.kind == "generator":  # generators have their own metrics
        return run_generator(cfg, loaded, ev)
    for key in ("classifier", "i3d"):
        if getattr(ev, key) is not None:
            raise UsageError(
                f"evaluate.{key} applies to generator checkpoints; {ckpt_path} is a "
                f"{loaded.family} (a {loaded.kind})"
            )
    model, device = loaded.model, loaded.device
    # predicts structure (poses) first: pose metrics beside the frame metrics
    structure = isinstance(model, StructurePredictor)
    context = loaded.context if ev.context is None else ev.context
    horizon = loaded.horizon if ev.horizon is None else ev.horizon
    if context < 1 or horizon < 1:
        raise UsageError("evaluate.context and evaluate.horizon must be >= 1")
    length = context + horizon

    data_name = cfg.data.get("name") if cfg.get("data") is not None else "store"
    if data_name == "npy":
        source = str(cfg.data.path)
        sequences = _npy_sequences(source, length, ev.batch_size)
    else:
        source = str(required(cfg, "store"))
        check_digit_leak(loaded.config, source, ev.split, ckpt_path)  # test digits never trained
        sequences = _store_sequences(source, length, ev, loaded.test_fraction, keypoints=structure)

    out = Path(ev.out) if ev.out else default_out(ckpt_path)
    out.mkdir(parents=True, exist_ok=True)
    model_acc, copy_acc = MetricAccumulator(), MetricAccumulator()
    oracle_acc, baseline_acc, pck_acc = MetricAccumulator(), MetricAccumulator(), PCKAccumulator()
    grid: list[tuple[np.ndarray, np.ndarray]] = []  # uint8 (T, H, W, C), (horizon, H, W, C)
    grid_baseline: list[np.ndarray] = []  # the baseline's predictions of the grid's sequences
    count = 0
    size = (loaded.frame_size, loaded.channels)
    baseline = _load_baseline(ev.baseline, size, device) if ev.baseline else None

    with progress("evaluate", ev.max_sequences, "seqs") as bar, loaded.inference():
        for batch in sequences:
            keypoints = None
            if isinstance(batch, tuple):
                batch, keypoints = batch
            if ev.max_sequences is not None:
                batch = batch[: ev.max_sequences - count]
                keypoints = None if keypoints is None else keypoints[: len(batch)]
            if not len(batch):
                break
            if batch.shape[2] != size[0] or batch.shape[4] != size[1]:
                raise UsageError(
                    f"{source}: frames {batch.shape[2]}x{batch.shape[3]}x{batch.shape[4]} do not "
                    f"match the model's {size[0]}x{size[0]}x{size[1]}"
                )
            x = to_model(batch, device)  # (B, L, C, H, W)
            observed, future = x[:, :context], x[:, context:]
            if structure:
                forecast = model.forecast(observed, horizon)
                pred = forecast["frames"].float().clamp(0, 1)
                _structure_metrics(
                    model,
                    forecast,
                    observed,
                    future,
                    keypoints,
                    context,
                    device,
                    pck_acc,
                    oracle_acc,
                )
            else:
                pred = model.predict(observed, horizon).float().clamp(0, 1)
            model_acc.update(pred, future)
            copy_acc.update(copy_last_baseline(observed, horizon), future)
            base = None
            if baseline is not None:
                base = baseline.model.predict(observed, horizon).float().clamp(0, 1)
                baseline_acc.update(base, future)
            shown = min(len(batch), ev.grid_sequences - len(grid))
            if shown > 0:
                grid += list(zip(batch[:shown], to_uint8(pred[:shown])))
                if base is not None:
                    grid_baseline += list(to_uint8(base[:shown]))
            count += len(batch)
            bar.advance(len(batch))
            if ev.max_sequences is not None and count >= ev.max_sequences:
                break
    if count == 0:
        raise UsageError(f"{source}: no sequences of {length} frames to evaluate")
    result: dict[str, Any] = {
        "stage": "evaluate",
        "checkpoint": ckpt_path,
        "step": loaded.step,
        "model": loaded.family,
        "data": source,
        "sequences": count,
        "context": context,
        "horizon": horizon,
        **_flatten(model_acc.result()),
        "copy_last": _flatten(copy_acc.result()),
    }
    if pck_acc.correct is not None:
        pck = pck_acc.result()
        result["pck"] = pck["mean"]
        result["per_step"]["pck"] = pck["per_step"]
    if oracle_acc.sequences:
        result["oracle_poses"] = _flatten(oracle_acc.result())
    if baseline is not None:
        result["baseline"] = {
            "checkpoint": ev.baseline,
            "model": baseline.family,
            **_flatten(baseline_acc.result()),
        }
    files: dict[str, str] = {}
    if grid:
        _sample_grid(grid, context, out)
        files.update(grid_png=str(out / "samples.png"), grid_gif=str(out / "samples.gif"))
        # the grid's frames as arrays: the report sets predictors of one store side by side
        arrays = {
            "true": np.stack([t for t, _ in grid]),
            "predicted": np.stack([p for _, p in grid]),
        }
        if grid_baseline:
            arrays["baseline"] = np.stack(grid_baseline)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        write_atomic(out / "samples.npz", buffer.getvalue())
        files["samples_npz"] = str(out / "samples.npz")
        if isinstance(model, MotionPredictor):
            with loaded.inference():
                observed = to_model(np.stack([true[:context] for true, _ in grid]), device)
                shown = model.explain(observed, horizon)
            if "flow" in shown:
                _motion_grid(grid, shown, out / "motion.png")
                files["motion_png"] = str(out / "motion.png")
            if "attention" in shown:  # an attention-based predictor: where each frame looked
                _attention_grid(grid, context, shown["attention"], out / "attention.png")
                files["attention_png"] = str(out / "attention.png")
    try:
        import matplotlib  # noqa: F401 - plots need it; a bare GPU host may not have it
    except ImportError:
        print("matplotlib is not installed: no per-step plot", flush=True)
    else:
        _plot_per_step(result, out / "metrics_per_step.png")
        files["plot"] = str(out / "metrics_per_step.png")
    result["files"] = files
    write_result(cfg, result, str(out / "metrics.json"))

    rows = {}
    for m in (*METRICS, "sharpness"):
        row = f"{result[m]:.4g}   (copy-last {result['copy_last'][m]:.4g}"
        if "baseline" in result:
            row += f", {result['baseline']['model']} {result['baseline'][m]:.4g}"
        if "oracle_poses" in result:
            row += f", true poses {result['oracle_poses'][m]:.4g}"
        rows[m] = row + ")"
    if "pck" in result:
        rows["pck@0.1"] = f"{result['pck']:.4g}"
    summary(f"evaluate {loaded.family} on {count} sequences ({context} -> {horizon})", rows)
    return result


def _structure_metrics(
    model: StructurePredictor,
    out: dict[str, torch.Tensor],
    observed: torch.Tensor,
    future: torch.Tensor,
    keypoints: np.ndarray | None,
    context: int,
    device: torch.device,
    pck_acc: PCKAccumulator,
    oracle_acc: MetricAccumulator,
) -> None:
    """PCK of the predicted poses against the store's, and the frames drawn from the true
    future poses (the analogy generator alone, without pose-prediction error)."""
    labelled = keypoints is not None and model.predicts_keypoints
    if labelled:
        kp = torch.from_numpy(keypoints).to(device).float()
        if kp.shape[2] != out["keypoints"].shape[2]:
            labelled = False  # a different joint layout: no PCK, no oracle
    if labelled:
        pck_acc.update(out["keypoints"], kp[:, context:])
        oracle = model.render(observed[:, -1], kp[:, context - 1], kp[:, context:])
    elif not model.predicts_keypoints:
        # learned keypoints: the "true" future poses are those detected in the true frames
        oracle = model.render(
            observed[:, -1], out["observed_keypoints"][:, -1], model.detect(future)
        )
    else:
        return
    oracle_acc.update(oracle.float().clamp(0, 1), future)


def _flatten(res: dict[str, Any]) -> dict[str, Any]:
    """{"mse": {"mean", "per_step"}, ...} -> {"mse": mean, ..., "per_step": {"mse": [...]}}."""
    flat: dict[str, Any] = {"per_step": {}}
    for name, v in res.items():
        if isinstance(v, dict) and "mean" in v:
            flat[name] = float(v["mean"])
            flat["per_step"][name] = [float(x) for x in v["per_step"]]
        else:
            flat[name] = v
    return flat


def _plot_per_step(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m for m in (*METRICS, "sharpness", "pck") if m in result["per_step"]]
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.8))
    steps = np.arange(1, result["horizon"] + 1)
    for ax, m in zip(axes, names):
        ax.plot(steps, result["per_step"][m], "o-", ms=3, label=result["model"])
        if m in result["copy_last"]["per_step"]:
            ax.plot(steps, result["copy_last"]["per_step"][m], "s--", ms=3, label="copy last")
        for key, label in (("baseline", None), ("oracle_poses", "true poses")):
            if key in result and m in result[key]["per_step"]:
                name = label or result[key]["model"]
                ax.plot(steps, result[key]["per_step"][m], "^:", ms=3, label=name)
        ax.set_title(m)
        ax.set_xlabel("future step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _sample_grid(grid: list[tuple[np.ndarray, np.ndarray]], context: int, out: Path) -> None:
    """PNG: per sequence a row of true frames over a row of observed+predicted frames.
    GIF: per time step, true | predicted side by side for every sequence. Frames uint8."""
    rows_png, gif_frames = [], []
    for true, pred in grid:  # (T, H, W, C), (horizon, H, W, C)
        shown = np.concatenate([true[:context], pred])
        rows_png.append(_strip(true))
        rows_png.append(_strip(shown, mark_from=context))
    write_png(out / "samples.png", np.concatenate(rows_png, axis=0))
    length = len(grid[0][0])
    for t in range(length):
        tiles = []
        for true, pred in grid:
            p = true[t] if t < context else pred[t - context]
            tiles.append(np.concatenate([rgb(true[t]), _sep(true[t]), rgb(p)], axis=1))
        gif_frames.append(np.concatenate(tiles, axis=0))
    write_video(str(out / "samples.gif"), np.stack(gif_frames), fps=4)


def _motion_grid(
    grid: list[tuple[np.ndarray, np.ndarray]], shown: dict[str, torch.Tensor], path: Path
) -> None:
    """PNG of how a motion-compensated head predicted: per sequence a row of predicted frames,
    a row of its flows (hue: direction, saturation: magnitude; one scale for the whole image)
    and a row of its masks (white: new appearance, black: the moved previous frame)."""
    flows = shown["flow"].float().cpu().numpy()  # (N, S, 2, H, W)
    masks = to_uint8(shown["mask"].float())  # (N, S, H, W, 1)
    colours = flow_to_rgb(flows, max(float(np.hypot(flows[:, :, 0], flows[:, :, 1]).max()), 1.0))
    rows = []
    for k, (_, pred) in enumerate(grid):
        rows += [_strip(pred), _strip(colours[k]), _strip(masks[k])]
    write_png(path, np.concatenate(rows, axis=0))


def _attention_grid(
    grid: list[tuple[np.ndarray, np.ndarray]], context: int, attention: torch.Tensor, path: Path
) -> None:
    """PNG of where an attention-based predictor looked, from `explain()["attention"]` (N, S,
    T+S-1, g, g): for each predicted frame k a distribution over the g×g patches of the frames
    it was computed from (the T observed, then its own earlier predictions). Per sequence, for
    its first and last predicted frame, a row of those frames with each patch's share in red
    (scaled by the row's largest), and the predicted frame at the end."""
    shares = attention.float().cpu().numpy()
    rows = []
    for k, (true, pred) in enumerate(grid):
        sources = rgb(np.concatenate([true[:context], pred[:-1]])).astype(np.float32)
        h, w = sources.shape[1:3]
        for step in sorted({0, len(pred) - 1}):
            a = shares[k, step]  # (T+S-1, g, g)
            a = a / max(float(a.max()), 1e-12)
            cell = np.ones((h // a.shape[-2], w // a.shape[-1]), np.float32)
            up = np.kron(a, cell)[..., None]  # (T+S-1, H, W, 1)
            red = np.array([255.0, 0.0, 0.0], np.float32)
            tinted = (sources * (1 - 0.6 * up) + 0.6 * up * red).astype(np.uint8)
            rows.append(_strip(np.concatenate([tinted, rgb(pred[step])[None]])))
    write_png(path, np.concatenate(rows, axis=0))


def _sep(frame: np.ndarray, width: int = 2) -> np.ndarray:
    """A grey gap of `width` pixels beside a frame (H, W, C)."""
    return np.full((frame.shape[0], width, 3), 128, np.uint8)


def _strip(frames: np.ndarray, mark_from: int | None = None) -> np.ndarray:
    tiles = []
    for i, f in enumerate(frames):
        img = rgb(f)
        if mark_from is not None and i >= mark_from:
            img = img.copy()
            img[:2, :, :] = (255, 64, 64)  # a red bar marks predicted frames
        tiles += [img, _sep(f)]
    return np.concatenate(tiles, axis=1)


__all__ = ["EvaluateConfig", "default_out", "run"]
