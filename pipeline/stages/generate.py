"""`framecast generate`: batch-generate videos from a generator checkpoint (or long rollouts of a
predictor), on Ray workers or in this process, encoded with PyAV.

    framecast generate checkpoint=CKPT out=DIR num_videos=N generate.length=T generate.seed=S
        [generate.category=K] [generate.fix=content|motion] [generate.format=mp4|gif|npy]

Codes. Video i of a run draws its codes from a CPU torch.Generator seeded with
`video_seed(S, i)` (a numpy SeedSequence of (S, i)), exactly as `Generator.sample(1, T,
seed=video_seed(S, i))` draws them: so video i depends only on (S, i), whatever N, the batch
size, the number of workers or an interruption. A video is the content code of "draw c" and the
motion noise (and, unless `generate.category` is given, the category: the action is part of the
motion) of "draw m": c = m = i normally; `fix=content` gives every video the content of draw 0
(c = 0, m = i: one content, N motions); `fix=motion` the motion of draw 0 (c = i, m = 0).
`content_id` and `motion_id` in the manifest are those c and m.

Files in DIR: `video_NNNNNN.<format>` (mp4: libx264; gif; npy: uint8 (T, H, W, C)),
`manifest.jsonl` (one line per finished video: index, path, seed, video_seed, category,
category_name, length, content_id, motion_id), `preview.png` (a row of frames per video),
`preview.gif` (the first videos tiled, animated) and `generate.json` (the result).

Resume. Workers render and encode; the driver alone writes DIR: each video goes to a `.part`
file renamed into place, then its manifest line is appended. A rerun with the same settings
(kept in DIR/.generate-settings.json; other settings are refused) skips every finished file,
rebuilds the manifest from the files, and renders only the rest; a larger num_videos extends a
run.

Predictors (checkpoints with `predict(observed, horizon)`, e.g. the LSTM autoencoder): with
`store=URL`, video i observes the first `generate.context` frames of a store video (the split's
videos in an order shuffled by the seed, cycling) and rolls out `generate.length` frames; the
file holds the observed frames followed by the predicted ones.

`generate.backend=local` renders in this process without importing Ray (bare GPU hosts).
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from pipeline.runtime import checkpoint
from pipeline.runtime.cluster import address_of
from pipeline.core.config import StageFailed, UsageError, required, typed, write_json, write_result

FORMATS = ("mp4", "gif", "webm", "npy")
SETTINGS_FILE = ".generate-settings.json"
MANIFEST = "manifest.jsonl"


@dataclass
class GenerateConfig:
    """The `generate:` keys of configs/generate.yaml (documented there)."""

    length: int | None = None
    seed: int = 0
    category: str | None = None
    fix: str | None = None
    format: str = "mp4"
    fps: float = 8.0
    crf: int = 18
    batch_size: int = 16
    workers: int | None = None
    backend: str = "ray"
    device: str = "auto"
    preview: int = 16
    context: int | None = None
    split: str = "test"


def video_seed(seed: int, index: int) -> int:
    """The seed of video `index`'s codes in a run seeded `seed`: depends on (seed, index) only."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(index)]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def video_name(index: int, fmt: str) -> str:
    return f"video_{index:06d}.{fmt}"


def code_ids(index: int, fix: str | None) -> tuple[int, int]:
    """(content_id, motion_id): the draws whose content and motion video `index` takes."""
    if fix == "content":
        return 0, index
    if fix == "motion":
        return index, 0
    return index, index


@torch.no_grad()
def sample_videos(
    generator: torch.nn.Module,
    seed: int,
    length: int,
    content_ids: list[int],
    motion_ids: list[int],
    category: int | list[int] | None = None,
) -> tuple[torch.Tensor, list[int] | None]:
    """Videos (n, length, C, H, W) in [0, 1] of a MoCoGAN generator (in eval mode) and their
    categories (None when unconditional): content of draw content_ids[k], motion noise (and
    category, unless `category` is given) of draw motion_ids[k]; draw j's codes are those of
    `generator.sample(1, length, seed=video_seed(seed, j))`."""
    draws: dict[int, dict[str, torch.Tensor]] = {}
    for j in {*content_ids, *motion_ids}:
        rng = torch.Generator().manual_seed(video_seed(seed, j))
        draws[j] = generator.draw_codes(1, length, device="cpu", generator=rng)
    content = torch.cat([draws[c]["content"] for c in content_ids])
    motion = torch.cat([draws[m]["motion_noise"] for m in motion_ids])
    cats: list[int] | None = None
    if generator.cfg.num_categories:
        if category is None:
            cats = [int(draws[m]["category"]) for m in motion_ids]
        elif isinstance(category, int):
            cats = [category] * len(motion_ids)
        else:
            cats = [int(c) for c in category]
    videos, _ = generator.sample(
        len(content_ids), length, category=cats, content=content, motion=motion
    )
    return videos, cats


