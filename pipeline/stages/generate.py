"""`framecast generate`: batch-generate videos from a generator checkpoint (or long rollouts of a
predictor), on Ray workers or in this process, encoded with PyAV.

    framecast generate checkpoint=CKPT out=DIR num_videos=N generate.length=T generate.seed=S
        [generate.category=K] [generate.fix=content|motion] [generate.format=mp4|gif|npy]

Codes. Video i of a run seeded S is `Generator.sample(1, T, seed=S, start=i)`
(`pipeline/runtime/sampling.py`, the seed scheme of `models/protocols.py`): its codes come from a
CPU torch.Generator seeded with `video_seed(S, i)` (a numpy SeedSequence of (S, i)), so video i
depends only on (S, i), whatever N, the batch size, the number of workers or an interruption. A
video is the content code of "draw c" and the motion noise (and, unless `generate.category` is
given, the category: the action is part of the motion) of "draw m": c = m = i normally;
`fix=content` gives every video the content of draw 0 (c = 0, m = i: one content, N motions);
`fix=motion` the motion of draw 0 (c = i, m = 0). `content_id` and `motion_id` in the manifest
are those c and m.

Files in DIR: `video_NNNNNN.<format>` (mp4: libx264; gif; npy: uint8 (T, H, W, C)),
`manifest.jsonl` (one line per finished video: index, path, seed, video_seed, category,
category_name, length, content_id, motion_id), `preview.png` (a row of frames per video),
`preview.gif` (the first videos tiled, animated) and `generate.json` (the result).

Resume. Workers render and encode; the driver alone writes DIR: each video goes to a `.part`
file renamed into place, then its manifest line is appended. A rerun with the same settings
(kept in DIR/.generate-settings.json; other settings are refused) skips every finished file,
rebuilds the manifest from the files, and renders only the rest; a larger num_videos extends a
run.

Predictor checkpoints (`Predictor.predict(observed, horizon)`) are rolled out: with
`store=URL`, video i observes the first `generate.context` frames of a store video (the split's
videos in an order shuffled by the seed, cycling) and rolls out `generate.length` frames; the
file holds the observed frames followed by the predicted ones.

`generate.backend=local` renders in this process without importing Ray (bare GPU hosts).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from pipeline.core.config import StageFailed, UsageError, required, typed, write_json, write_result
from pipeline.core.frames import to_model, to_uint8
from pipeline.core.progress import progress, summary
from pipeline.io import storage
from pipeline.io.loader import select_videos
from pipeline.io.previews import read_video, write_atomic, write_previews
from pipeline.io.store import FrameStore
from pipeline.io.video import encode_video
from pipeline.runtime.cluster import address_of, ray_init
from pipeline.runtime.inference import LoadedModel, load_model, pick_device
from pipeline.runtime.sampling import code_ids, sample_videos, video_categories, video_seed

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


def video_name(index: int, fmt: str) -> str:
    return f"video_{index:06d}.{fmt}"


class Renderer:
    """One worker: the model on its device; `render(unit)` samples (or rolls out) a unit's
    videos and returns their encoded files. A Ray actor, or a plain object with backend=local.
    Pure: it never touches the output folder (the driver writes every file).

    `payload`: `LoadedModel.payload()` of the driver's checkpoint (its inference networks only);
    a unit: videos start .. start+count-1 of the run, `write` the indices still to encode, and
    for predictors `seed_frames`, uint8 (count, context, H, W, C) read by the driver."""

    def __init__(self, payload: dict[str, Any], opts: dict[str, Any]) -> None:
        threads = opts.get("threads")
        if threads:
            torch.set_num_threads(int(threads))
        self.loaded = load_model(payload, opts["device"])
        self.opts = opts

    @property
    def device(self) -> torch.device:
        return self.loaded.device

    def ready(self) -> str:
        return str(self.device)

    def frames(self, unit: dict[str, Any]) -> np.ndarray:
        """The unit's videos as uint8 (count, T, H, W, C)."""
        o, loaded = self.opts, self.loaded
        with loaded.inference():
            if loaded.kind == "predictor":
                seed = unit["seed_frames"]  # (count, context, H, W, C)
                pred = loaded.model.predict(to_model(seed, self.device), o["length"])
                return np.concatenate([seed, to_uint8(pred)], axis=1)
            return sample_videos(
                loaded.model,
                o["seed"],
                unit["start"],
                unit["count"],
                o["length"],
                o["category"],
                o["fix"],
            )

    def render(self, unit: dict[str, Any]) -> list[tuple[int, bytes]]:
        """[(index, file bytes)] of the unit's videos still to write (`unit["write"]`)."""
        o = self.opts
        frames = self.frames(unit)
        return [
            (unit["start"] + k, encode_video(frames[k], o["format"], o["fps"], o["crf"]))
            for k in range(unit["count"])
            if unit["start"] + k in unit["write"]
        ]


