"""`framecast run`: the demo pipeline end to end at a tiny size, caching, run.from, resume after
a kill, and clear errors for a bad pipeline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main

# The demo pipeline at a tiny size: a few videos, a few steps, tiny networks.
TINY = [
    "pipeline=demo",
    "stages.mnist.synth.num_videos=20",
    "stages.train_lstm.trainer.max_steps=2",
    "++stages.train_lstm.trainer.batch_size=4",
    "++stages.train_lstm.trainer.log_every=1",
    "+stages.train_lstm.model.hidden=16",
    "++stages.evaluate_lstm.evaluate.max_sequences=4",
    "++stages.evaluate_lstm.evaluate.grid_sequences=2",
    "stages.train_cpu.trainer.max_steps=2",
    "++stages.train_cpu.trainer.batch_size=4",
    "++stages.train_cpu.trainer.log_every=1",
    "+stages.train_cpu.model.conv_channels=4",
    "++stages.evaluate_cpu.evaluate.max_sequences=4",
    "++stages.evaluate_cpu.evaluate.grid_sequences=2",
    "stages.predict_cpu.predict.horizon=10",
    "++stages.predict_cpu.predict.scale=1",
    "stages.stick.synth.num_videos=20",
    "stages.stick.synth.length=20",
    "stages.train_hier.trainer.max_steps=2",
    "stages.train_hier.trainer.batch_size=4",
    "stages.train_hier.model.gen_channels=4",
    "stages.train_hier.model.detector_channels=4",
    "stages.train_hier.model.disc_channels=4",
    "stages.train_hier.model.pose_hidden=8",
    "stages.train_hier.model.pose_embed=8",
    "+stages.train_hier.model.horizon=6",
    "+stages.train_hier.model.max_offset=4",
    "stages.train_stick_lstm.trainer.max_steps=2",
    "++stages.train_stick_lstm.trainer.batch_size=4",
    "+stages.train_stick_lstm.model.conv_channels=4",
    "stages.evaluate_hier.evaluate.horizon=6",
    "++stages.evaluate_hier.evaluate.max_sequences=2",
    "++stages.evaluate_hier.evaluate.grid_sequences=2",
    "stages.shapes.synth.num_videos=12",
    "stages.shapes.data.size=16",
    "stages.train_gan.model.frame_size=16",
    "stages.train_gan.model.gen_channels=4",
    "stages.train_gan.model.disc_channels=4",
    "stages.train_gan.trainer.max_steps=2",
    "stages.train_gan.trainer.batch_size=4",
    "stages.train_gan.trainer.log_every=1",
    "stages.train_classifier.model.frame_size=16",
    "stages.train_classifier.model.width=4",
    "stages.train_classifier.trainer.max_steps=2",
    "++stages.train_classifier.trainer.batch_size=4",
    "stages.generate_gan.num_videos=2",
    "stages.generate_gan.generate.length=8",
    "stages.generate_gan.generate.preview=2",
    "stages.evaluate_gan.evaluate.num_videos=4",
    "++stages.evaluate_gan.evaluate.batch_size=4",
]
ORDER = ["mnist", "train_lstm", "evaluate_lstm", "train_cpu", "evaluate_cpu", "predict_cpu"]
ORDER += ["stick", "train_hier", "train_stick_lstm", "evaluate_hier"]
ORDER += ["shapes", "train_gan", "train_classifier", "generate_gan", "evaluate_gan"]
# only the Moving MNIST branch (tests that need no GAN, and the subprocess test)
MNIST_ONLY = [f"~stages.{n}" for n in ORDER[ORDER.index("stick") :]]
MNIST_STAGES = ORDER[: ORDER.index("stick")]


def framecast_run(run_dir: Path, *extra: str) -> dict:
    report = run_dir.parent / f"{run_dir.name}-result.json"
    assert main(["run", f"run_dir={run_dir}", f"report={report}", *TINY, *extra]) == 0
    return json.loads(report.read_text())


def statuses(result: dict) -> dict[str, str]:
    return {r["name"]: r["status"] for r in result["stages"]}


_DEMO: dict[str, tuple[Path, dict]] = {}


def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The tiny demo, run once per test session (test_report.py looks at the same run)."""
    if "run" not in _DEMO:
        run_dir = tmp_path_factory.mktemp("demo") / "run"
        _DEMO["run"] = (run_dir, framecast_run(run_dir))
    return _DEMO["run"]


