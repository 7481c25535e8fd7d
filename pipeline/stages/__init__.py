"""The stage table: one module (or folder) per `framecast` command.

Each stage module has `run(cfg: DictConfig) -> dict`, configured by `configs/<stage>.yaml`. A
stage never imports another stage: the CLI (`pipeline/cli.py`) and `framecast run`
(`pipeline/stages/run.py`) read this table and import a stage by its module name.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# stage -> (module that runs it, one line for `framecast --help`)
STAGES: dict[str, tuple[str, str]] = {
    "synth": (
        "pipeline.stages.synth",
        "render a synthetic dataset (Moving MNIST, ...) into a frame store",
    ),
    "ingest": (
        "pipeline.stages.ingest",
        "decode videos with PyAV on Ray actors into a frame store",
    ),
    "train": ("pipeline.stages.train", "train a model family on a store (local or Ray Train DDP)"),
    "evaluate": ("pipeline.stages.evaluate", "metrics per future step against baselines, plots"),
    "predict": ("pipeline.stages.predict", "predict the future of a video file, write an mp4"),
    "generate": ("pipeline.stages.generate", "batch-generate videos from a generator checkpoint"),
    "serve": ("pipeline.stages.serve", "serve predictors and generators over HTTP (Ray Serve)"),
    "stream": ("pipeline.stages.stream", "live prediction from a camera, URL or file, with a page"),
    "run": ("pipeline.stages.run", "run a pipeline of stages, cached, into one run directory"),
    "info": ("pipeline.stages.info", "print a JSON summary of a frame store"),
    "report": ("pipeline.stages.report", "rebuild the HTML report of a run directory"),
}


def stage_module(stage: str) -> ModuleType:
    """The module of `stage` (a key of STAGES), imported on first use: a stage's import cost
    (Ray, FastAPI, matplotlib...) is paid only by the command that runs it."""
    return importlib.import_module(STAGES[stage][0])
