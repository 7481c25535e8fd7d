"""`framecast run pipeline=NAME run_dir=DIR`: the stages of a pipeline, chained and cached.

A pipeline is a YAML file of `configs/pipeline/` (the format is described at the top of
`configs/pipeline/demo.yaml`): stages in order, each naming the framecast stage that runs it,
its config, and the outputs it passes on; later stages reference earlier outputs as
`${stages.NAME.outputs.KEY}`. Every stage runs in this process (`pipeline.<stage>.run`) with its
outputs in `run_dir/NAME/`.

Caching. A stage's key is the hash of its resolved config (paths inside run_dir written relative
to it, so a run directory can move) and of the fingerprints of the stages it references; a
stage's fingerprint is the hash of its result JSON and of its output files (a checkpoint; never
a listing of a frame store). A stage whose key matches its completion record
(`run_dir/NAME/stage.json`, written atomically after the stage finished) and whose outputs exist
is skipped. So changing a training setting reruns that training and the stages that use its
checkpoint, not the data synthesis before it; `run.from=NAME` forces NAME and every stage after
it. A stage killed part-way has no completion record: the next run reruns it, continuing its
work where it can (synth and ingest skip the videos already stored; train resumes from its last
checkpoint) when its key is the one it started with, and from an empty folder otherwise.

Files: `run_dir/run.json` (the pipeline, its resolved config, each stage's status),
`run_dir/NAME/stage.json` (a stage's key, inputs, config, result), `run_dir/NAME/result.json`
(the stage's own result JSON) and `run_dir/report.html` (pipeline/stages/report.py).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.core import progress as progress_module
from pipeline.core.config import (
    PartialFailure,
    StageFailed,
    UsageError,
    compose,
    required,
    write_json,
    write_result,
)
from pipeline.core.progress import summary
from pipeline.stages import stage_module

RESERVED = ("stage", "groups", "outputs", "watch")
RECORD = "stage.json"  # completion record: written last, atomically
STARTED = ".started.json"  # the key a stage was started with (to resume it, or to wipe it)
RESULT = "result.json"  # the stage's own result JSON (its report=PATH)
RUNNABLE = ("synth", "ingest", "train", "evaluate", "predict", "generate")


@dataclass
class Stage:
    """One stage of a pipeline, as resolved from the run config."""

    name: str
    stage: str  # the framecast stage that runs it
    groups: dict[str, str]
    settings: dict[str, Any]  # merged over the stage's composed config
    outputs: dict[str, str]
    watch: list[str]
    needs: list[str]  # earlier stages whose outputs it references
    folder: Path
    key: str = ""
    inputs: dict[str, str] = field(default_factory=dict)


def run(cfg: DictConfig) -> dict:
    run_dir = Path(str(required(cfg, "run_dir"))).expanduser().absolute()
    cfg.run_dir = str(run_dir)  # interpolated into every stage's paths: absolute from here on
    opts = cfg.get("run") or {}
    stages = load_stages(cfg, run_dir)
    names = [s.name for s in stages]
    start_from = opts.get("from")
    if start_from is not None and start_from not in names:
        raise UsageError(f"run.from={start_from}: no such stage (stages: {', '.join(names)})")
    forced = set(names[names.index(start_from) :]) if start_from is not None else set()
    pipeline_name = str(OmegaConf.select(cfg, "pipeline.name", default="pipeline"))
    state: dict[str, Any] = {
        "stage": "run",
        "pipeline": pipeline_name,
        "description": OmegaConf.select(cfg, "pipeline.description", default=""),
        "run_dir": str(run_dir),
        "started": time.time(),
        "finished": None,
        "stages": [{"name": s.name, "stage": s.stage, "status": "pending"} for s in stages],
        "config": _plain(cfg),
    }
    if opts.get("dry_run"):
        return _dry_run(stages, forced, run_dir, state)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "run.json", state)
    fingerprints: dict[str, str] = {}
    partial: list[str] = []
    n = len(stages)
    for i, (s, row) in enumerate(zip(stages, state["stages"]), 1):
        s.inputs = {d: fingerprints[d] for d in s.needs}
        s.inputs.update(_watch_fingerprints(s.watch))
        stage_cfg = stage_config(s, run_dir)
        s.key = stage_key(s, stage_cfg, run_dir)
        record = read_record(s.folder)
        if s.name not in forced and is_current(record, s):
            fingerprints[s.name] = record["fingerprint"]
            row.update(status="cached", key=s.key, seconds=record.get("seconds"))
            _header(i, n, s, "cached (inputs and config unchanged)")
            write_json(run_dir / "run.json", state)
            continue
        _header(i, n, s, "running")
        row.update(status="running", key=s.key)
        write_json(run_dir / "run.json", state)
        stage_cfg = _prepare(s, stage_cfg)
        t0 = time.perf_counter()
        try:
            result, status = _run_stage(s, stage_cfg)
        except BaseException as e:
            row.update(status="failed", error=str(e) or type(e).__name__)
            state["finished"] = time.time()
            write_json(run_dir / "run.json", state)
            _write_report(cfg, run_dir)
            raise
        seconds = time.perf_counter() - t0
        if status == "partial":
            partial.append(s.name)
        fingerprints[s.name] = fingerprint(s)
        write_json(
            s.folder / RECORD,
            {
                "name": s.name,
                "stage": s.stage,
                "status": status,
                "key": s.key,
                "inputs": s.inputs,
                "fingerprint": fingerprints[s.name],
                "outputs": s.outputs,
                "groups": s.groups,
                "config": _plain(stage_cfg),
                "result": result,
                "seconds": round(seconds, 3),
                "finished": time.time(),
            },
        )
        row.update(status="ran" if status == "ok" else status, seconds=round(seconds, 3))
        write_json(run_dir / "run.json", state)
        _write_report(cfg, run_dir)
    state["finished"] = time.time()
    write_json(run_dir / "run.json", state)
    report_path = _write_report(cfg, run_dir, force=True)
    result = {
        "stage": "run",
        "pipeline": pipeline_name,
        "run_dir": str(run_dir),
        "stages": state["stages"],
        "ran": [r["name"] for r in state["stages"] if r["status"] in ("ran", "partial")],
        "cached": [r["name"] for r in state["stages"] if r["status"] == "cached"],
        "seconds": round(state["finished"] - state["started"], 3),
        "report": str(report_path) if report_path else None,
    }
    write_result(cfg, result, None)
    _final_summary(result)
    if partial:
        raise PartialFailure(
            f"stages {', '.join(partial)} finished with some inputs failed (see their result.json)"
        )
    return result


def load_stages(cfg: DictConfig, run_dir: Path) -> list[Stage]:
    """The stages of the run config `cfg`, in order, with what each references."""
    node = cfg.get("stages")
    if not node:
        raise UsageError("the pipeline has no stages (pipeline=NAME picks configs/pipeline/NAME)")
    out: list[Stage] = []
    seen: list[str] = []
    for name in node:
        entry = node[name]
        where = f"stages.{name}"
        folder = re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", str(name))
        if not folder or name == stage_module("report").ASSETS:
            raise UsageError(f"{where}: a stage name is a folder name: letters, digits, _ and -")
        if not isinstance(entry, DictConfig) or "stage" not in entry:
            raise UsageError(f"{where}: needs 'stage: STAGE' (one of {', '.join(RUNNABLE)})")
        stage = str(entry.stage)
        if stage not in RUNNABLE:
            raise UsageError(f"{where}.stage={stage}: use one of {', '.join(RUNNABLE)}")
        raw = OmegaConf.to_container(entry, resolve=False)
        needs = []
        for other in _references(raw):
            if other == name:
                continue
            if other not in node:
                raise UsageError(f"{where}: references stages.{other}, which does not exist")
            if other not in seen:
                raise UsageError(f"{where}: references stages.{other}, which runs after it")
            if other not in needs:
                needs.append(other)
        try:
            resolved = OmegaConf.to_container(entry, resolve=True)
        except OmegaConfBaseException as e:
            raise UsageError(f"{where}: {str(e).splitlines()[0]}") from None
        assert isinstance(resolved, dict)
        settings = {k: v for k, v in resolved.items() if k not in RESERVED}
        watch = resolved.get("watch") or []
        out.append(
            Stage(
                name=str(name),
                stage=stage,
                groups={str(k): str(v) for k, v in (resolved.get("groups") or {}).items()},
                settings=settings,
                outputs={str(k): str(v) for k, v in (resolved.get("outputs") or {}).items()},
                watch=[str(w) for w in (watch if isinstance(watch, list) else [watch])],
                needs=needs,
                folder=run_dir / str(name),
            )
        )
        seen.append(str(name))
    return out


def _references(raw: Any) -> list[str]:
    """Names of the stages that `${stages.NAME...}` interpolations inside `raw` point at."""
    found: list[str] = []
    if isinstance(raw, dict):
        for v in raw.values():
            found += _references(v)
    elif isinstance(raw, list):
        for v in raw:
            found += _references(v)
    elif isinstance(raw, str):
        found += re.findall(r"\$\{\s*stages\.([A-Za-z0-9_-]+)", raw)
    return found


def stage_config(s: Stage, run_dir: Path) -> DictConfig:
    """The stage's composed config: configs/<stage>.yaml with its groups, the pipeline's
    settings merged over it, and report=run_dir/NAME/result.json."""
    overrides = [f"{g}={o}" for g, o in s.groups.items()]
    try:
        base = compose(s.stage, overrides)
    except UsageError as e:
        raise UsageError(f"stages.{s.name}.groups: {e}") from None
    try:
        merged = OmegaConf.merge(base, s.settings)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        first = str(e).strip().splitlines()[0]
        where = f"stages.{s.name}.{key}" if key else f"stages.{s.name}"
        raise UsageError(f"{where}: {first} (not a key of framecast {s.stage})") from None
    assert isinstance(merged, DictConfig)
    merged.report = str(s.folder / RESULT)
    return merged


def stage_key(s: Stage, stage_cfg: DictConfig, run_dir: Path) -> str:
    """Hash of the stage's resolved config (run_dir written as $RUN) and of its inputs."""
    text = json.dumps(
        {"stage": s.stage, "config": _plain(stage_cfg), "inputs": s.inputs},
        sort_keys=True,
        default=str,
    )
    text = text.replace(str(run_dir), "$RUN")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_record(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        return None


def is_current(record: dict[str, Any] | None, s: Stage) -> bool:
    """The stage finished before with this key and its outputs are still there."""
    if record is None or record.get("key") != s.key or "fingerprint" not in record:
        return False
    return all("://" in p or Path(p).exists() for p in s.outputs.values())


def fingerprint(s: Stage) -> str:
    """Hash of what a stage passes on: its result JSON and its output files (a checkpoint, a
    video, a JSON file); folders such as a frame store count through the result JSON only."""
    h = hashlib.sha256()
    for p in [s.folder / RESULT, *(Path(o) for o in sorted(s.outputs.values()) if "://" not in o)]:
        h.update(str(p.name).encode())
        if p.is_file():
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:16]


