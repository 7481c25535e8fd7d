"""`framecast STAGE [hydra overrides]`: one entry point for every stage.

Each stage is a module of `pipeline.stages` (the table `pipeline.stages.STAGES`) with
`run(cfg: DictConfig) -> dict`, configured by `configs/<stage>.yaml`. A user mistake prints one
line and exits 2; a stage that finished with some inputs failed exits 3 (it raises
`PartialFailure`).
"""

from __future__ import annotations

import sys
from importlib import resources

from omegaconf import OmegaConf

from pipeline.core.config import compose
from pipeline.core.errors import FrameStoreError, PartialFailure, StageFailed, UsageError
from pipeline.stages import STAGES, stage_module

EXIT_USAGE = 2
EXIT_PARTIAL = 3


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
        try:
            print(_stage_help(stage))
        except UsageError as e:
            return _fail(stage, str(e))
        return 0
    try:
        module = stage_module(stage)
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