def to_uint8(videos: torch.Tensor) -> np.ndarray:
    """(n, T, C, H, W) float in [0, 1] -> (n, T, H, W, C) uint8."""
    return (videos.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()


def encode(frames: np.ndarray, fmt: str, fps: float, crf: int, tmpdir: str) -> bytes:
    """The bytes of one video file: frames (T, H, W, C) uint8, through `write_video` (npy:
    numpy's format)."""
    if fmt == "npy":
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(frames), allow_pickle=False)
        return buf.getvalue()
    from pipeline.io.video import write_video

    path = os.path.join(tmpdir, f"encode.{fmt}")
    write_video(path, frames, fps, crf=crf)
    with open(path, "rb") as f:
        data = f.read()
    os.remove(path)
    return data


class Renderer:
    """One worker: the model on its device; `render(unit)` samples (or rolls out) a unit's
    videos and returns their encoded files. A Ray actor, or a plain object with backend=local.
    Pure: it never touches the output folder (the driver writes every file)."""

    def __init__(self, payload: dict[str, Any], opts: dict[str, Any]) -> None:
        threads = opts.get("threads")
        if threads:
            torch.set_num_threads(int(threads))
        device = opts["device"]
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        task = checkpoint.restore_task(payload, self.device)
        self.model = task.inference_model().eval()
        self.opts = opts
        self.tmpdir = tempfile.mkdtemp(prefix="framecast-generate-")

    def ready(self) -> str:
        return str(self.device)

    @torch.no_grad()
    def frames(self, unit: dict[str, Any]) -> np.ndarray:
        """The unit's videos as uint8 (n, T, H, W, C)."""
        o = self.opts
        if o["kind"] == "predictor":
            seed = torch.from_numpy(unit["seed_frames"]).to(self.device)  # (n, ctx, H, W, C)
            x = seed.permute(0, 1, 4, 2, 3).float().div(255.0)
            pred = self.model.predict(x, o["length"]).float().clamp(0, 1)
            return np.concatenate([unit["seed_frames"], to_uint8(pred.cpu())], axis=1)
        videos, _ = sample_videos(
            self.model,
            o["seed"],
            o["length"],
            unit["content_ids"],
            unit["motion_ids"],
            unit["categories"],
        )
        return to_uint8(videos.cpu())

    def render(self, unit: dict[str, Any]) -> list[tuple[int, bytes]]:
        """[(index, file bytes)] of the unit's videos still to write (`unit["write"]`)."""
        o = self.opts
        frames = self.frames(unit)
        return [
            (i, encode(frames[k], o["format"], o["fps"], o["crf"], self.tmpdir))
            for k, i in enumerate(unit["indices"])
            if i in unit["write"]
        ]


# ------------------------------------------------------------------------------------------------
# The driver


def _kind(ckpt: dict[str, Any], ckpt_path: str) -> tuple[str, Any]:
    """("generator" | "predictor", the restored inference model on the CPU)."""
    try:
        task = checkpoint.restore_task(ckpt, "cpu")
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise UsageError(f"checkpoint={ckpt_path}: cannot rebuild its model ({e})") from None
    model = task.inference_model()
    if ckpt["model"] == "mocogan" or hasattr(model, "draw_codes"):
        return "generator", model
    if callable(getattr(model, "predict", None)):
        return "predictor", model
    raise UsageError(
        f"checkpoint={ckpt_path} holds a {ckpt['model']} model: generate needs a generator "
        "(model=mocogan) or a predictor (a model with predict(), e.g. lstm_autoencoder)"
    )


