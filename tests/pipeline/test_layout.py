"""The package's shape, as ../shared/DESIGN.md ("Layout") states it, checked by reading every
module of pipeline/ and models/ with `ast`: every import statement, at the top or inside a
function, and every `importlib.import_module("...")` / `__import__("...")` of a literal name.
Each test lists every violation as file:line.

1. A stage never imports another stage. Stage modules (`pipeline.stages.NAME...`) are reached
   only through the stage table, `pipeline/stages/__init__.py` (`STAGES`, `stage_module`), and
   only two modules read that table: the CLI (`pipeline/cli.py`) and `framecast run`
   (`pipeline/stages/run.py`). A module of a stage package (pipeline/stages/evaluate/generator.py)
   may import its own package. An import by a computed name (`import_module(f"...")`), which
   no reader can check, is only in the stage table and in the models registry.
2. Imports point one way: cli -> stages | serve -> runtime -> io | datasets | core. What each
   part of pipeline/ may import besides itself (`LAYERS`):
   - `pipeline.core`: nothing of pipeline, nothing of models;
   - `pipeline.io`, `pipeline.datasets`: `pipeline.core` only (neither imports the other, nor
     models: they are the data side, plain frames in and out);
   - `pipeline.runtime`: core, io, datasets, and models;
   - `pipeline.serve`: core, io, runtime, and models (not datasets, not stages);
   - `pipeline.stages`: core, io, datasets, runtime, serve, models (other stages: rule 1);
   - `models`: nothing of pipeline;
   - nothing imports the entry points `pipeline.cli` / `pipeline.__main__` (but `__main__` the
     CLI) or the users' alias `pipeline.store` (pipeline code imports `pipeline.io.store`).
3. Model family names (the keys of `models.FAMILIES`) appear only in models/ and configs/: no
   string constant in pipeline/ code names one (docstrings and comments may); stages ask the
   registry for a kind and talk to the protocol.
4. framecast's own modules are imported at the top of a file, where the structure shows;
   function-local imports are for Ray and heavy third-party libraries. The exceptions, with
   their reasons, are `LAZY_OK`.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from models import FAMILIES

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "pipeline"

# what each part of pipeline/ may import from framecast besides itself (rule 2)
LAYERS: dict[str, set[str]] = {
    "core": set(),
    "io": {"core"},
    "datasets": {"core"},
    "runtime": {"core", "io", "datasets", "models"},
    "serve": {"core", "io", "runtime", "models"},
    "stages": {"core", "io", "datasets", "runtime", "serve", "models", "stages"},
}
# entry points and the users' alias: imported by nothing in pipeline/ (rule 2); importer -> ok
ENTRY = {"pipeline.cli": {"pipeline.__main__"}, "pipeline.__main__": set(), "pipeline.store": set()}
# the two readers of the stage table (rule 1)
TABLE_READERS = {"pipeline.cli", "pipeline.stages.run"}
# where an import by a computed name is the design (rule 1)
DYNAMIC_OK = {
    "pipeline/stages/__init__.py": "stage_module: a stage is imported when its command runs",
    "models/__init__.py": "the registry imports a family's module on first use",
}
# modules that may import framecast modules inside functions, and why (rule 4)
LAZY_OK = {
    "pipeline/__init__.py": "registers the configs package of a bare source checkout",
    "models/__init__.py": "the registry imports a family's module on first use",
}


@dataclass(frozen=True)
class Import:
    module: str  # dotted name (`from a import b`: a.b when that is a module, else a); "" computed
    line: int
    top: bool  # at module level (not inside a function or class body)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def own_modules() -> list[Path]:
    # pipeline/configs does not exist in the tree (configs/ is mapped there), but a stray
    # build or a bootstrap must not make YAML-package code count as pipeline code
    files = sorted(PIPELINE.rglob("*.py")) + sorted((ROOT / "models").rglob("*.py"))
    return [p for p in files if "configs" not in p.relative_to(ROOT).parts]


def is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _import_call(node: ast.Call) -> ast.expr | None:
    """The name argument of `importlib.import_module(x)`, `import_module(x)`, `__import__(x)`."""
    f = node.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
    return node.args[0] if name in ("import_module", "__import__") and node.args else None


def imports_of(path: Path, here: str | None = None) -> list[Import]:
    """Every import in the module at `path` (named `here`, default: from its path) of a
    framecast module, and every import by a computed name (module "")."""
    tree = ast.parse(path.read_text(), str(path))
    here = here or module_name(path)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    found: list[Import] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = top and not isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda
            )
            if isinstance(child, ast.Import):
                found.extend(Import(a.name, child.lineno, top) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: from the module's package, level - 1 up
                    parts = package.split(".")
                    parts = parts[: len(parts) - child.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                for a in child.names:
                    full = f"{base}.{a.name}"
                    found.append(Import(full if is_module(full) else base, child.lineno, top))
            elif isinstance(child, ast.Call) and (arg := _import_call(child)) is not None:
                literal = isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                found.append(Import(arg.value if literal else "", child.lineno, top))
            visit(child, inner)

    visit(tree, True)
    return [i for i in found if i.module == "" or i.module.split(".")[0] in ("pipeline", "models")]


@cache
def all_imports() -> dict[Path, tuple[Import, ...]]:
    return {p: tuple(imports_of(p)) for p in own_modules()}


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


def part_of(dotted: str) -> str | None:
    """`models`, a key of LAYERS, or None (the pipeline package root, cli, __main__, store)."""
    parts = dotted.split(".")
    if parts[0] == "models":
        return "models"
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def report(title: str, bad: list[str]) -> str:
    return f"{title} ({len(bad)}):\n" + "\n".join(bad)


def test_only_the_stage_table_reaches_a_stage() -> None:
    bad = []
    for path, imports in all_imports().items():
        here = module_name(path)
        rel = str(path.relative_to(ROOT))
        for imp in imports:
            if imp.module == "":
                if rel not in DYNAMIC_OK:
                    bad.append(f"{where(path, imp.line)} imports a module by a computed name")
                continue
            target = imp.module.split(".")
            if target[:2] != ["pipeline", "stages"]:
                continue
            if len(target) == 2:  # the table: STAGES, stage_module
                if here not in TABLE_READERS:
                    bad.append(f"{where(path, imp.line)} reads the stage table ({imp.module})")
                continue
            if here.startswith("pipeline.stages.") and target[:3] == here.split(".")[:3]:
                continue  # a stage package's own modules
            bad.append(f"{where(path, imp.line)} imports the stage module {imp.module}")
    assert not bad, report("stage modules reached other than through the stage table", bad)


def test_imports_point_one_way() -> None:
    bad = []
    for path, imports in all_imports().items():
        here = module_name(path)
        mine = part_of(here)
        for imp in imports:
            if imp.module == "":
                continue  # rule 1
            if imp.module in ENTRY and here not in ENTRY[imp.module]:
                bad.append(f"{where(path, imp.line)} imports the entry point {imp.module}")
                continue
            theirs = part_of(imp.module)
            if mine == "models":
                if theirs != "models":
                    bad.append(f"{where(path, imp.line)}: models imports {imp.module}")
                continue
            if mine is None or theirs is None or theirs == mine:
                continue  # the package root, cli, __main__ and the alias sit above the layers
            if theirs not in LAYERS[mine]:
                bad.append(f"{where(path, imp.line)}: {mine} imports {imp.module} ({theirs})")
    assert not bad, report("imports against the layer order", bad)


def _docstrings(tree: ast.AST) -> set[int]:
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def test_no_family_name_in_pipeline_code() -> None:
    names = sorted(FAMILIES)
    assert names
    bad = []
    for path in own_modules():
        if path.relative_to(ROOT).parts[0] != "pipeline":
            continue
        tree = ast.parse(path.read_text(), str(path))
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
                continue
            if id(node) in docstrings:
                continue
            hits = [n for n in names if n in node.value]
            if hits:
                text = node.value if len(node.value) <= 60 else node.value[:57] + "..."
                bad.append(f"{where(path, node.lineno)}: {', '.join(hits)} in {text!r}")
    assert not bad, report("family names in pipeline/ code (ask the registry for a kind)", bad)


def test_own_modules_are_imported_at_the_top() -> None:
    bad = []
    for path, imports in all_imports().items():
        if str(path.relative_to(ROOT)) in LAZY_OK:
            continue
        for imp in imports:
            if imp.module and not imp.top:
                bad.append(f"{where(path, imp.line)} imports {imp.module} inside a function")
    assert not bad, report("function-local imports of framecast modules", bad)


def test_the_exceptions_name_existing_files() -> None:
    for rel in [*DYNAMIC_OK, *LAZY_OK]:
        assert (ROOT / rel).is_file(), rel


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from pipeline.stages.train import x\n", [("pipeline.stages.train", True)]),
        ("from pipeline.stages import stage_module\n", [("pipeline.stages", True)]),
        ("def f():\n    import models.mocogan\n", [("models.mocogan", False)]),
        ("class A:\n    from pipeline.io import store\n", [("pipeline.io.store", False)]),
        ("from . import frames\nfrom ..io import video\n", [
            ("pipeline.core.frames", True), ("pipeline.io.video", True)]),
        (
            "import importlib\nimportlib.import_module('pipeline.stages.run')\n",
            [("pipeline.stages.run", True)],
        ),
        ("def f(n):\n    return __import__(f'pipeline.stages.{n}')\n", [("", False)]),
        ("import numpy, ray\nfrom torch import nn\n", []),
    ],
)  # fmt: skip
def test_the_walker_sees_every_kind_of_import(tmp_path: Path, source: str, expected: list) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(source)
    found = [(i.module, i.top) for i in imports_of(probe, "pipeline.core.probe")]
    assert found == expected