# ------------------------------------------------------------------------------------------------
# The driver


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
    if g.backend == "local":  # Ray workers pick their device where they run
        pick_device(g.device)
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
    ckpt_path: str, step: int, g: GenerateConfig, length: int, extra: dict[str, Any]
) -> dict[str, Any]:
    """What the files of a run depend on (num_videos, workers, backend and batch size do not
    change a video)."""
    return {
        "checkpoint": storage.resolve(ckpt_path),
        "step": step,
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


def _write_manifest(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    os.replace(tmp, path)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    tail = [ln for ln in text if ln.strip()][-1:] if text else []
    return tail[0].strip() if tail else type(e).__name__


def _run_local(
    payload: dict[str, Any],
    opts: dict[str, Any],
    units: list[dict[str, Any]],
    on_result: Callable[[list[tuple[int, bytes]]], None],
) -> dict[str, Any]:
    renderer = Renderer(payload, opts)
    t0 = time.perf_counter()
    for unit in units:
        on_result(renderer.render(unit))
    return {"workers": 1, "device": str(renderer.device), "seconds": time.perf_counter() - t0}


def _run_ray(
    payload: dict[str, Any],
    opts: dict[str, Any],
    units: list[dict[str, Any]],
    on_result: Callable[[list[tuple[int, bytes]]], None],
    workers: int | None,
    address: str | None = None,
) -> dict[str, Any]:
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
    cfg: DictConfig, test_fraction: float, g: GenerateConfig, context: int, shape: tuple
) -> tuple[FrameStore, list[str]]:
    """(store, video ids in the seed's order) for predictor rollouts."""
    if not cfg.get("store"):
        raise UsageError(
            "this checkpoint is a predictor: generate rolls it out from seed frames, give "
            "store=URL (the first generate.context frames of its videos seed the rollouts)"
        )
    store = FrameStore.open(str(cfg.store))
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


def _generator_rows(
    loaded: LoadedModel, g: GenerateConfig, num_videos: int, length: int, category: int | None
) -> list[dict[str, Any]]:
    """The manifest rows of a generator's run: the requested category, else each video's as
    its worker will draw it (without rendering)."""
    cats = video_categories(loaded.model, g.seed, range(num_videos), category, g.fix)
    names = loaded.categories
    rows = []
    for i in range(num_videos):
        c, m = code_ids(i, g.fix)
        cat = None if cats is None else int(cats[i])
        name = None if cat is None else (names[cat] if cat < len(names) else str(cat))
        rows.append(
            {
                "index": i,
                "path": video_name(i, g.format),
                "seed": g.seed,
                "video_seed": video_seed(g.seed, i),
                "length": length,
                "content_id": c,
                "motion_id": m,
                "category": cat,
                "category_name": name,
            }
        )
    return rows


def run(cfg: DictConfig) -> dict:
    g = typed(cfg.generate, GenerateConfig, "generate")
    ckpt_path = str(required(cfg, "checkpoint"))
    out = Path(str(required(cfg, "out")))
    num_videos = int(required(cfg, "num_videos"))
    _check(g, num_videos)
    t_start = time.perf_counter()
    # the driver's copy (CPU) plans the run: the manifest's categories, the workers' payload
    loaded = load_model(ckpt_path, "cpu", want=("generator", "predictor"), stage="generate")
    size, channels = loaded.frame_size, loaded.channels

    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    store = None
    context = 0
    category = None
    if loaded.kind == "generator":
        if cfg.get("store"):
            raise UsageError("store= seeds predictor rollouts; a generator checkpoint needs none")
        length = int(g.length or loaded.length)
        category = _category(g.category, loaded.num_categories, loaded.categories)
        rows = _generator_rows(loaded, g, num_videos, length, category)
    else:
        if g.fix is not None or g.category is not None:
            raise UsageError(
                "generate.fix and generate.category control generators; this checkpoint is a "
                f"predictor ({loaded.family})"
            )
        context = int(g.context or loaded.context)
        length = int(g.length or loaded.horizon)
        if context < 1:
            raise UsageError(f"generate.context={context}: must be >= 1")
        store, sources = _predictor_sources(
            cfg, loaded.test_fraction, g, context, (size, size, channels)
        )
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

    out.mkdir(parents=True, exist_ok=True)
    _claim(out, _settings(ckpt_path, loaded.step, g, length, extra))
    for stale in out.glob(".*.part"):  # an interrupted write: never renamed, never listed
        stale.unlink()
    done = {r["index"] for r in rows if (out / r["path"]).exists()}
    manifest = out / MANIFEST
    _write_manifest(manifest, [r for r in rows if r["index"] in done])  # rebuilt from the files

    units = []
    for first in range(0, num_videos, g.batch_size):
        write = {i for i in range(first, min(first + g.batch_size, num_videos)) if i not in done}
        if not write:
            continue
        # a unit is a range of the run: from its first to its last video still to write
        start = min(write)
        unit: dict[str, Any] = {"start": start, "count": max(write) + 1 - start, "write": write}
        if store is not None:  # the driver reads the seed frames: workers need no store access
            unit["seed_frames"] = np.stack(
                [store.frames(rows[i]["source"], 0, context) for i in range(start, max(write) + 1)]
            )
        units.append(unit)

    payload = loaded.payload()  # the inference networks only: no discriminator, no optimiser
    opts = {
        "device": g.device,
        "seed": g.seed,
        "length": length,
        "category": category,
        "fix": g.fix,
        "format": g.format,
        "fps": g.fps,
        "crf": g.crf,
    }
    todo = num_videos - len(done)

    timing: dict[str, Any] = {"workers": 0, "device": None, "seconds": 0.0}
    with progress("generate", num_videos, "videos", completed=len(done)) as bar:
        if units:
            with open(manifest, "a") as log:

                def on_result(files: list[tuple[int, bytes]]) -> None:
                    for i, data in files:
                        write_atomic(out / rows[i]["path"], data)
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
        "model": loaded.family,
        "kind": loaded.kind,
        "step": loaded.step,
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
        "settings": _settings(ckpt_path, loaded.step, g, length, extra),
        "files": files,
    }
    if loaded.kind == "predictor":
        result["context"] = context
    write_result(cfg, result, str(out / "generate.json"))
    rate = result["videos_per_s"]
    summary(
        f"generate {num_videos} {loaded.family} videos -> {out}",
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


def _preview(out: Path, rows: list[dict[str, Any]], g: GenerateConfig) -> dict[str, str]:
    """Previews of the first videos, made from the written files themselves."""
    return write_previews([read_video(out / r["path"]) for r in rows], out, g.fps)


__all__ = ["GenerateConfig", "Renderer", "run", "video_name"]
