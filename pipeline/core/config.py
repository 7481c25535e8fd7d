"""Hydra composition of a stage's config, typed validation, and the stage result JSON.

The YAML files under configs/ are the documented defaults; the dataclass next to the code a
config group drives gives the types. `typed()` checks one against the other, so a wrong type or
an unknown key becomes one clear line naming the key.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.core.errors import PartialFailure, StageFailed, UsageError

T = TypeVar("T")

__all__ = [
    "PartialFailure",
    "StageFailed",
    "UsageError",
    "compose",
    "existing_path",
    "required",
    "to_plain",
    "typed",
    "write_json",
    "write_result",
]


# key=value as typed on the command line: the key, and the value after the first "="
_OVERRIDE = re.compile(r"^(\+{0,2}[A-Za-z_][\w.\-/@]*)=(.*)$", re.S)
# characters Hydra's grammar never accepts in an unquoted value
_NEEDS_QUOTES = ("=", "&")


def quote_value(override: str) -> str:
    """`key=value` with the value quoted for Hydra when it holds characters Hydra would reject
    unquoted (`source=lavfi:testsrc2=size=320x240`, `source=https://h/v.mp4?a=1&b=2`): people
    type these as ffmpeg and URLs taught them. Values already quoted, or holding quotes or
    backslashes (quoted by their author), are left as typed."""
    m = _OVERRIDE.match(override)
    if m is None:
        return override
    key, value = m.groups()
    if not any(c in value for c in _NEEDS_QUOTES) or any(c in value for c in "'\"\\"):
        return override
    return f"{key}='{value}'"


def compose(stage: str, overrides: list[str]) -> DictConfig:
    """The resolved config of `stage` (configs/<stage>.yaml plus its groups and the overrides;
    values holding "=" or "&" need no quoting, see `quote_value`)."""
    overrides = [quote_value(o) for o in overrides]
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    GlobalHydra.instance().clear()
    try:
        with initialize_config_module("pipeline.configs", version_base=None):
            cfg = hydra_compose(config_name=stage, overrides=overrides)
    except HydraException as e:
        raise UsageError(_unparsable(overrides) or _hydra_message(e)) from None
    except OmegaConfBaseException as e:
        raise UsageError(_omegaconf_message(e)) from None
    return cfg


def _unparsable(overrides: list[str]) -> str | None:
    """One line naming the first argument Hydra's override grammar rejects, with the quoting
    that works; None when every argument parses (the error is elsewhere)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for override in overrides:
        try:
            parser.parse_overrides([override])
        except HydraException as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            m = _OVERRIDE.match(override)
            hint = f"; quote the value: \"{m.group(1)}='{m.group(2)}'\"" if m else ""
            return f"argument {override!r}: cannot parse it ({first}){hint}"
    return None


def _hydra_message(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    msg = lines[0] if lines else type(e).__name__
    if len(lines) > 1 and lines[1].startswith("Available options"):
        options = []
        for ln in lines[2:]:
            if ln.startswith("Config search path"):
                break
            options.append(ln)
        msg += f" ({lines[1].rstrip(':').lower()}: {', '.join(options)})"
    cause = e.__cause__
    if cause is not None and "not in struct" in str(cause):
        key = getattr(cause, "full_key", None) or msg
        return f"unknown config key '{key}' (use +{key}=VALUE to add a new key)"
    return msg


def _omegaconf_message(e: OmegaConfBaseException) -> str:
    key = getattr(e, "full_key", None)
    first = str(e).strip().splitlines()[0]
    return f"config key '{key}': {first}" if key else first


def typed(node: Any, schema: type[T], prefix: str) -> T:
    """Validate `node` (a DictConfig or dict) against the dataclass `schema`; return an instance.

    Every key must be a field of the schema and every value must convert to the field's type.
    """
    if node is None:
        node = {}
    raw = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    names = {f.name for f in dataclasses.fields(schema)}  # type: ignore[arg-type]
    for key in raw:
        if key not in names:
            raise UsageError(f"unknown config key '{prefix}.{key}'")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), raw)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        value = getattr(e, "value", None) if hasattr(e, "value") else None
        first = str(e).strip().splitlines()[0]
        where = f"{prefix}.{key}" if key else prefix
        extra = f" (got {value!r})" if value is not None else ""
        raise UsageError(f"config key '{where}': {first}{extra}") from None
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def required(cfg: DictConfig, key: str) -> Any:
    """The value of a top-level key that the user must set (a '???' in the YAML)."""
    if OmegaConf.is_missing(cfg, key) or cfg.get(key) in (None, ""):
        raise UsageError(f"missing required key '{key}' (add {key}=...)")
    return cfg[key]


def existing_path(value: str, key: str) -> Path:
    """A local path given as `key` that must exist."""
    p = Path(os.path.expanduser(str(value)))
    if not p.exists():
        raise UsageError(f"{key}={value}: no such file or directory")
    return p


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write JSON atomically (tmp + rename) so a reader never sees a half-written result."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")
    os.replace(tmp, p)


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def write_result(cfg: DictConfig, result: dict[str, Any], default_path: str | None) -> None:
    """Write a stage's result JSON next to its outputs and, when given, to `report=PATH`."""
    if default_path:
        write_json(default_path, result)
    report = cfg.get("report")
    if report:
        write_json(report, result)
