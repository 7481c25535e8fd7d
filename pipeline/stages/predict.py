"""`framecast predict`: observe the start of a video, predict what follows, write an mp4.

The input is a video file or URL (decoded with PyAV, resized to the model's frames), or a video
of a frame store (`store=URL predict.video=ID`). The mp4 shows, side by side, the true frames
(left) and the observed-then-predicted frames (right; a red bar marks predicted frames).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from models.metrics import video_metrics
from pipeline.core.config import UsageError, required, typed, write_result
from pipeline.core.errors import VideoError
from pipeline.core.frames import to_model, to_uint8
from pipeline.io.store import FrameStore
from pipeline.io.video import decode_frames, probe, write_video
from pipeline.runtime.inference import load_model


@dataclass
class PredictConfig:
    horizon: int | None = None
    context: int | None = None
    start: int = 0
    video: str | None = None
    fps: float | None = None
    scale: int = 4
    device: str = "auto"


def _observed_frames(cfg: DictConfig, p: PredictConfig, size: int, channels: int, need: int):  # noqa: ANN202
    """(frames (N, H, W, C) uint8 with N <= need, fps, source description)."""
    if p.video is not None:
        store = FrameStore.open(str(required(cfg, "store")))
        if p.video not in store:
            raise UsageError(f"predict.video={p.video}: no such video in {store.url}")
        frames = store.frames(p.video, p.start, p.start + need)
        fps = float(store.attrs(p.video).get("fps") or 10)
        return frames, fps, f"{store.url}#{p.video}"
    source = str(required(cfg, "input"))
    if "://" not in source and not source.startswith("lavfi:") and not Path(source).exists():
        raise UsageError(f"input={source}: no such file")
    try:
        frames = []
        for i, f in enumerate(
            decode_frames(source, size=size, gray=channels == 1, max_frames=p.start + need)
        ):
            if i >= p.start:
                frames.append(f)
        fps = probe(source).fps
    except (VideoError, OSError, ValueError) as e:
        raise UsageError(f"input={source}: cannot decode ({e})") from None
    if not frames:
        raise UsageError(f"input={source}: no frames at or after predict.start={p.start}")
    return np.stack(frames), fps or 25.0, source


def run(cfg: DictConfig) -> dict:
    p = typed(cfg.predict, PredictConfig, "predict")
    ckpt_path = str(required(cfg, "checkpoint"))
    out = Path(str(required(cfg, "out")))
    if out.suffix.lower() not in (".mp4", ".gif", ".webm"):
        raise UsageError(f"out={out}: use a .mp4, .gif or .webm file name")
    # a generator or a classifier checkpoint stops here, in one line naming what predict takes
    loaded = load_model(ckpt_path, p.device, want=("predictor",), stage="predict")
    size, channels = loaded.frame_size, loaded.channels
    context = loaded.context if p.context is None else p.context
    horizon = loaded.horizon if p.horizon is None else p.horizon
    if context < 1 or horizon < 1:
        raise UsageError("predict.context and predict.horizon must be >= 1")
    frames, fps, source = _observed_frames(cfg, p, size, channels, context + horizon)
    if len(frames) < context:
        raise UsageError(f"{source}: {len(frames)} frames, predict needs context={context}")
    if frames.shape[1:] != (size, size, channels):
        raise UsageError(f"{source}: frames {frames.shape[1:]} do not match the model's")
    x = to_model(frames, loaded.device)  # (N, C, H, W)
    with loaded.inference():
        pred = loaded.model.predict(x[None, :context], horizon)[0].float().clamp(0, 1)
    pred_u8 = to_uint8(pred)
    video = side_by_side(frames, pred_u8, context, p.scale)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_video(str(out), video, fps=p.fps or fps)
    result = {
        "stage": "predict",
        "checkpoint": ckpt_path,
        "input": source,
        "out": str(out),
        "context": context,
        "horizon": horizon,
        "true_future_frames": int(max(0, len(frames) - context)),
        "frames_written": int(len(video)),
        "fps": float(p.fps or fps),
    }
    if len(frames) > context:
        n = min(horizon, len(frames) - context)
        m = video_metrics(pred[None, :n], x[None, context : context + n])
        result["metrics"] = {k: v["mean"] for k, v in m.items() if isinstance(v, dict)}
    write_result(cfg, result, str(out.with_suffix(".json")))
    print(f"wrote {out} ({len(video)} frames: {context} observed + {horizon} predicted)")
    return result


def side_by_side(true: np.ndarray, pred: np.ndarray, context: int, scale: int = 1) -> np.ndarray:
    """(T, H, W, 3) uint8: true frames | observed-then-predicted frames, upscaled by `scale`."""
    horizon = len(pred)
    t_total = context + horizon
    h, w, c = true.shape[1:]
    left = np.zeros((t_total, h, w, c), np.uint8)
    left[: min(len(true), t_total)] = true[:t_total]
    right = np.concatenate([true[:context], pred])
    sep = np.full((t_total, h, max(1, w // 32), c), 128, np.uint8)
    both = np.concatenate([left, sep, right], axis=2)
    if c == 1:
        both = np.repeat(both, 3, axis=3)
    both[context:, :2, w + sep.shape[2] :] = (255, 64, 64)  # red bar: predicted
    if scale > 1:
        both = both.repeat(scale, axis=1).repeat(scale, axis=2)
    return both