def _category(value: str | None, num_categories: int, names: list[Any]) -> int | None:
    """generate.category (an index or a name from the checkpoint's categories) -> an index."""
    if value is None:
        return None
    if not num_categories:
        raise UsageError(
            f"generate.category={value}: this generator is unconditional (model.num_categories=0)"
        )
    text = str(value).strip()
    labels = [str(c) for c in names][:num_categories]
    if text in labels:
        return labels.index(text)
    try:
        index = int(text)
    except ValueError:
        known = ", ".join(labels) if labels else "none recorded"
        raise UsageError(
            f"generate.category={value}: not a category index in [0, {num_categories - 1}] nor a "
            f"category name of the checkpoint ({known})"
        ) from None
    if not 0 <= index < num_categories:
        raise UsageError(
            f"generate.category={value}: out of range; this generator has {num_categories} "
            f"categories (0..{num_categories - 1})"
        )
    return index


def _check(g: GenerateConfig, num_videos: int) -> None:
    if num_videos < 1:
        raise UsageError(f"num_videos={num_videos}: must be >= 1")
    if g.format not in FORMATS:
        raise UsageError(f"generate.format={g.format}: use one of {', '.join(FORMATS)}")
    if g.fix not in (None, "content", "motion"):
        raise UsageError(f"generate.fix={g.fix}: use content or motion (or leave it null)")
    if g.backend not in ("ray", "local"):
        raise UsageError(f"generate.backend={g.backend}: use ray or local")
    if g.device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"generate.device={g.device}: use auto, cpu or cuda")
    if g.backend == "local" and g.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("generate.device=cuda: no CUDA device is available")
    if g.length is not None and g.length < 1:
        raise UsageError(f"generate.length={g.length}: must be >= 1")
    if g.fps <= 0:
        raise UsageError(f"generate.fps={g.fps}: must be > 0")
    if g.batch_size < 1:
        raise UsageError(f"generate.batch_size={g.batch_size}: must be >= 1")
    if g.workers is not None and g.workers < 1:
        raise UsageError(f"generate.workers={g.workers}: must be >= 1 (or null)")
    if g.backend == "local" and (g.workers or 1) != 1:
        raise UsageError("generate.workers > 1 needs generate.backend=ray")
    if g.preview < 0:
        raise UsageError(f"generate.preview={g.preview}: must be >= 0")
    if g.split not in ("train", "test", "all"):
        raise UsageError(f"generate.split={g.split}: use train, test or all")


def _settings(
    ckpt_path: str, ckpt: dict[str, Any], g: GenerateConfig, length: int, extra: dict[str, Any]
) -> dict[str, Any]:
    """What the files of a run depend on (num_videos, workers, backend and batch size do not
    change a video)."""
    return {
        "checkpoint": str(Path(ckpt_path).resolve()),
        "step": int(ckpt["step"]),
        "length": length,
        "seed": g.seed,
        "category": g.category,
        "fix": g.fix,
        "format": g.format,
        "fps": g.fps,
        "crf": g.crf,
        **extra,
    }


def _claim(out: Path, settings: dict[str, Any]) -> None:
    """Refuse a folder holding videos of other settings; record ours."""
    path = out / SETTINGS_FILE
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = None
        if isinstance(old, dict) and old != settings:
            diff = [
                f"{k}: {old.get(k)!r} -> {settings.get(k)!r}"
                for k in sorted(set(old) | set(settings))
                if old.get(k) != settings.get(k)
            ]
            raise UsageError(
                f"out={out} holds videos generated with other settings ({'; '.join(diff)}): "
                "use another out folder, or delete this one"
            )
    write_json(path, settings)


def _write_file(out: Path, name: str, data: bytes) -> None:
    """tmp + rename: a file of `out` is either whole or absent."""
    part = out / f".{name}.part"
    with open(part, "wb") as f:
        f.write(data)
    os.replace(part, out / name)