@pytest.fixture()
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    return tiny_demo(tmp_path_factory)


def test_tiny_demo_end_to_end(demo_run: tuple[Path, dict]) -> None:
    run_dir, result = demo_run
    assert [r["name"] for r in result["stages"]] == ORDER
    assert set(statuses(result).values()) == {"ran"}
    # each stage in its own folder, with its completion record and result JSON
    for name in ORDER:
        record = json.loads((run_dir / name / "stage.json").read_text())
        assert record["name"] == name and len(record["key"]) == 16
        assert (run_dir / name / "result.json").exists()
    assert (run_dir / "mnist" / "mm.zarr").is_dir()
    assert (run_dir / "train_lstm" / "checkpoints" / "last.pt").exists()
    metrics = json.loads((run_dir / "evaluate_lstm" / "metrics.json").read_text())
    assert 1 <= metrics["sequences"] <= 4 and "mse" in metrics["copy_last"]
    assert (run_dir / "predict_cpu" / "prediction.mp4").stat().st_size > 0
    # the three families: the paper LSTM and the CPU predictor (warp head) on Moving MNIST, the
    # hierarchical predictor on stick figures beside the CPU predictor rolled out as far
    cpu = json.loads((run_dir / "evaluate_cpu" / "metrics.json").read_text())
    assert cpu["model"] == metrics["model"] == "lstm_autoencoder"
    assert cpu["sharpness"] > 0 and "sharpness" in cpu["copy_last"]
    hier = json.loads((run_dir / "evaluate_hier" / "metrics.json").read_text())
    assert hier["model"] == "hierarchical" and hier["horizon"] == 6
    assert hier["baseline"]["model"] == "lstm_autoencoder"
    assert len(hier["baseline"]["per_step"]["mse"]) == 6
    with np.load(run_dir / "evaluate_hier" / "samples.npz") as z:
        assert z["predicted"].shape == z["baseline"].shape == (2, 6, 32, 32, 3)
    lines = (run_dir / "generate_gan" / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 2
    gan = json.loads((run_dir / "evaluate_gan" / "metrics.json").read_text())
    assert gan["model"] == "mocogan" and gan["videos"] == 4
    # measured with the demo's classifier: Inception Score of generated and real videos
    assert gan["inception_score"]["generated"] >= 1.0 and gan["inception_score"]["real"] >= 1.0
    # the demo's generator is asked for shapes (shape x motion): counted per requested shape
    assert set(gan["shape_fill"]) == {"bands", "generated", "real", "by_request"}
    assert set(gan["shape_fill"]["by_request"]) <= {"circle", "square"}
    # the outputs passed on: evaluate used train_lstm's checkpoint and mnist's store
    ev = json.loads((run_dir / "evaluate_lstm" / "stage.json").read_text())
    assert ev["config"]["checkpoint"] == str(run_dir / "train_lstm/checkpoints/last.pt")
    assert set(ev["inputs"]) == {"mnist", "train_lstm"}
    state = json.loads((run_dir / "run.json").read_text())
    assert state["pipeline"] == "demo" and state["finished"] is not None
    html = (run_dir / "report.html").read_text()
    for name in ORDER:
        assert f'id="{name}"' in html
    assert "copy last frame" in html and "http://" not in html and "<script" not in html


def test_rerun_skips_everything_then_a_training_change_reruns_only_what_follows(
    demo_run: tuple[Path, dict],
) -> None:
    run_dir, first = demo_run
    keys = {n: json.loads((run_dir / n / "stage.json").read_text())["key"] for n in ORDER}
    t0 = time.perf_counter()
    again = framecast_run(run_dir)
    assert set(statuses(again).values()) == {"cached"}
    assert time.perf_counter() - t0 < 30
    assert {n: json.loads((run_dir / n / "stage.json").read_text())["key"] for n in ORDER} == keys

    changed = framecast_run(run_dir, "stages.train_lstm.trainer.max_steps=3")
    want = {n: "cached" for n in ORDER}
    want.update(train_lstm="ran", evaluate_lstm="ran")
    assert statuses(changed) == want
    assert json.loads((run_dir / "train_lstm" / "result.json").read_text())["steps"] == 3
    # the same change again: all cached
    assert statuses(framecast_run(run_dir, "stages.train_lstm.trainer.max_steps=3")) == {
        n: "cached" for n in ORDER
    }


def test_run_from_forces_a_stage_and_those_after_it(demo_run: tuple[Path, dict]) -> None:
    run_dir, _ = demo_run
    out = framecast_run(run_dir, "stages.train_lstm.trainer.max_steps=3", "run.from=predict_cpu")
    got = statuses(out)
    assert got["mnist"] == got["train_lstm"] == got["evaluate_cpu"] == "cached"
    assert all(got[n] == "ran" for n in ORDER[ORDER.index("predict_cpu") :])


def test_deleted_output_reruns_its_stage(demo_run: tuple[Path, dict]) -> None:
    run_dir, _ = demo_run
    framecast_run(run_dir, "stages.train_lstm.trainer.max_steps=3")
    (run_dir / "predict_cpu" / "prediction.mp4").unlink()
    again = statuses(framecast_run(run_dir, "stages.train_lstm.trainer.max_steps=3"))
    assert again == {n: "ran" if n == "predict_cpu" else "cached" for n in ORDER}


def test_dry_run_runs_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", f"run_dir={tmp_path / 'r'}", *TINY, "run.dry_run=true"]) == 0
    out = capsys.readouterr().out
    assert "train_lstm" in out and " run" in out
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("run.from=nope", "run.from=nope: no such stage"),
        ("+stages.train_lstm.trainer.nope=1", "stages.train_lstm.trainer.nope"),
        ("stages.train_lstm.stage=nope", "stages.train_lstm.stage=nope"),
        ("stages.evaluate_lstm.checkpoint=${stages.nope.outputs.x}", "stages.nope"),
        ("stages.mnist.store=${stages.train_lstm.outputs.checkpoint}", "runs after it"),
        ("stages.train_lstm.groups.model=nope", "stages.train_lstm.groups"),
        ("+stages.report_assets.stage=synth", "a stage name is a folder name"),
    ],
)
def test_bad_pipeline_is_a_one_line_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, message: str
) -> None:
    assert main(["run", f"run_dir={tmp_path / 'r'}", *TINY, override]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_resume_after_a_kill_between_stages(tmp_path: Path) -> None:
    """SIGKILL the run once its first stage is recorded; the rerun keeps that stage and does the
    rest; a stage killed part-way leaves no completion record."""
    run_dir = tmp_path / "run"
    args = ["run", f"run_dir={run_dir}", *TINY, *MNIST_ONLY]
    # the training runs long enough to be killed inside it or just after it
    slow = [
        *args,
        "stages.train_lstm.trainer.max_steps=100000",
        "++stages.train_lstm.trainer.max_minutes=0.05",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *slow],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.time() + 80
        while not (run_dir / "mnist" / "stage.json").exists():
            assert proc.poll() is None, "the run ended before its first stage was recorded"
            assert time.time() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (run_dir / "evaluate_lstm" / "stage.json").exists()
    state = json.loads((run_dir / "run.json").read_text())
    assert state["finished"] is None
    report = tmp_path / "result.json"
    assert main([*slow, f"report={report}"]) == 0
    got = statuses(json.loads(report.read_text()))
    assert got == {"mnist": "cached"} | {n: "ran" for n in MNIST_STAGES[1:]}
    assert json.loads((run_dir / "run.json").read_text())["finished"] is not None


@pytest.mark.parametrize(
    "name",
    sorted(
        p.stem
        for p in (Path(__file__).resolve().parents[3] / "configs" / "pipeline").glob("*.yaml")
    ),
)
def test_every_shipped_pipeline_composes_every_stage(name: str, tmp_path: Path) -> None:
    """Each configs/pipeline/*.yaml resolves, and each of its stages' settings are keys of that
    stage's config (a typo would only show when the stage runs, possibly hours in)."""
    from pipeline.core.config import compose
    from pipeline.stages.run import load_stages, stage_config

    extra = ["source=/videos"] if name == "ingest_train" else []
    cfg = compose("run", [f"pipeline={name}", f"run_dir={tmp_path}", *extra])
    stages = load_stages(cfg, tmp_path)
    assert stages
    for s in stages:
        stage_cfg = stage_config(s, tmp_path)
        assert stage_cfg.report == str(tmp_path / s.name / "result.json")
    if name == "full":
        assert [s.name for s in stages][-2:] == ["generate_gan", "evaluate_gan"]
