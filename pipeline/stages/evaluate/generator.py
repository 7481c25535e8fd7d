"""`framecast evaluate` of a generator checkpoint: offline metrics, no downloaded weights needed.

    framecast evaluate checkpoint=GEN.pt store=REAL.zarr evaluate.classifier=CLS.pt
        [evaluate.num_videos=256] [evaluate.i3d=I3D.pt]

`evaluate.num_videos` videos are generated (seed `evaluate.seed`, video i as `framecast
generate` makes it; conditional generators: categories balanced, i mod K) and as many real
clips of the same length are cut from the store's `evaluate.split`. Frames of both are uint8
(what users get) before they are measured. In `metrics.json`:

- `acd`: average content distance as Tulyakov et al. 2018 define it for shape motion: per video,
  the mean L2 distance between the mean colours (RGB in [0, 1]) *of the object* in every pair
  of its frames, averaged over the videos; generated and real. The object's pixels: on a
  shapes store the one object `shape_fill` finds, less its anti-aliased rim
  (`models.metrics.object_masks`, `interior`); on a stick-figure store the figure's pixels
  (`figure_masks`: far from both the sky and the floor colour). A frame without an object is
  left out, and so is a video with fewer than 2 such frames (`videos` counts the rest).
  Other stores (natural video): null, with a note (no object masks; the paper used a face
  identity network there). (The mean colour of whole frames, which this key held before, is
  not ACD: a shape covers 2-10 % of a frame, so its colour drift was diluted 10-50x.)
- `shape_fill` (stores of shape motion, attribute source "shapes"; null otherwise, noted):
  whether the generated videos show recognisable circles and squares. Per frame, the fill ratio
  of the one object, |object| / |its bounding box| (~pi/4 circles, ~1 squares; the formula is
  in `models.metrics.shape_fill`); `bands`: the circle and square bands of the real frames'
  fill; `generated` and `real`: shares of frames with one compact object (`single_object`), of
  those in the circle / square band (`circle_like`, `square_like`, `recognisable` = both) and
  of videos whose frames agree on one class (`videos_recognisable`), and the median fill;
  beside the fill, each object's IoU with a disc and with a square of its own area and centroid
  (`models.metrics.read_shapes`): frames that read as a circle / square (`read_circle`,
  `read_square`, `read_shape`: the nearer template at IoU >= 0.9; clean shapes score 0.97-1,
  the other template 0.84) and the median IoU with the nearer template. The fill band is
  pixel-exact (one stray pixel widens the box); the templates forgive that, not a blob between
  the two shapes. A conditional generator on a store whose labels name one shape each
  (`data.label=shape_motion`) also gets `by_request`: per requested shape, the same summary of
  the videos asked for it, `read_as_requested`, the share of their frames read as that shape,
  and `nearer_requested`, the share whose one object is nearer that shape's template (any IoU);
- with `evaluate.classifier` (a classifier checkpoint, `framecast train` of a classifier family
  on the real data): `accuracy` of its predictions on the generated videos against the category
  each was generated for (conditional generators; per class too) beside its accuracy on the real
  clips; `inception_score`, exp(E_x KL(p(y|x) || p(y))) of its posteriors (Salimans et al.
  2016; MoCoGAN's headline metric), for generated and real videos, on `splits` equal parts
  (10, fewer below 20 videos a part) with the standard deviation over them (1 <= IS <= K
  `classes`: high when every video is confidently one class and the classes are used evenly);
  and `frechet_distance` between generated and real clips in its feature space. (ACD of its
  per-frame features is not reported: a classifier trained on motion categories encodes
  motion, not content.)
- with `evaluate.i3d` (an I3D the user supplies: TorchScript, or a torch.export .pt2 file):
  `fvd`, the Fréchet distance of I3D features (frames resized to `evaluate.i3d_size`, scaled
  to [-1, 1], fed as (B, 3, T, H, W)); without it `fvd` is null and `notes` says why.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from models import families_of
from models.metrics import (
    IS_SPLITS,
    READ_CIRCLE,
    READ_SQUARE,
    average_content_distance,
    described_videos,
    feature_statistics,
    figure_masks,
    fill_bands,
    frechet_distance,
    inception_score,
    interior,
    object_colours,
    object_masks,
    read_shapes,
    shape_fill,
    shape_recognisability,
)
from models.protocols import Classifier, Generator
from pipeline.core.config import UsageError, existing_path, required, write_result
from pipeline.core.frames import to_model
from pipeline.core.progress import progress, summary
from pipeline.io.loader import ClipDataset
from pipeline.io.previews import write_previews
from pipeline.io.store import FrameStore
from pipeline.runtime.inference import LoadedModel, load_model
from pipeline.runtime.sampling import sample_videos
from pipeline.stages.evaluate.common import EvaluateConfig, default_out


def _check(ev: EvaluateConfig) -> None:
    if ev.num_videos < 2:
        raise UsageError(f"evaluate.num_videos={ev.num_videos}: need >= 2 (statistics of sets)")
    if ev.length is not None and ev.length < 2:
        raise UsageError(f"evaluate.length={ev.length}: need >= 2 frames (ACD compares frames)")
    if ev.batch_size < 1 or ev.i3d_size < 8:
        raise UsageError("evaluate.batch_size must be >= 1 and evaluate.i3d_size >= 8")
    if ev.split not in ("train", "test", "all"):
        raise UsageError(f"evaluate.split={ev.split}: use train, test or all")


def _generated(
    generator: Generator, ev: EvaluateConfig, length: int
) -> tuple[np.ndarray, list[int] | None]:
    """Videos 0 .. num_videos-1 of the run seeded `evaluate.seed` (as `framecast generate`
    makes them), uint8 (N, T, H, W, C), and their requested categories: balanced, video i asks
    for category i mod K (None for an unconditional generator)."""
    k = generator.num_categories
    out, cats = [], [] if k else None
    with progress("generate", ev.num_videos, "videos") as bar:
        for start in range(0, ev.num_videos, ev.batch_size):
            n = min(ev.batch_size, ev.num_videos - start)
            wanted = [i % k for i in range(start, start + n)] if k else None
            out.append(sample_videos(generator, ev.seed, start, n, length, wanted))
            if cats is not None:
                cats += wanted
            bar.advance(n)
    return np.concatenate(out), cats


def _real(
    url: str, ev: EvaluateConfig, length: int, test_fraction: float
) -> tuple[np.ndarray, np.ndarray | None, list[Any]]:
    """Up to num_videos real clips (N, T, H, W, C) uint8, their label indices (or None when the
    store's videos carry no "label") and the store's categories."""
    split = None if ev.split == "all" else ev.split
    kwargs = dict(
        stride=length,
        split=split,
        test_fraction=test_fraction,
        cache=False,
        shuffle=True,
        seed=ev.seed,
        epochs=1,
    )
    try:
        try:
            ds = ClipDataset(url, length, ev.batch_size, labels=True, **kwargs)
        except ValueError as e:
            if "'label'" not in str(e):
                raise
            ds = ClipDataset(url, length, ev.batch_size, labels=False, **kwargs)
    except ValueError as e:
        raise UsageError(f"store={url}: {e}") from None
    clips, labels = [], []
    count = 0
    for batch in ds:
        frames = batch["frames"] if isinstance(batch, dict) else batch
        take = min(len(frames), ev.num_videos - count)
        clips.append(frames[:take].numpy())
        if isinstance(batch, dict):
            labels.append(batch["label"][:take].numpy())
        count += take
        if count >= ev.num_videos:
            break
    label_array = np.concatenate(labels) if labels else None
    return np.concatenate(clips), label_array, list(ds.categories)


@torch.no_grad()
def classifier_outputs(
    model: Classifier, videos: np.ndarray, batch: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """Logits (N, K) and features (N, D) of uint8 videos."""
    parts: dict[str, list[torch.Tensor]] = {"logits": [], "features": []}
    for start in range(0, len(videos), batch):
        x = to_model(videos[start : start + batch], device)
        # two protocol calls, each through the trunk: a family's layers (its head) are its own
        # business, and the classifier is small beside the generator
        parts["features"].append(model.features(x).float().cpu())
        parts["logits"].append(model(x).float().cpu())
    return {k: torch.cat(v) for k, v in parts.items()}


@torch.no_grad()
def i3d_features(
    net: Any, videos: np.ndarray, batch: int, device: torch.device, size: int
) -> torch.Tensor:
    """Features (N, D) of a TorchScript video network: frames resized to size x size (bilinear),
    RGB, scaled to [-1, 1], fed as (B, 3, T, H, W); a tuple output gives its first element."""
    feats = []
    for start in range(0, len(videos), batch):
        x = to_model(videos[start : start + batch], device)  # (B, T, C, H, W)
        b, t = x.shape[:2]
        if x.shape[2] == 1:
            x = x.repeat(1, 1, 3, 1, 1)
        x = F.interpolate(x.flatten(0, 1), size=(size, size), mode="bilinear", align_corners=False)
        x = (x.unflatten(0, (b, t)) * 2 - 1).transpose(1, 2).contiguous()  # (B, 3, T, S, S)
        try:  # StyleGAN-V's exported I3D takes these options; plain exports take x alone
            y = net(x, rescale=False, resize=False, return_features=True)
        except (RuntimeError, TypeError):
            y = net(x)
        if isinstance(y, tuple | list):
            y = y[0]
        feats.append(y.reshape(b, -1).float().cpu())
    return torch.cat(feats)


def load_i3d(path: str, device: torch.device) -> Any:
    """An I3D network from `path`: TorchScript (torch.jit.save) or an exported program
    (torch.export.save, .pt2); a clear UsageError for anything else (a bare state_dict too:
    framecast has no I3D definition to load it into)."""
    p = existing_path(path, "evaluate.i3d")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still works
        try:
            return torch.jit.load(str(p), map_location=device).eval()
        except Exception:  # noqa: BLE001 - not TorchScript: try the other formats
            pass
    try:
        return torch.export.load(str(p)).module().to(device)
    except Exception:  # noqa: BLE001
        pass
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001
        obj = None
    if isinstance(obj, dict):
        raise UsageError(
            f"evaluate.i3d={path} is a state_dict; framecast has no I3D definition to load it "
            "into: export the network (torch.export.save, or TorchScript) and pass that file"
        )
    raise UsageError(f"evaluate.i3d={path}: neither TorchScript nor a torch.export program")


def _store_shapes(url: str) -> tuple[str | None, dict[Any, str] | None]:
    """(the "source" attribute of the store's first video (e.g. "shapes"), None when empty;
    {label: shape} when every label of a shapes store names one shape (data.label=shape_motion),
    else None). Attributes come from the store's catalog: no frame is read."""
    store = FrameStore.open(url)
    ids = store.video_ids()
    if not ids:
        return None, None
    source = str(store.attrs(ids[0]).get("source"))
    shapes: dict[Any, set[str]] = {}
    for vid in ids:
        a = store.attrs(vid)
        if "label" in a and "shape" in a:
            shapes.setdefault(a["label"], set()).add(str(a["shape"]))
    one = shapes and all(len(v) == 1 for v in shapes.values())
    return source, ({k: next(iter(v)) for k, v in shapes.items()} if one else None)


def shape_fill_metrics(
    fake: np.ndarray, real: np.ndarray, requested: list[str | None] | None = None
) -> dict[str, Any]:
    """`shape_fill` of metrics.json for uint8 videos (N, T, H, W, C): the real frames' fill
    bands and the recognisability summary of the generated and real videos; with `requested`
    (the shape each generated video was asked for, None where unknown: a conditional generator
    whose categories name shapes), `by_request`: per shape, the summary of the videos asked for it,
    `read_as_requested`, the share of their frames that read as that shape (read_shapes), and
    `nearer_requested`, the share showing one object nearer that shape's template than the
    other's (at any IoU)."""
    pixels = int(fake.shape[2] * fake.shape[3])
    real_m = shape_fill(to_model(real))
    fake_m = shape_fill(to_model(fake))
    bands = fill_bands(real_m, pixels)
    result: dict[str, Any] = {
        "bands": bands,
        "generated": shape_recognisability(fake_m, bands, pixels),
        "real": shape_recognisability(real_m, bands, pixels),
    }
    if requested is not None:
        reading = read_shapes(fake_m, pixels)
        codes = {"circle": READ_CIRCLE, "square": READ_SQUARE}
        by_request: dict[str, Any] = {}
        for shape in sorted({r for r in requested if r is not None}):
            rows = torch.tensor([r == shape for r in requested])
            part = {k: v[rows] for k, v in fake_m.items()}
            summary: dict[str, Any] = {"videos": int(rows.sum())}
            summary.update(shape_recognisability(part, bands, pixels))
            if shape in codes:
                summary["read_as_requested"] = float((reading[rows] == codes[shape]).float().mean())
                # looser: one compact object nearer the requested template than the other
                nearer = read_shapes(part, pixels, min_iou=0.0) == codes[shape]
                summary["nearer_requested"] = float(nearer.float().mean())
            by_request[shape] = summary
        result["by_request"] = by_request
    return result


# ACD's object pixels by the store's "source": (what they are, frames (N, T, C, H, W) -> masks).
ACD_PIXELS = {
    "shapes": ("shape interior", lambda x: interior(object_masks(x))),
    "stick_figures": ("figure", figure_masks),
}
IS_MIN_PART = 20  # videos per part of the Inception Score at least (else fewer parts)


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None


def acd_metrics(fake: np.ndarray, real: np.ndarray, source: str | None) -> dict[str, Any] | None:
    """`acd` of metrics.json for uint8 videos (N, T, H, W, C) of a store whose videos come
    from `source`: the ACD of the object's mean colour, generated and real, their ratio, the
    pixels used and how many videos had an object in >= 2 frames; None without object masks
    for that source."""
    if source not in ACD_PIXELS:
        return None
    pixels, masks = ACD_PIXELS[source]
    values: dict[str, float | None] = {}
    videos: dict[str, int] = {}
    for name, v in (("generated", fake), ("real", real)):
        x = to_model(v)
        colours = object_colours(x, masks(x))  # (N, T, C), NaN where no object
        values[name] = _finite(average_content_distance(colours))
        videos[name] = described_videos(colours)
    g, r = values["generated"], values["real"]
    ratio = g / r if g is not None and r else None
    return {"generated": g, "real": r, "ratio": ratio, "pixels": pixels, "videos": videos}


def inception_metrics(fake_logits: torch.Tensor, real_logits: torch.Tensor) -> dict[str, Any]:
    """`inception_score` of metrics.json from a classifier's logits of generated and real
    videos: IS on the same number of parts for both, IS_SPLITS when every part holds at
    least IS_MIN_PART videos of each set, fewer (down to 1) otherwise."""
    n = min(len(fake_logits), len(real_logits))
    splits = min(IS_SPLITS, max(1, n // IS_MIN_PART))
    g, g_std = inception_score(fake_logits, splits)
    r, r_std = inception_score(real_logits, splits)
    return {
        "generated": g,
        "real": r,
        "ratio": g / r,
        "generated_std": g_std,
        "real_std": r_std,
        "splits": splits,
        "classes": int(fake_logits.shape[1]),
    }


def _label_key(name: str, labels: dict[Any, str]) -> Any:
    """The key of `labels` (store label values, e.g. ints) whose text is `name` (checkpoints
    keep category names as text), or None."""
    return next((k for k in labels if str(k) == name), None)


def run_generator(cfg: DictConfig, loaded: LoadedModel, ev: EvaluateConfig) -> dict[str, Any]:
    """Generator metrics of the generator checkpoint `loaded` (see the module docstring); writes
    metrics.json into evaluate.out (default: beside the checkpoint, as for predictors) and
    returns it."""
    _check(ev)
    ckpt_path = str(required(cfg, "checkpoint"))
    url = cfg.get("store")
    if not url:
        raise UsageError(
            "evaluate of a generator compares it with real videos: give store=URL (the data it "
            "was trained on)"
        )
    url = str(url)
    device = loaded.device
    length = ev.length or loaded.length
    gen_names = loaded.categories
    ours = (loaded.frame_size, loaded.channels)
    notes: list[str] = []

    classifier: LoadedModel | None = None
    if ev.classifier:
        classifier = load_model(
            ev.classifier, device, want=("classifier",), stage="evaluate.classifier"
        )
        theirs = (classifier.frame_size, classifier.channels)
        if ours != theirs:
            raise UsageError(
                f"evaluate.classifier={ev.classifier} takes {theirs[0]}x{theirs[0]}x{theirs[1]} "
                f"frames, the generator makes {ours[0]}x{ours[0]}x{ours[1]}"
            )
    else:
        families = ", ".join(families_of("classifier"))
        notes.append(
            "accuracy, inception_score and frechet_distance skipped: no evaluate.classifier (a "
            f"classifier checkpoint trained on the real data: {families})"
        )

    real, real_labels, real_names = _real(url, ev, length, loaded.test_fraction)
    if real.shape[2:] != (ours[0], ours[0], ours[1]):
        raise UsageError(
            f"store={url}: frames {real.shape[2:]} do not match the generator's "
            f"{ours[0]}x{ours[0]}x{ours[1]}"
        )
    if len(real) < 2:
        raise UsageError(f"store={url}: fewer than 2 clips of {length} frames in split {ev.split}")
    with loaded.inference():
        fake, fake_cats = _generated(loaded.model, ev, length)

    result: dict[str, Any] = {
        "stage": "evaluate",
        "checkpoint": ckpt_path,
        "step": loaded.step,
        "model": loaded.family,
        "data": url,
        "split": ev.split,
        "videos": len(fake),
        "real_videos": len(real),
        "length": length,
        "seed": ev.seed,
        "classifier": ev.classifier,
        "i3d": ev.i3d,
        "acd": None,
        "shape_fill": None,
        "accuracy": None,
        "inception_score": None,
        "frechet_distance": None,
        "fvd": None,
    }
    source, label_shapes = _store_shapes(url)
    result["acd"] = acd_metrics(fake, real, source)
    if result["acd"] is None:
        notes.append(
            f"acd skipped: ACD compares the colour of the object between frames, and the "
            f"store's videos (source {source}) have no object masks (framecast finds the "
            f"object in {' and '.join(ACD_PIXELS)} videos)"
        )
    if source == "shapes":
        requested = None
        if fake_cats is not None and label_shapes is not None and gen_names:
            # the generator's category i is the store's label gen_names[i]
            # (None for a category none of the store's videos has: not counted by shape)
            keys = [_label_key(gen_names[c], label_shapes) for c in fake_cats]
            requested = [label_shapes.get(k) for k in keys]
        result["shape_fill"] = shape_fill_metrics(fake, real, requested)
    else:
        notes.append("shape_fill skipped: the store holds no shape-motion videos (source shapes)")

    if classifier is not None:
        with classifier.inference():
            fo = classifier_outputs(classifier.model, fake, ev.batch_size, device)
            ro = classifier_outputs(classifier.model, real, ev.batch_size, device)
        result["frechet_distance"] = frechet_distance(
            *feature_statistics(fo["features"]), *feature_statistics(ro["features"])
        )
        result["inception_score"] = inception_metrics(fo["logits"], ro["logits"])
        result["accuracy"] = _accuracy(
            fo["logits"],
            fake_cats,
            gen_names,
            ro["logits"],
            real_labels,
            real_names,
            classifier.categories,
        )
        if result["accuracy"] is None:
            notes.append("accuracy skipped: an unconditional generator requests no category")
    if ev.i3d:
        net = load_i3d(ev.i3d, device)
        ff = i3d_features(net, fake, ev.batch_size, device, ev.i3d_size)
        rf = i3d_features(net, real, ev.batch_size, device, ev.i3d_size)
        result["fvd"] = frechet_distance(*feature_statistics(ff), *feature_statistics(rf))
    else:
        notes.append(
            "fvd skipped: no evaluate.i3d (a TorchScript I3D file; framecast downloads nothing)"
        )
    result["notes"] = notes

    out = Path(ev.out) if ev.out else default_out(ckpt_path)
    out.mkdir(parents=True, exist_ok=True)
    shown = max(1, min(ev.grid_sequences, len(fake)))
    result["files"] = write_previews(list(fake[:shown]), out, 8.0, stem="samples")
    write_result(cfg, result, str(out / "metrics.json"))

    rows: dict[str, Any] = {}
    if result["acd"] is not None:
        rows[f"acd, {result['acd']['pixels']} colour (gen / real)"] = _fmt_pair(result["acd"])
    if result["shape_fill"] is not None:
        sf = result["shape_fill"]
        for key in ("recognisable", "read_shape", "videos_recognisable", "single_object"):
            pair = {"generated": sf["generated"][key], "real": sf["real"][key]}
            rows[f"shapes {key} (gen / real)"] = _fmt_pair(pair)
        for shape, part in (sf.get("by_request") or {}).items():
            if "read_as_requested" in part:
                rows[f"asked for a {shape}: read as one / nearer one"] = (
                    f"{part['read_as_requested']:.3f} / {part['nearer_requested']:.3f}"
                )
    if result["accuracy"] is not None:
        rows["accuracy (gen / real)"] = _fmt_pair(result["accuracy"])
    if result["inception_score"] is not None:
        rows["inception score (gen / real)"] = _fmt_pair(result["inception_score"])
    if result["frechet_distance"] is not None:
        rows["frechet distance"] = f"{result['frechet_distance']:.4g}"
    rows["fvd"] = "-" if result["fvd"] is None else f"{result['fvd']:.4g}"
    summary(f"evaluate {loaded.family}: {len(fake)} generated vs {len(real)} real videos", rows)
    return result


def _fmt_pair(pair: dict[str, Any]) -> str:
    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.4g}"

    return f"{fmt(pair['generated'])} / {fmt(pair['real'])}"


def _accuracy(
    fake_logits: torch.Tensor,
    fake_cats: list[int] | None,
    gen_names: list[str],
    real_logits: torch.Tensor,
    real_labels: np.ndarray | None,
    real_names: list[Any],
    cls_names: list[str] | None,
) -> dict[str, Any] | None:
    """Classifier accuracy on generated videos against their requested categories (overall and
    per class) and on real clips against their labels. Categories meet by name (the
    checkpoints' recorded `categories`), or by index when either records none."""
    if fake_cats is None:
        return None
    k = fake_logits.shape[1]

    def to_classifier(names: list[str], index: int) -> int:
        if names and cls_names:
            if names[index] not in cls_names:
                raise UsageError(
                    f"category {names[index]!r} is not one the classifier knows ({cls_names})"
                )
            return cls_names.index(names[index])
        if index >= k:
            raise UsageError(f"category {index} is out of the classifier's {k} categories")
        return index

    target = torch.tensor([to_classifier(gen_names, c) for c in fake_cats])
    hits = fake_logits.argmax(dim=1) == target
    per_class = {}
    for c in sorted(set(fake_cats)):
        mask = torch.tensor([x == c for x in fake_cats])
        name = gen_names[c] if c < len(gen_names) else str(c)
        per_class[name] = float(hits[mask].float().mean())
    real_acc = None
    if real_labels is not None:
        names = [str(c) for c in real_names]
        real_target = torch.tensor([to_classifier(names, int(i)) for i in real_labels])
        real_acc = float((real_logits.argmax(dim=1) == real_target).float().mean())
    generated = float(hits.float().mean())
    return {
        "generated": generated,
        "real": real_acc,
        "ratio": generated / real_acc if real_acc else None,
        "per_class": per_class,
    }


__all__ = [
    "EvaluateConfig",
    "acd_metrics",
    "classifier_outputs",
    "i3d_features",
    "inception_metrics",
    "load_i3d",
    "run_generator",
    "shape_fill_metrics",
]
