"""`framecast STAGE [hydra overrides]`: one entry point for every stage.

Each stage is a module of `pipeline` with `run(cfg: DictConfig) -> dict`, configured by
`configs/<stage>.yaml`. A user mistake prints one line and exits 2; a stage that finished with
some inputs failed exits 3 (it raises `PartialFailure`).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from importlib import resources

from omegaconf import OmegaConf

from pipeline.config import StageFailed, UsageError, compose

# stage -> (module that runs it, one line for `framecast --help`)
STAGES: dict[str, tuple[str, str]] = {
    "synth": (
        "pipeline.synth",
        "render a synthetic dataset (Moving MNIST, ...) into a frame store",
    ),
    "ingest": ("pipeline.ingest", "decode videos with PyAV on Ray actors into a frame store"),
    "train": ("pipeline.train", "train a model family on a store (local or Ray Train DDP)"),
    "evaluate": ("pipeline.evaluate", "metrics per future step against baselines, plots"),
    "predict": ("pipeline.predict", "predict the future of a video file, write an mp4"),
    "generate": ("pipeline.generate", "batch-generate videos from a generator checkpoint"),
    "serve": ("pipeline.serve", "serve predictors and generators over HTTP (Ray Serve)"),
    "stream": ("pipeline.stream", "live prediction from a camera, URL or file, with a page"),
    "run": ("pipeline.run", "run a pipeline of stages, cached, into one run directory"),
    "info": ("pipeline.info", "print a JSON summary of a frame store"),
    "report": ("pipeline.report", "rebuild the HTML report of a run directory"),
}

# stages whose module has not landed yet, and the issue that brings each
PLANNED: dict[str, str] = {}

EXIT_USAGE = 2
EXIT_PARTIAL = 3


class PartialFailure(Exception):
    """Raised by a stage that finished but could not process some inputs (exit status 3)."""


def _usage() -> str:
    width = max(map(len, STAGES))
    lines = [
        "usage: framecast STAGE [key=value ...]   (Hydra overrides; STAGE --help shows its config)",
        "",
        "stages:",
    ]
    lines += [f"  {name:<{width}}  {desc}" for name, (_, desc) in STAGES.items()]
    lines += [
        "",
        "every stage accepts report=PATH (its result JSON); exit status 0 ok, 2 usage error,",
        "3 finished with some inputs failed",
    ]
    return "\n".join(lines)


def _groups() -> dict[str, list[str]]:
    root = resources.files("pipeline.configs")
    out = {}
    for d in sorted(root.iterdir(), key=lambda p: p.name):
        if d.is_dir() and not d.name.startswith("_"):
            opts = sorted(p.name[:-5] for p in d.iterdir() if p.name.endswith(".yaml"))
            if opts:
                out[d.name] = opts
    return out


def _stage_help(stage: str) -> str:
    cfg = compose(stage, [])
    used = [g for g in _groups() if g in cfg]
    lines = [f"usage: framecast {stage} [key=value ...]", f"  {STAGES[stage][1]}", ""]
    if used:
        lines.append("config groups (choose with GROUP=OPTION):")
        lines += [f"  {g}: {', '.join(_groups()[g])}" for g in used]
        lines.append("")
    lines.append("config (defaults; ??? = required):")
    lines.append(OmegaConf.to_yaml(cfg).rstrip())
    return "\n".join(lines)


def _stage_module(stage: str):  # noqa: ANN202
    name = STAGES[stage][0]
    if importlib.util.find_spec(name) is None:
        return None
    return importlib.import_module(name)


def _fail(stage: str | None, msg: str) -> int:
    where = f"framecast {stage}" if stage else "framecast"
    print(f"{where}: error: {msg}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if args else EXIT_USAGE
    stage, overrides = args[0], args[1:]
    if stage not in STAGES:
        return _fail(None, f"unknown stage '{stage}' (stages: {', '.join(STAGES)})")
    if any(a in ("-h", "--help") for a in overrides):
        if _stage_module(stage) is None:
            return _fail(stage, f"stage '{stage}' is not implemented yet ({PLANNED[stage]})")
        try:
            print(_stage_help(stage))
        except UsageError as e:
            return _fail(stage, str(e))
        return 0
    from pipeline.store import FrameStoreError

    try:
        module = _stage_module(stage)
        if module is None:
            return _fail(stage, f"stage '{stage}' is not implemented yet ({PLANNED[stage]})")
        cfg = compose(stage, overrides)
        module.run(cfg)
    except (UsageError, FrameStoreError) as e:
        return _fail(stage, str(e))
    except StageFailed as e:
        print(f"framecast {stage}: failed: {e}", file=sys.stderr)
        return 1
    except PartialFailure as e:
        print(f"framecast {stage}: {e}", file=sys.stderr)
        return EXIT_PARTIAL
    except KeyboardInterrupt:
        print(f"framecast {stage}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
