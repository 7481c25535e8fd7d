"""Prediction quality per CPU-minute (issues 15, 19): the paper's pixel head against the CPU
predictors.

One run trains, for the same wall time on this machine and through the real stages
(`framecast synth / train / evaluate`),

    (a) the paper's composite LSTM with its pixel head at CPU size  (model=lstm_autoencoder_small)
    (b) the CPU predictor: ConvLSTM on a patch grid + the warp head  (model=lstm_autoencoder_cpu)
    (c) the space-time Transformer + the warp head  (model=transformer_predictor_cpu;
        --transformer-model none leaves it out)

on Moving MNIST (held-out test digits) and on `data=textures` (held-out photographs), and
evaluates each beside copy-last-frame on the held-out videos, 10 -> 10. Rows: (b)'s, (c)'s and
copy-last's MSE, PSNR, SSIM and sharpness with ratios against (a), (b) and (c) against
copy-last, and (c) against (b); the JSON also keeps every per-step curve and the evaluate
folders (sample grids, flow/mask views).

    python bench/quality.py --minutes 5 --json out/bench/quality.json
    python bench/quality.py --minutes 10 --datasets mnist --json out/bench/quality_mnist.json
    python bench/quality.py --smoke            # seconds: the script's own check (tests run it)
    bash bench/gpu/quality.sh                  # the papers' sizes on one GPU (--device cuda)
    bash bench/gpu/transformer.sh              # (c) at the GPU size against the paper LSTM

MSE is per frame, summed over its pixels (the Moving MNIST convention); sharpness is the
predictions' gradient energy over the true frames' (1 = as sharp as the truth; the blurred mean
that wins MSE scores near 0).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Table  # noqa: E402
from pipeline.cli import main as framecast  # noqa: E402

METRICS = (("mse", "per frame"), ("psnr", "dB"), ("ssim", ""), ("sharpness", "x truth"))
MODELS = {
    "paper": "lstm_autoencoder_small",
    "cpu": "lstm_autoencoder_cpu",
    "transformer": "transformer_predictor_cpu",
}
NAMES = {"cpu": "cpu predictor", "transformer": "transformer predictor"}  # row names
# --smoke: each model at a few-second size (its own option names)
SMOKE = {
    "paper": ["model.hidden=32"],
    "cpu": ["model.conv_channels=8"],
    "transformer": ["model.dim=16", "model.heads=2", "model.blocks=1"],
}
# Per dataset: its synth options and the model options it needs (channels, the paper head's loss)
DATASETS: dict[str, dict[str, Any]] = {
    "mnist": {
        "synth": ["data=moving_mnist", "data.test_fraction=0.2"],
        "model": {"paper": ["model.loss=bce"], "cpu": [], "transformer": []},
        "channels": 1,
    },
    "textures": {
        "synth": ["data=textures"],
        "model": {"paper": ["model.loss=mse"], "cpu": [], "transformer": []},
        "channels": 3,
    },
}


def run(*args: str) -> None:
    rc = framecast(list(args))
    if rc != 0:
        raise SystemExit(f"framecast {' '.join(args)}: exit status {rc}")


def measure(
    name: str, spec: dict[str, Any], work: Path, a: argparse.Namespace, minutes: float, videos: int
) -> dict[str, Any]:
    """Synth the dataset, train each model for `minutes`, evaluate each; their metrics."""
    smoke = a.smoke
    store = work / f"{name}.zarr"
    run("synth", f"store={store}", *spec["synth"], f"synth.num_videos={videos}", "synth.length=20")
    out: dict[str, Any] = {}
    for key, (model, sets) in chosen(a).items():
        run_dir = work / f"{name}-{key}"
        extra = list(spec["model"][key]) + [f"model.channels={spec['channels']}"]
        extra += sets or []
        if smoke:  # seconds, not minutes: the script's own check
            extra += [*SMOKE[key], "trainer.batch_size=4"]
        t0 = time.perf_counter()
        run(
            "train",
            f"model={model}",
            f"store={store}",
            f"run_dir={run_dir}",
            f"trainer.max_minutes={minutes}",
            "trainer.max_steps=1000000",
            "trainer.checkpoint_every=1000000",
            f"trainer.batch_size={a.batch}" if not smoke else "trainer.log_every=1",
            f"trainer.device={a.device}",
            *extra,
        )
        seconds = time.perf_counter() - t0
        trained = json.loads((run_dir / "train.json").read_text())
        ckpt = run_dir / "checkpoints" / "last.pt"
        ev = run_dir / "evaluate"
        run(
            "evaluate",
            f"checkpoint={ckpt}",
            f"store={store}",
            f"evaluate.out={ev}",
            "evaluate.context=10",
            "evaluate.horizon=10",
            "evaluate.max_sequences=200",
            f"evaluate.device={a.device}",
        )
        metrics = json.loads((ev / "metrics.json").read_text())
        out[key] = {
            "model": model,
            "steps": trained.get("steps"),
            "train_seconds": round(seconds, 1),
            "evaluate": str(ev),
            "metrics": metrics,
        }
    return out


def chosen(a: argparse.Namespace) -> dict[str, tuple[str, list[str] | None]]:
    """The models this run trains, key -> (configs/model/NAME, extra overrides): (a), (b) and,
    unless --transformer-model none, (c)."""
    out = {"paper": (a.paper_model, a.paper_set), "cpu": (a.cpu_model, a.cpu_set)}
    if a.transformer_model != "none":
        out["transformer"] = (a.transformer_model, a.transformer_set)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0, help="training wall time per model")
    ap.add_argument("--datasets", default="mnist,textures", help="comma list: mnist, textures")
    ap.add_argument("--videos", type=int, default=1000, help="videos synthesised per dataset")
    ap.add_argument("--out", default=None, help="keep stores and runs here (default: a temp dir)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds: checks the script")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda (trainer and evaluate)")
    ap.add_argument("--batch", type=int, default=16, help="clips per training step")
    ap.add_argument("--paper-model", default=MODELS["paper"], help="configs/model/NAME of (a)")
    ap.add_argument("--cpu-model", default=MODELS["cpu"], help="configs/model/NAME of (b)")
    ap.add_argument(
        "--transformer-model",
        default=MODELS["transformer"],
        help="configs/model/NAME of (c); none: leave it out",
    )
    ap.add_argument("--paper-set", nargs="*", help="extra overrides of (a), e.g. model.hidden=2048")
    ap.add_argument("--cpu-set", nargs="*", help="extra overrides of (b), e.g. model.layers=2")
    ap.add_argument(
        "--transformer-set", nargs="*", help="extra overrides of (c), e.g. model.dim=128"
    )
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    minutes, videos = (0.05, 12) if a.smoke else (a.minutes, a.videos)
    names = [d.strip() for d in a.datasets.split(",") if d.strip()]
    unknown = [d for d in names if d not in DATASETS]
    if unknown:
        raise SystemExit(f"--datasets: unknown {unknown} (known: {', '.join(DATASETS)})")
    table = Table(f"prediction quality after {minutes:g} training minutes per model, 10 -> 10")
    curves: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="framecast-quality-") as tmp:
        work = Path(a.out) if a.out else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name in names:
            res = measure(name, DATASETS[name], work, a, minutes, videos)
            paper, cpu = res["paper"]["metrics"], res["cpu"]["metrics"]
            others = [k for k in NAMES if k in res]
            for metric, unit in METRICS:
                ref = f"{name} {metric}: paper head ({a.paper_model})"
                table.add(ref, paper[metric], unit)
                for key in others:
                    table.add(
                        f"{name} {metric}: {NAMES[key]}", res[key]["metrics"][metric], unit, ref
                    )
                table.add(f"{name} {metric}: copy-last", cpu["copy_last"][metric], unit, ref)
                for key in others:
                    table.add(
                        f"{name} {metric}: {NAMES[key]} / copy-last",
                        res[key]["metrics"][metric] / cpu["copy_last"][metric],
                        "ratio",
                    )
                if "transformer" in res:
                    table.add(
                        f"{name} {metric}: transformer predictor / cpu predictor",
                        res["transformer"]["metrics"][metric] / cpu[metric],
                        "ratio",
                    )
            curves[name] = {
                key: {
                    "steps": r["steps"],
                    "train_seconds": r["train_seconds"],
                    "evaluate": r["evaluate"] if a.out else None,
                    "per_step": r["metrics"]["per_step"],
                }
                for key, r in res.items()
            }
            curves[name]["copy_last"] = {"per_step": cpu["copy_last"]["per_step"]}
        table.print()
        table.write(
            a.json,
            minutes=minutes,
            machine=f"{platform.node()} {platform.machine()}",
            curves=curves,
        )


if __name__ == "__main__":
    main()