def _watch_fingerprints(paths: list[str]) -> dict[str, str]:
    """watch: PATH -> hash of the listing (relative name, size, mtime) of the files it names."""
    out = {}
    for w in paths:
        p = Path(os.path.expanduser(w))
        if "://" in w or w.startswith("lavfi:"):
            files: list[Path] = []
        elif p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file())
        elif any(c in w for c in "*?["):
            files = sorted(Path(f) for f in glob.glob(os.path.expanduser(w), recursive=True))
        else:
            files = [p] if p.exists() else []
        h = hashlib.sha256(w.encode())
        for f in files:
            st = f.stat()
            h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        out[f"watch:{w}"] = h.hexdigest()[:16]
    return out


def _prepare(s: Stage, stage_cfg: DictConfig) -> DictConfig:
    """Before a stage (re)runs: continue an interrupted run of the same key in place, else start
    from an empty folder (stale outputs of another config would be taken as done)."""
    try:
        started = json.loads((s.folder / STARTED).read_text()).get("key")
    except (OSError, ValueError):
        started = None
    resume = started == s.key and not (s.folder / RECORD).exists()
    if not resume and s.folder.exists():
        shutil.rmtree(s.folder)
    s.folder.mkdir(parents=True, exist_ok=True)
    write_json(s.folder / STARTED, {"key": s.key, "started": time.time()})
    if resume and s.stage == "train":
        ckpt = s.outputs.get("checkpoint")
        if ckpt and Path(ckpt).exists():
            stage_cfg.trainer.resume = True
    return stage_cfg


