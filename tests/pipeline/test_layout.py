"""The package's shape, as ../shared/DESIGN.md ("Layout") states it, checked by reading every
module's imports with `ast` (function-local ones and `importlib.import_module("...")` too):

- a stage never imports another stage: only the stage table (`pipeline/stages/__init__.py`)
  imports stage modules, by name, for the CLI (`pipeline/cli.py`) and `framecast run`
  (`pipeline/stages/run.py`), which reach other stages only through `stage_module`; a module
  of a stage package (pipeline/stages/evaluate/generator.py) may import its own package;
- imports point one way: cli -> stages | serve -> runtime -> io | datasets | core -> models.
  `pipeline.core` imports no other part of pipeline; `pipeline.io` and `pipeline.datasets`
  only core (neither imports the other); `pipeline.runtime` only io, datasets, core;
  `pipeline.serve` only runtime, io, datasets, core; `models` nothing of pipeline;
- model family names appear only in models/ and configs/: no string constant in pipeline/
  code names one (stages ask the registry for a kind);
- framecast's own modules are imported at the top of a file, where the structure shows.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from models import FAMILIES

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "pipeline"

# what each layer of pipeline/ may import from pipeline/ (besides itself); models is allowed
# everywhere in pipeline/
LAYERS: dict[str, set[str]] = {
    "core": set(),
    "io": {"core"},
    "datasets": {"core"},
    "runtime": {"core", "io", "datasets"},
    "serve": {"core", "io", "datasets", "runtime"},
    "stages": {"core", "io", "datasets", "runtime", "serve", "stages"},
}
# modules that import framecast modules inside functions, and why
LAZY_OK = {
    "pipeline/__init__.py": "registers the configs package of a bare source checkout",
    "pipeline/__main__.py": "python -m pipeline",
}


@dataclass
class Import:
    module: str  # dotted name imported (for `from a import b`: a.b if it is a module, else a)
    line: int
    top: bool  # at module level (not inside a function or class body)


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def own_modules() -> list[Path]:
    files = sorted(PIPELINE.rglob("*.py")) + sorted((ROOT / "models").rglob("*.py"))
    return [p for p in files if "configs" not in p.relative_to(ROOT).parts]


def is_package(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def imports_of(path: Path, here: str | None = None) -> list[Import]:
    """framecast imports of the module at `path` (named `here`, default: from its path)."""
    tree = ast.parse(path.read_text(), str(path))
    here = here or module_name(path)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    found: list[Import] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = top and not isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda
            )
            if isinstance(child, ast.Import):
                found.extend(Import(a.name, child.lineno, top) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parent = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                for a in child.names:
                    full = f"{base}.{a.name}"
                    found.append(Import(full if is_package(full) else base, child.lineno, top))
            elif (
                isinstance(child, ast.Call)
                and isinstance(child.func, ast.Attribute)
                and child.func.attr == "import_module"
                and child.args
                and isinstance(child.args[0], ast.Constant)
                and isinstance(child.args[0].value, str)
            ):
                found.append(Import(child.args[0].value, child.lineno, top))
            visit(child, nested)

    visit(tree, True)
    return [i for i in found if i.module.split(".")[0] in ("pipeline", "models")]


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


def layer_of(dotted: str) -> str | None:
    parts = dotted.split(".")
    if parts[0] == "models":
        return "models"
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_no_module_imports_a_stage_but_the_stage_table() -> None:
    bad = []
    for path in own_modules():
        here = module_name(path)
        for imp in imports_of(path):
            if not imp.module.startswith("pipeline.stages.") and imp.module != "pipeline.stages":
                continue
            target = imp.module.split(".")
            if imp.module == "pipeline.stages":  # the table and stage_module: anyone may read
                continue
            if here == "pipeline.stages":  # the table itself (it names modules, never imports)
                continue
            own = here.split(".")[:3]
            if here.startswith("pipeline.stages.") and target[:3] == own:
                continue  # a stage package's own modules
            bad.append(f"{where(path, imp.line)} imports {imp.module}")
    assert not bad, "modules importing a stage module:\n" + "\n".join(bad)


def test_imports_point_one_way() -> None:
    bad = []
    for path in own_modules():
        here = module_name(path)
        mine = layer_of(here)
        for imp in imports_of(path):
            theirs = layer_of(imp.module)
            if mine == "models":
                if imp.module.startswith("pipeline"):
                    bad.append(f"{where(path, imp.line)}: models imports {imp.module}")
                continue
            if mine is None or theirs in (None, "models", mine):
                continue  # cli/__main__/package root, or models, or its own layer
            if theirs not in LAYERS[mine]:
                bad.append(f"{where(path, imp.line)}: {mine} imports {imp.module} ({theirs})")
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_no_family_name_in_pipeline_code() -> None:
    names = set(FAMILIES)
    bad = []
    for path in own_modules():
        if path.relative_to(ROOT).parts[0] != "pipeline":
            continue
        tree = ast.parse(path.read_text(), str(path))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if id(node) in docstrings:
                    continue
                hits = [n for n in names if n in node.value]
                if hits:
                    bad.append(f"{where(path, node.lineno)}: {', '.join(hits)} in {node.value!r}")
    assert not bad, "family names in pipeline/ code (ask the registry for a kind):\n" + "\n".join(
        bad
    )


def test_own_modules_are_imported_at_the_top() -> None:
    bad = []
    for path in own_modules():
        rel = str(path.relative_to(ROOT))
        if rel in LAZY_OK or rel == "models/__init__.py":  # the registry imports families lazily
            continue
        for imp in imports_of(path):
            if not imp.top:
                bad.append(f"{where(path, imp.line)} imports {imp.module} inside a function")
    assert not bad, "function-local imports of framecast modules:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from pipeline.stages.train import x\n", ["pipeline.stages.train"]),
        ("def f():\n    import models.mocogan\n", ["models.mocogan"]),
        (
            "import importlib\nimportlib.import_module('pipeline.stages.run')\n",
            ["pipeline.stages.run"],
        ),
    ],
)
def test_the_walker_sees_every_kind_of_import(tmp_path: Path, source: str, expected: list) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(source)
    assert [i.module for i in imports_of(probe, "pipeline.core.probe")] == expected