def _write_manifest(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    os.replace(tmp, path)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    tail = [ln for ln in text if ln.strip()][-1:] if text else []
    return tail[0].strip() if tail else type(e).__name__


def _run_local(payload: dict[str, Any], opts: dict[str, Any], units: list, on_result) -> dict:  # noqa: ANN001
    renderer = Renderer(payload, opts)
    t0 = time.perf_counter()
    for unit in units:
        on_result(renderer.render(unit))
    return {"workers": 1, "device": str(renderer.device), "seconds": time.perf_counter() - t0}


def _run_ray(
    payload: dict[str, Any],
    opts: dict[str, Any],
    units: list,
    on_result,  # noqa: ANN001
    workers: int | None,
    address: str | None = None,
) -> dict:
    from pipeline.runtime.cluster import ray_init

    started = ray_init(address)  # cluster.address, $RAY_ADDRESS or a local instance
    import ray

    actors: list[Any] = []
    try:
        resources = ray.cluster_resources()
        cpus = float(resources.get("CPU", 1.0))
        gpus = float(resources.get("GPU", 0.0)) if opts["device"] != "cpu" else 0.0
        n = min(workers or max(1, int(cpus)), len(units))
        num_gpus = min(1.0, gpus / n) if gpus else 0.0
        opts = {**opts, "threads": max(1, int(cpus) // n)}
        # No restarts: a dead worker fails the stage, and a rerun resumes where it stopped.
        cls = ray.remote(Renderer).options(num_cpus=min(1.0, cpus / n), num_gpus=num_gpus)
        ref = ray.put(payload)
        actors = [cls.remote(ref, opts) for _ in range(n)]
        try:
            devices = ray.get([a.ready.remote() for a in actors], timeout=600)
        except (ray.exceptions.RayError, TimeoutError) as e:
            raise StageFailed(f"generate workers could not start: {_one_line(e)}") from None
        t0 = time.perf_counter()
        pending = list(reversed(units))
        inflight: dict[Any, int] = {}
        load = [0] * n

        def fill(i: int) -> None:  # two units queued per actor hide the driver's round trip
            while pending and load[i] < 2:
                inflight[actors[i].render.remote(pending.pop())] = i
                load[i] += 1

        for i in range(n):
            fill(i)
        while inflight:
            done, _ = ray.wait(list(inflight), num_returns=1)
            i = inflight.pop(done[0])
            load[i] -= 1
            try:
                result = ray.get(done[0])
            except ray.exceptions.RayError as e:
                raise StageFailed(f"a generate worker failed: {_one_line(e)}") from None
            fill(i)
            on_result(result)
        return {"workers": n, "device": devices[0], "seconds": time.perf_counter() - t0}
    finally:
        for a in actors:
            ray.kill(a)
        if started:
            ray.shutdown()


def _predictor_sources(
    cfg: DictConfig, ckpt: dict[str, Any], g: GenerateConfig, context: int, shape: tuple
) -> tuple[Any, list[str]]:
    """(store, video ids in the seed's order) for predictor rollouts."""
    if not cfg.get("store"):
        raise UsageError(
            "this checkpoint is a predictor: generate rolls it out from seed frames, give "
            "store=URL (the first generate.context frames of its videos seed the rollouts)"
        )
    from pipeline.io.loader import select_videos
    from pipeline.io.store import FrameStore

    store = FrameStore.open(str(cfg.store))
    test_fraction = float(ckpt.get("config", {}).get("trainer", {}).get("test_fraction", 0.1))
    split = None if g.split == "all" else g.split
    ids = select_videos(store, split, test_fraction, min_frames=context)
    if not ids:
        raise UsageError(
            f"store={cfg.store}: no videos with >= {context} frames in split {g.split} "
            "(generate.split=all uses every video)"
        )
    frame_shape = tuple(store.entry(ids[0]).frame_shape)
    if frame_shape != shape:
        raise UsageError(
            f"store={cfg.store}: frames {frame_shape} do not match the model's {shape} (H, W, C)"
        )
    order = np.random.default_rng(g.seed).permutation(len(ids))
    return store, [ids[k] for k in order]


def run(cfg: DictConfig) -> dict:
    g = typed(cfg.generate, GenerateConfig, "generate")
    ckpt_path = str(required(cfg, "checkpoint"))
    out = Path(str(required(cfg, "out")))
    num_videos = int(required(cfg, "num_videos"))
    _check(g, num_videos)
    t_start = time.perf_counter()
    ckpt = checkpoint.load(ckpt_path)
    kind, model = _kind(ckpt, ckpt_path)
    mcfg = ckpt["model_config"]
    names = list(ckpt.get("categories") or [])
    size, channels = int(mcfg.get("frame_size", 64)), int(mcfg.get("channels", 3))

    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    sources: list[str] = []
    store = None
    context = 0
    if kind == "generator":
        if cfg.get("store"):
            raise UsageError("store= seeds predictor rollouts; a generator (mocogan) needs none")
        length = int(g.length or mcfg.get("length", 16))
        k = int(mcfg.get("num_categories", 0))
        category = _category(g.category, k, names)
        for i in range(num_videos):
            c, m = code_ids(i, g.fix)
            rows.append(
                {
                    "index": i,
                    "path": video_name(i, g.format),
                    "seed": g.seed,
                    "video_seed": video_seed(g.seed, i),
                    "length": length,
                    "content_id": c,
                    "motion_id": m,
                    "category": None,
                    "category_name": None,
                }
            )
        if k:  # the categories (the driver draws them exactly as the workers do)
            for row in rows:
                if category is None:
                    rng = torch.Generator().manual_seed(video_seed(g.seed, row["motion_id"]))
                    cat = int(model.draw_codes(1, 1, device="cpu", generator=rng)["category"])
                else:
                    cat = category
                row["category"] = cat
                row["category_name"] = str(names[cat]) if cat < len(names) else str(cat)
    else:
        if g.fix is not None or g.category is not None:
            raise UsageError(
                "generate.fix and generate.category control generators; this checkpoint is a "
                f"predictor ({ckpt['model']})"
            )
        context = int(g.context or mcfg.get("context", 10))
        length = int(g.length or mcfg.get("horizon", 10))
        if context < 1:
            raise UsageError(f"generate.context={context}: must be >= 1")
        store, sources = _predictor_sources(cfg, ckpt, g, context, (size, size, channels))
        extra = {"store": str(cfg.store), "split": g.split, "context": context}
        for i in range(num_videos):
            rows.append(
                {
                    "index": i,
                    "path": video_name(i, g.format),
                    "seed": g.seed,
                    "source": sources[i % len(sources)],
                    "context": context,
                    "length": length,
                    "frames": context + length,
                }
            )
    del model

    out.mkdir(parents=True, exist_ok=True)
    _claim(out, _settings(ckpt_path, ckpt, g, length, extra))
    for stale in out.glob(".*.part"):  # an interrupted write: never renamed, never listed
        stale.unlink()
    done = {r["index"] for r in rows if (out / r["path"]).exists()}
    manifest = out / MANIFEST
    _write_manifest(manifest, [r for r in rows if r["index"] in done])  # rebuilt from the files

    units = []
    for start in range(0, num_videos, g.batch_size):
        indices = list(range(start, min(start + g.batch_size, num_videos)))
        write = [i for i in indices if i not in done]
        if not write:
            continue
        unit: dict[str, Any] = {"indices": indices, "write": set(write)}
        if kind == "generator":
            unit["content_ids"] = [rows[i]["content_id"] for i in indices]
            unit["motion_ids"] = [rows[i]["motion_id"] for i in indices]
            unit["categories"] = (
                [rows[i]["category"] for i in indices] if rows[0]["category"] is not None else None
            )
        else:  # the driver reads the seed frames: workers need no store access
            unit["seed_frames"] = np.stack(
                [store.frames(rows[i]["source"], 0, context) for i in indices]  # type: ignore[union-attr]
            )
        units.append(unit)

    payload = {
        "model_config": mcfg,
        "networks": (  # a generator's workers need no discriminator (G and its average: model.ema)
            {k: v for k, v in ckpt["networks"].items() if k in ("generator", "generator_ema")}
            if kind == "generator"
            else ckpt["networks"]
        ),
    }
    opts = {
        "kind": kind,
        "device": g.device,
        "seed": g.seed,
        "length": length,
        "format": g.format,
        "fps": g.fps,
        "crf": g.crf,
    }
    todo = num_videos - len(done)
    from pipeline.core.progress import progress, summary

    timing: dict[str, Any] = {"workers": 0, "device": None, "seconds": 0.0}
    with progress("generate", num_videos, "videos", completed=len(done)) as bar:
        if units:
            with open(manifest, "a") as log:

                def on_result(files: list[tuple[int, bytes]]) -> None:
                    for i, data in files:
                        _write_file(out, rows[i]["path"], data)
                        log.write(json.dumps(rows[i], sort_keys=True) + "\n")
                        done.add(i)
                    log.flush()
                    bar.advance(len(files))

                if g.backend == "local":
                    timing = _run_local(payload, opts, units, on_result)
                else:
                    timing = _run_ray(payload, opts, units, on_result, g.workers, address_of(cfg))
    _write_manifest(manifest, [r for r in rows if r["index"] in done])  # sorted, complete

    files: dict[str, str] = {"manifest": str(manifest)}
    if g.preview:
        files.update(_preview(out, rows[: g.preview], g))
    result: dict[str, Any] = {
        "stage": "generate",
        "checkpoint": ckpt_path,
        "model": ckpt["model"],
        "kind": kind,
        "step": int(ckpt["step"]),
        "out": str(out),
        "num_videos": num_videos,
        "generated": todo,
        "skipped": num_videos - todo,
        "length": length,
        "seed": g.seed,
        "category": rows[0].get("category") if g.category is not None else None,
        "fix": g.fix,
        "format": g.format,
        "backend": g.backend,
        "workers": timing["workers"],
        "device": timing["device"],
        "generate_seconds": round(timing["seconds"], 4),
        "videos_per_s": todo / timing["seconds"] if timing["seconds"] > 0 else None,
        "seconds": round(time.perf_counter() - t_start, 3),
        "settings": _settings(ckpt_path, ckpt, g, length, extra),
        "files": files,
    }
    if kind == "predictor":
        result["context"] = context
    write_result(cfg, result, str(out / "generate.json"))
    rate = result["videos_per_s"]
    summary(
        f"generate {num_videos} {ckpt['model']} videos -> {out}",
        {
            "generated": todo,
            "skipped (done)": num_videos - todo,
            "frames/video": length + context,
            "videos/s": "-" if rate is None else f"{rate:.3g}",
            "workers": f"{timing['workers']} ({g.backend}, {timing['device']})",
            "seconds": result["seconds"],
        },
    )
    return result


# ------------------------------------------------------------------------------------------------
# Previews


def read_video(path: Path) -> np.ndarray:
    """Frames (T, H, W, C) uint8 of a generated file (npy, or decoded with PyAV)."""
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    from pipeline.io.video import decode_frames

    return np.stack(list(decode_frames(str(path))))


def _rgb(frames: np.ndarray) -> np.ndarray:
    return np.repeat(frames, 3, axis=-1) if frames.shape[-1] == 1 else frames


def write_png(path: Path, image: np.ndarray) -> None:
    """An RGB uint8 (H, W, 3) image as PNG, encoded by PyAV's png encoder (tmp + rename)."""
    import av

    image = np.ascontiguousarray(_rgb(image))
    ctx = av.CodecContext.create("png", "w")
    ctx.width, ctx.height, ctx.pix_fmt = image.shape[1], image.shape[0], "rgb24"
    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
    data = b"".join(bytes(p) for p in [*ctx.encode(frame), *ctx.encode(None)])
    _write_file(path.parent, path.name, data)


def _preview(out: Path, rows: list[dict[str, Any]], g: GenerateConfig) -> dict[str, str]:
    """Previews of the first videos, made from the written files themselves."""
    return write_previews([read_video(out / r["path"]) for r in rows], out, g.fps)


def write_previews(
    videos: list[np.ndarray], out: Path, fps: float, stem: str = "preview"
) -> dict[str, str]:
    """`stem`.png (a row of up to 16 frames per video, up to 8 videos) and `stem`.gif (every
    video tiled in a near-square grid, animated) of uint8 videos (T, H, W, C)."""
    from pipeline.io.video import write_video

    videos = [_rgb(v) for v in videos]
    steps = min(len(v) for v in videos)
    videos = [v[:steps] for v in videos]
    h, w = videos[0].shape[1:3]
    pad = 2
    shown = np.unique(np.linspace(0, steps - 1, min(steps, 16)).round().astype(int))
    strip_rows = []
    for v in videos[:8]:
        tiles = [np.pad(v[t], ((pad, pad), (pad, pad), (0, 0)), constant_values=255) for t in shown]
        strip_rows.append(np.concatenate(tiles, axis=1))
    png, gif = out / f"{stem}.png", out / f"{stem}.gif"
    write_png(png, np.concatenate(strip_rows, axis=0))
    cols = math.ceil(math.sqrt(len(videos)))
    grid_rows = math.ceil(len(videos) / cols)
    canvas = np.full((steps, grid_rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for k, v in enumerate(videos):
        y, x = pad + (k // cols) * (h + pad), pad + (k % cols) * (w + pad)
        canvas[:, y : y + h, x : x + w] = v
    scale = max(1, 256 // max(canvas.shape[1:3]))  # tiny frames: enlarge to ~256 px
    if scale > 1:
        canvas = canvas.repeat(scale, axis=1).repeat(scale, axis=2)
    write_video(str(gif), canvas, fps)
    return {f"{stem}_png": str(png), f"{stem}_gif": str(gif)}


__all__ = [
    "GenerateConfig",
    "Renderer",
    "code_ids",
    "read_video",
    "run",
    "sample_videos",
    "video_name",
    "video_seed",
    "write_png",
    "write_previews",
]
