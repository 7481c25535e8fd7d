"""The HTML report of a run: rebuilt by `framecast report`, self-contained (no network), and
rendered by headless Chromium with every image loaded and no console error (a screenshot is
kept in .artifacts/report.png)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from test_run import ORDER, tiny_demo

from pipeline.cli import main

ARTIFACTS = Path(__file__).resolve().parents[3] / ".artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture()
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    return tiny_demo(tmp_path_factory)


def _sources(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html)


def test_report_rebuilds_with_every_stage_and_local_images(demo_run: tuple[Path, dict]) -> None:
    run_dir, _ = demo_run
    (run_dir / "report.html").unlink()
    shutil.rmtree(run_dir / "report_assets")
    assert main(["report", f"run_dir={run_dir}"]) == 0
    html = (run_dir / "report.html").read_text()
    for name in ORDER:
        assert f'id="{name}"' in html
    images = _sources(html)
    # data samples, 2 training curves, the evaluation's plot + grids, the prediction GIF
    assert len(images) >= 8
    for src in images:
        assert "://" not in src and (run_dir / src).is_file(), src
    assert "copy last frame" in html and "configuration" in html
    assert not re.search(r"(src|href)=\"https?://", html)  # static: nothing from the network
    # predictors of one store side by side: the paper LSTM and the CPU predictor on Moving
    # MNIST, the hierarchical predictor and its LSTM baseline on stick figures; copy-last in each
    assert html.count("<h2>Side by side: ") == 2
    assert "lstm_autoencoder_small (train_lstm)" in html
    assert "lstm_autoencoder_cpu (train_cpu)" in html
    assert "hierarchical (train_hier)" in html and "lstm_autoencoder_cpu (train_stick_lstm)" in html
    for n in (1, 2, 3):
        if (run_dir / "report_assets" / f"compare-{n}-per_step.png").exists():
            assert f"report_assets/compare-{n}-samples.png" in html
    if (run_dir / "generate_gan").exists():
        assert "generate_gan/preview.gif" in html
    if (run_dir / "evaluate_gan").exists():  # generator metrics beside the real videos'
        assert "shapes recognisable" in html and "shapes: square-like" in html
        assert "shapes: read as a square (template)" in html
        # the demo's generator is asked for shapes (shape x motion labels): counted per shape
        assert re.search(r"asked for a (circle|square) \(\d+ videos\): frames read as one", html)
        assert "evaluate_gan/samples.gif" in html
        assert "Inception Score (classifier posteriors)" in html and "ACD (the object" in html


def test_report_of_a_folder_that_is_not_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", f"run_dir={tmp_path}"]) == 2
    assert "not a run directory" in capsys.readouterr().err


def _browser_or_skip() -> str:
    """The system Chromium for Playwright; CI (.ci/run installs both) must not skip."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    path = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs it with apt-get)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


def test_report_renders_in_headless_chromium(demo_run: tuple[Path, dict]) -> None:
    chromium = _browser_or_skip()
    from playwright.sync_api import sync_playwright

    run_dir, _ = demo_run
    report = run_dir / "report.html"
    if not report.exists():
        assert main(["report", f"run_dir={run_dir}"]) == 0
    errors: list[str] = []
    outside: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=CHROMIUM_ARGS,  # Playwright gives it a fresh temporary profile
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))

            def only_files(route) -> None:  # noqa: ANN001
                if route.request.url.startswith(("file:", "data:")):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            page.route("**/*", only_files)
            page.goto(report.absolute().as_uri(), wait_until="load")
            images = page.evaluate(
                "() => Array.from(document.images).map(i => "
                "({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0}))"
            )
            assert page.title().startswith("framecast run")
            for name in ORDER:
                assert page.locator(f"section#{name}").count() == 1
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        finally:
            browser.close()
    assert len(images) >= 8
    assert [i["src"] for i in images if not i["ok"]] == []
    assert errors == [] and outside == []
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000