def _run_stage(s: Stage, stage_cfg: DictConfig) -> tuple[dict[str, Any], str]:
    module = stage_module(s.stage)
    try:
        result = module.run(stage_cfg)
        status = "ok"
    except UsageError as e:
        raise UsageError(f"stage {s.name} ({s.stage}): {e}") from None
    except StageFailed as e:
        raise StageFailed(f"stage {s.name} ({s.stage}): {e}") from None
    except PartialFailure:
        status = "partial"
        try:
            result = json.loads((s.folder / RESULT).read_text())
        except (OSError, ValueError):
            result = {}
    if not (s.folder / RESULT).exists():  # a stage that ignores report=: keep its result here
        write_json(s.folder / RESULT, result)
    return result, status


def _dry_run(
    stages: list[Stage], forced: set[str], run_dir: Path, state: dict[str, Any]
) -> dict[str, Any]:
    """What would run: a stage is cached when its key matches and no stage it needs reruns."""
    rerun: set[str] = set()
    fingerprints: dict[str, str] = {}
    for s, row in zip(stages, state["stages"]):
        record = read_record(s.folder)
        if any(d in rerun for d in s.needs) or s.name in forced:
            status = "run"
        else:
            s.inputs = {d: fingerprints[d] for d in s.needs}
            s.inputs.update(_watch_fingerprints(s.watch))
            s.key = stage_key(s, stage_config(s, run_dir), run_dir)
            status = "cached" if is_current(record, s) else "run"
        if status == "run":
            rerun.add(s.name)
        else:
            fingerprints[s.name] = record["fingerprint"]  # type: ignore[index]
        row["status"] = status
        print(f"{s.name:<20} {s.stage:<10} {status}", flush=True)
    return {"stage": "run", "dry_run": True, "run_dir": str(run_dir), "stages": state["stages"]}


