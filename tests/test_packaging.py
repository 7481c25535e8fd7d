"""The built wheel carries the configs and the digits: the CLI works outside a checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


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
