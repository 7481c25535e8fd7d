"""The built wheel carries the configs and the digits: the CLI works outside a checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_finds_its_configs_outside_the_source_tree(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("framecast-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for required in (
        "pipeline/configs/train.yaml",
        "pipeline/configs/model/lstm_autoencoder.yaml",
        "pipeline/configs/trainer/default.yaml",
        "pipeline/datasets/mnist_5k.npz",
        "models/lstm_autoencoder.py",
    ):
        assert required in names
    # every module and config of the checkout ships (a package left out of `packages` would not)
    sources = [
        p.relative_to(ROOT) for d in ("pipeline", "models") for p in (ROOT / d).rglob("*.py")
    ]
    sources += [Path("pipeline/configs") / p.relative_to(ROOT / "configs")
                for p in (ROOT / "configs").rglob("*.yaml")]  # fmt: skip
    missing = sorted(str(p) for p in sources if str(p) not in names and "__pycache__" not in str(p))
    assert not missing, missing
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    # the installed copy first on the path, the dependencies from this environment after it
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = (
        "import pipeline, sys; assert pipeline.__file__.startswith(sys.argv[1]), pipeline.__file__;"
        "from pipeline.cli import main; sys.exit(main(['train', '--help']))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(target)],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "hidden: 512" in r.stdout and "max_steps: 1000" in r.stdout


def test_a_source_checkout_on_pythonpath_finds_its_configs_without_an_install() -> None:
    """A GPU host or a Ray working_dir may only put the checkout on PYTHONPATH: `pipeline`
    then registers configs/ as `pipeline.configs` itself (here the editable install's finder is
    taken away first, so only the checkout can answer)."""
    code = (
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path\n"
        "                    if not type(f).__module__.startswith('__editable__')\n"
        "                    and not getattr(f, '__module__', '').startswith('__editable__')]\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "import pipeline, pipeline.configs\n"
        "from pipeline.core.config import compose\n"
        "cfg = compose('train', ['model=mocogan', 'model.spectral_norm=true'])\n"
        "print(pipeline.configs.__file__)\n"
        "print(cfg.model.name, cfg.model.spectral_norm)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=120
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert lines[0] == str(ROOT / "configs" / "__init__.py")
    assert lines[1:] == ["mocogan", "True"]


def test_every_package_is_declared() -> None:
    """pyproject lists every package folder, the config groups included (mapped from configs/):
    setuptools warns about each importable folder it is not told about, and a listed name with
    no folder behind it fails the build."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert tool["package-dir"] == {"pipeline.configs": "configs"}
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for d in ("pipeline", "models")
        for p in (ROOT / d).rglob("__init__.py")
    }
    found |= {"pipeline.configs"} | {
        f"pipeline.configs.{d.name}"
        for d in (ROOT / "configs").iterdir()
        if d.is_dir() and any(d.glob("*.yaml"))
    }
    assert sorted(tool["packages"]) == sorted(found)