def _write_report(cfg: DictConfig, run_dir: Path, force: bool = False) -> Path | None:
    opts = cfg.get("run") or {}
    if not (opts.get("report", True) or force):
        return None
    try:  # the report stage's builder, through the stage table (a stage imports no stage)
        return stage_module("report").build_report(run_dir)
    except Exception as e:  # the report never fails a run: the stages' results are written
        print(f"framecast run: could not write the report: {e}", file=sys.stderr)
        return None


def _header(i: int, n: int, s: Stage, what: str) -> None:
    """The pipeline's own line of the progress view: stage i of n, then the stage's progress."""
    line = f"stage {i}/{n}  {s.name} ({s.stage})  {what}"
    if progress_module.console is not None and progress_module.console.is_terminal:
        progress_module.console.rule(f"[bold]{line}", align="left")
    else:
        print(f"== {line}", file=sys.stderr, flush=True)


def _final_summary(result: dict[str, Any]) -> None:

    rows = {}
    for r in result["stages"]:
        secs = r.get("seconds")
        rows[r["name"]] = f"{r['status']:<7} " + (f"{secs:.1f} s" if secs is not None else "")
    rows["total"] = f"{result['seconds']:.1f} s"
    if result.get("report"):
        rows["report"] = result["report"]
    summary(f"run {result['pipeline']} -> {result['run_dir']}", rows)


def _plain(cfg: Any) -> Any:
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException:
        return OmegaConf.to_container(cfg, resolve=False)


__all__ = ["run", "load_stages", "stage_config", "stage_key", "fingerprint", "Stage"]
