"""`framecast report run_dir=DIR`: the HTML report of a pipeline run (`framecast run`).

`run_dir/report.html` is static and self-contained: inline CSS, no script, no network. Images
are relative links to files in the run directory (the stages' own plots, grids and GIFs, and the
few the report draws into `run_dir/report_assets/`: training curves, samples of synthesized
stores, a GIF of each prediction video), so the folder can be copied or served as it is.

Per stage: its status (ran, cached, failed, not run yet), time taken, its key numbers (metrics
beside the copy-last-frame baseline, throughput), its pictures, links to its outputs and the
resolved config it ran with. Everything comes from the files a run writes (`run.json`,
`NAME/stage.json`), so the report can be rebuilt at any time, also while a run is going on.
"""

from __future__ import annotations

import html
import json
import os
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pipeline.core.config import UsageError, required, write_result
from pipeline.io.previews import rgb
from pipeline.io.store import FrameStore
from pipeline.io.video import decode_frames, write_video

ASSETS = "report_assets"
LOWER_IS_BETTER = {"mse": True, "mae": True, "bce": True, "psnr": False, "ssim": False}


def run(cfg: DictConfig) -> dict:
    run_dir = Path(str(required(cfg, "run_dir"))).expanduser()
    if not (run_dir / "run.json").exists():
        raise UsageError(f"run_dir={run_dir}: not a run directory of `framecast run` (no run.json)")
    out = Path(str(cfg.out)) if cfg.get("out") else None
    t0 = time.perf_counter()
    path = build_report(run_dir, out)
    result = {"stage": "report", "run_dir": str(run_dir), "report": str(path)}
    result["seconds"] = round(time.perf_counter() - t0, 3)
    write_result(cfg, result, None)
    print(f"wrote {path}")
    return result


def build_report(run_dir: str | os.PathLike[str], out: Path | None = None) -> Path:
    """Write the report of `run_dir` (default `run_dir/report.html`, atomically); its path."""
    run_dir = Path(run_dir)
    state = json.loads((run_dir / "run.json").read_text())
    out = out or run_dir / "report.html"
    page = _Page(run_dir, out.parent)
    rows = state.get("stages", [])
    records = {r["name"]: _record(run_dir / r["name"]) for r in rows}
    body = [_header(state, rows, records, page)]
    body += _comparisons(rows, records, page)
    for i, row in enumerate(rows, 1):
        body.append(_stage_section(i, len(rows), row, records.get(row["name"]), page))
    body.append(
        _details("Run configuration (resolved)", _yaml(state.get("config", {})), open_=False)
    )
    text = _HTML.format(
        title=html.escape(f"framecast run: {state.get('pipeline', '')}"),
        css=_CSS,
        body="\n".join(body),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    return out


def _record(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / "stage.json").read_text())
    except (OSError, ValueError):
        return None


class _Page:
    """Links relative to the report's folder; drawn assets under run_dir/report_assets."""

    def __init__(self, run_dir: Path, base: Path) -> None:
        self.run_dir, self.base = run_dir, base
        self.assets = run_dir / ASSETS

    def href(self, path: str | os.PathLike[str]) -> str:
        p = Path(path)
        if "://" in str(path):
            return str(path)
        rel = os.path.relpath(p.absolute(), self.base.absolute())
        return html.escape(Path(rel).as_posix(), quote=True)

    def link(self, path: str | os.PathLike[str], label: str | None = None) -> str:
        exists = "://" in str(path) or Path(path).exists()
        text = html.escape(label or Path(path).name)
        if not exists:
            return f'<span class="missing">{text} (missing)</span>'
        return f'<a href="{self.href(path)}">{text}</a>'

    def img(self, path: str | os.PathLike[str] | None, caption: str) -> str:
        if not path or not Path(path).is_file():
            return ""
        return (
            f'<figure><img src="{self.href(path)}" alt="{html.escape(caption, quote=True)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def asset(self, record: dict[str, Any], name: str) -> Path:
        """A file the report draws for a stage; stale when older than the stage's record."""
        self.assets.mkdir(parents=True, exist_ok=True)
        return self.assets / f"{record['name']}-{name}"


def _fresh(path: Path, record: dict[str, Any]) -> bool:
    return path.exists() and path.stat().st_mtime >= float(record.get("finished") or 0)


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return html.escape(str(v))
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    return html.escape(str(v))


def _seconds(s: Any) -> str:
    if s is None:
        return ""
    s = float(s)
    return f"{s:.1f} s" if s < 120 else f"{int(s // 60)} min {int(s % 60)} s"


def _kv(rows: dict[str, Any]) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>"
        for k, v in rows.items()
        if v is not None
    )
    return f'<table class="kv">{cells}</table>'


def _details(summary: str, content: str, open_: bool = False) -> str:
    flag = " open" if open_ else ""
    return f"<details{flag}><summary>{html.escape(summary)}</summary>{content}</details>"


def _yaml(obj: Any) -> str:
    try:
        text = OmegaConf.to_yaml(OmegaConf.create(obj))
    except Exception:  # noqa: BLE001 - any object: show it as JSON
        text = json.dumps(obj, indent=2, default=str)
    return f"<pre>{html.escape(text)}</pre>"


def _headline(row: dict[str, Any], record: dict[str, Any] | None) -> str:
    """One number per stage for the overview table."""
    if record is None:
        return ""
    r = record.get("result") or {}
    stage = record.get("stage")
    if stage == "synth":
        return f"{_fmt(r.get('written', 0) + r.get('skipped', 0))} videos"
    if stage == "ingest":
        return f"{_fmt(len(r.get('ok', [])))} videos, {_fmt(len(r.get('failed', [])))} failed"
    if stage == "train":
        return f"{_fmt(r.get('steps'))} steps, loss {_fmt(r.get('loss'))}"
    if stage == "evaluate" and "mse" in r:
        base = (r.get("copy_last") or {}).get("mse")
        return f"MSE {_fmt(r['mse'])} (copy-last {_fmt(base)})"
    if stage == "evaluate" and r.get("shape_fill"):
        sf = r["shape_fill"]
        gen, real = sf["generated"]["recognisable"], sf["real"]["recognisable"]
        line = f"shapes recognisable {_fmt(gen)} (real {_fmt(real)})"
        gen, real = sf["generated"].get("read_shape"), sf["real"].get("read_shape")
        if gen is not None:
            line += f", read as a shape {_fmt(gen)} (real {_fmt(real)})"
        return line
    if stage == "predict":
        return f"{_fmt(r.get('frames_written'))} frames"
    if stage == "generate":
        return f"{_fmt(r.get('num_videos'))} videos"
    return ""


def _header(
    state: dict[str, Any],
    rows: list[dict[str, Any]],
    records: dict[str, dict[str, Any] | None],
    page: _Page,
) -> str:
    started, finished = state.get("started"), state.get("finished")
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(started)) if started else ""
    total = _seconds(finished - started) if started and finished else "running"
    lines = [
        f"<h1>framecast run: {html.escape(str(state.get('pipeline', '')))}</h1>",
        f"<p class=desc>{html.escape(str(state.get('description') or ''))}</p>",
        f"<p class=meta>run directory <code>{html.escape(str(state.get('run_dir', '')))}"
        f"</code> · started {when} · took {total} · rebuild: "
        f"<code>framecast report run_dir={html.escape(str(state.get('run_dir', '')))}</code></p>",
        "<table class=overview><tr><th>#</th><th>stage</th><th>runs</th><th>status</th>"
        "<th>time</th><th>result</th></tr>",
    ]
    for i, row in enumerate(rows, 1):
        name = row["name"]
        record = records.get(name)
        seconds = row.get("seconds") if row.get("seconds") is not None else None
        if seconds is None and record is not None:
            seconds = record.get("seconds")
        status = row.get("status", "pending")
        lines.append(
            f'<tr><td>{i}</td><td><a href="#{html.escape(name, quote=True)}">'
            f"{html.escape(name)}</a></td><td>{html.escape(row.get('stage', ''))}</td>"
            f'<td><span class="st {html.escape(status)}">{html.escape(status)}</span></td>'
            f"<td>{_seconds(seconds)}</td><td>{_headline(row, record)}</td></tr>"
        )
    lines.append("</table>")
    return "\n".join(lines)


def _stage_section(
    i: int, n: int, row: dict[str, Any], record: dict[str, Any] | None, page: _Page
) -> str:
    name, stage = row["name"], row.get("stage", "")
    status = row.get("status", "pending")
    head = (
        f'<section id="{html.escape(name, quote=True)}"><h2>{i}/{n} · {html.escape(name)} '
        f'<small>framecast {html.escape(stage)}</small> <span class="st {html.escape(status)}">'
        f"{html.escape(status)}</span></h2>"
    )
    if record is None:
        msg = row.get("error") or "not run yet"
        return f"{head}<p class=missing>{html.escape(str(msg))}</p></section>"
    parts = [head]
    if row.get("error"):
        parts.append(f"<p class=missing>this run: {html.escape(str(row['error']))}</p>")
    result = record.get("result") or {}
    renderer = _RENDERERS.get(stage)
    if renderer is not None:
        try:
            parts.append(renderer(record, result, page))
        except Exception as e:  # noqa: BLE001 - one broken stage must not hide the others
            parts.append(f"<p class=missing>could not render: {html.escape(str(e))}</p>")
    outputs = record.get("outputs") or {}
    links = [page.link(p, f"{k}: {Path(p).name}") for k, p in outputs.items()]
    links.append(page.link(page.run_dir / name / "result.json", "result.json"))
    links.append(page.link(page.run_dir / name / "stage.json", "stage.json"))
    parts.append(f"<p class=links>outputs: {' · '.join(links)}</p>")
    meta = (
        f"key {record.get('key')} · took {_seconds(record.get('seconds'))} · finished "
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(record.get('finished') or 0))}"
    )
    if record.get("groups"):
        groups = " ".join(f"{k}={v}" for k, v in record["groups"].items())
        meta += f" · {html.escape(groups)}"
    parts.append(f"<p class=meta>{html.escape(meta)}</p>")
    parts.append(_details("configuration", _yaml(record.get("config", {}))))
    parts.append("</section>")
    return "\n".join(parts)


# ---------------------------------------------------------------- predictors side by side

# (metric, lower is better) of the side-by-side tables and plots
COMPARED = (("mse", True), ("psnr", False), ("ssim", False), ("sharpness", False))


def _comparisons(
    rows: list[dict[str, Any]], records: dict[str, dict[str, Any] | None], page: _Page
) -> list[str]:
    """One section per set of predictors evaluated on the same data (same store, context and
    horizon): their per-step curves in one plot, a table with the best value marked, and their
    predictions of the same sequences one under the other, beside copy-last-frame. An
    evaluation's `evaluate.baseline` joins its set as one more predictor."""
    groups: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for row in rows:
        record = records.get(row["name"])
        r = (record or {}).get("result") or {}
        if record is None or record.get("stage") != "evaluate" or "per_step" not in r:
            continue
        if "mse" not in r:
            continue
        key = (str(r.get("data")), int(r["context"]), int(r["horizon"]))
        files = r.get("files") or {}
        members = groups.setdefault(key, [])
        shown = [(r, "predicted")]  # the evaluated model, and its baseline rolled out beside it
        if isinstance(r.get("baseline"), dict):
            shown.append((r["baseline"], "baseline"))
        for metrics, array in shown:
            label = _model_label(str(metrics.get("checkpoint")), str(metrics.get("model")), records)
            members.append(
                {
                    "label": label,
                    "stage": row["name"],
                    "metrics": metrics,
                    "npz": files.get("samples_npz"),
                    "array": array,
                    "finished": record.get("finished") or 0,
                }
            )
    sections = []
    for n, ((data, context, horizon), members) in enumerate(groups.items(), 1):
        if len(members) < 2:
            continue  # one predictor: its own section already shows it beside copy-last
        try:
            sections.append(_comparison(n, data, context, horizon, members, page))
        except Exception as e:  # noqa: BLE001 - a broken comparison must not hide the stages
            sections.append(
                f"<section><h2>Side by side: {html.escape(Path(data).name)}</h2>"
                f"<p class=missing>could not render: {html.escape(str(e))}</p></section>"
            )
    return sections


def _model_label(checkpoint: str, family: str, records: dict[str, dict[str, Any] | None]) -> str:
    """The model config a checkpoint was trained with and the stage that trained it
    (`lstm_autoencoder_cpu (train_cpu)`), else the family name."""
    for name, record in records.items():
        if record is None or record.get("stage") != "train":
            continue
        if checkpoint in (record.get("outputs") or {}).values():
            model = (record.get("groups") or {}).get("model") or family
            return f"{model} ({name})"
    return family


def _comparison(
    n: int, data: str, context: int, horizon: int, members: list[dict[str, Any]], page: _Page
) -> str:
    copy_last = members[0]["metrics"]["copy_last"]
    series = [(m["label"], m["metrics"]) for m in members] + [("copy last frame", copy_last)]
    # table: a row per predictor, the best value of each column in bold
    names = [m for m, _ in COMPARED if m in copy_last]
    best = {}
    for m, lower in COMPARED:
        values = [s[m] for _, s in series if isinstance(s.get(m), int | float)]
        if values:
            best[m] = min(values) if lower else max(values)
    head = "".join(f"<th>{m.upper()}</th>" for m in names)
    body = []
    for label, s in series:
        cells = "".join(
            f"<td><b>{_fmt(s.get(m))}</b></td>"
            if s.get(m) == best.get(m)
            else f"<td>{_fmt(s.get(m))}</td>"
            for m in names
        )
        body.append(f"<tr><th>{html.escape(label)}</th>{cells}</tr>")
    arrows = " · ".join(
        f"{m.upper()} {'lower' if lower else 'higher'} is better" for m, lower in COMPARED
    )
    table = (
        f"<table class=metrics><tr><th>predictor</th>{head}</tr>{''.join(body)}</table>"
        f"<p class=dim>{arrows}; sharpness: the predictions' image gradients as a share of the "
        "true frames' (1 = as sharp)</p>"
    )
    finished = max(float(m["finished"]) for m in members)
    record = {"name": f"compare-{n}", "finished": finished}
    plot = page.asset(record, "per_step.png")
    if not _fresh(plot, record):
        _plot_side_by_side(series, horizon, plot)
    grid = page.asset(record, "samples.png")
    if not _fresh(grid, record):
        _grid_side_by_side(members, context, grid)
    title = f"{Path(data).name} ({context} observed → {horizon} predicted)"
    figs = page.img(plot, "metrics per future step, every predictor") + page.img(
        grid,
        "the same held-out sequences: true frames, then each predictor's (observed frames "
        "first, red bar: predicted)",
    )
    stages = ", ".join(dict.fromkeys(m["stage"] for m in members))
    return (
        f"<section><h2>Side by side: {html.escape(title)}</h2>"
        f"<p class=meta>from {html.escape(stages)} · data <code>{html.escape(data)}</code></p>"
        f'{table}<div class="figs">{figs}</div></section>'
    )


def _plot_side_by_side(series: list[tuple[str, dict[str, Any]]], horizon: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m for m, _ in COMPARED if m in series[-1][1].get("per_step", {})]
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.0), squeeze=False)
    steps = list(range(1, horizon + 1))
    for ax, m in zip(axes[0], names):
        for i, (label, s) in enumerate(series):
            values = (s.get("per_step") or {}).get(m)
            if values:
                style = "k--" if i == len(series) - 1 else "-"
                ax.plot(steps[: len(values)], values, style, lw=1.4, label=label)
        ax.set_title(m)
        ax.set_xlabel("future step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _grid_side_by_side(
    members: list[dict[str, Any]], context: int, path: Path, sequences: int = 3, columns: int = 16
) -> None:
    """Per sequence a strip of true frames, then one per predictor (its observed frames, then
    its predictions), labelled; long horizons show every k-th step (at most `columns`)."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arrays: dict[str, Any] = {}
    rows: list[tuple[str, Any]] = []
    for m in members:
        if not m["npz"] or not Path(m["npz"]).is_file():
            continue
        if m["npz"] not in arrays:
            with np.load(m["npz"], allow_pickle=False) as z:
                arrays[m["npz"]] = {k: z[k] for k in z.files}
        rows.append((m["label"], arrays[m["npz"]]))
    if not rows:
        return
    true = rows[0][1]["true"]  # (N, T, H, W, C): the same sequences for every member
    n = min(sequences, len(true), *(len(a["true"]) for _, a in rows))
    horizon = true.shape[1] - context
    every = max(1, -(-horizon // columns))
    shown = list(range(context - min(context, 3), context)) + list(
        range(context + every - 1, context + horizon, every)
    )
    strips, labels = [], []
    for k in range(n):
        strips.append(true[k][shown])
        labels.append("true")
        for (label, a), member in zip(rows, [m for m in members if m["npz"]]):
            pred = a[member["array"]][k]
            strips.append(np.concatenate([true[k][:context], pred])[shown])
            labels.append(label)
    h, w = true.shape[2:4]
    fig, axes = plt.subplots(
        len(strips),
        1,
        figsize=(min(14, 0.5 + len(shown) * 0.75), 0.75 * len(strips) + 0.6),
        squeeze=False,
    )
    for ax, strip, label in zip(axes[:, 0], strips, labels):
        img = np.concatenate([rgb(f) for f in strip], axis=1)
        ax.imshow(img, interpolation="nearest")
        ax.set_yticks([])
        ax.set_xticks([w * i + w / 2 for i in range(len(shown))])
        ax.set_xticklabels([str(t - context + 1) for t in shown], fontsize=6)
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
        ax.axvline(w * min(context, 3) - 0.5, color="red", lw=1.5)
    axes[-1, 0].set_xlabel("future step (<= 0: observed)", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------- per-stage renderers


def _synth(record: dict[str, Any], r: dict[str, Any], page: _Page) -> str:
    summ = r.get("summary") or {}
    rows = {
        "data": r.get("data"),
        "videos in store": summ.get("videos"),
        "frames in store": summ.get("frames"),
        "frame shapes": ", ".join(f"{k} ({v})" for k, v in (summ.get("frame_shapes") or {}).items())
        or None,
        "splits": ", ".join(f"{k} {v}" for k, v in (summ.get("splits") or {}).items()) or None,
        "written / skipped": f"{r.get('written')} / {r.get('skipped')}",
        "throughput": f"{_fmt(r.get('videos_per_s'))} videos/s ({r.get('workers')} workers)",
        "size on disk": f"{summ['size_bytes'] / 2**20:.1f} MiB" if summ.get("size_bytes") else None,
    }
    gif = page.asset(record, "samples.gif")
    if not _fresh(gif, record) and r.get("store"):
        _store_samples(str(r["store"]), gif)
    return _kv(rows) + f'<div class="figs">{page.img(gif, "first videos of the store")}</div>'


def _ingest(record: dict[str, Any], r: dict[str, Any], page: _Page) -> str:
    rows = {
        "videos stored": len(r.get("ok", [])),
        "skipped (already stored)": len(r.get("skipped", [])),
        "failed": len(r.get("failed", [])),
        "partial": len(r.get("partial", [])),
        "frames": r.get("frames"),
        "throughput": (
            f"{_fmt(r['frames'] / r['seconds'])} frames/s" if r.get("seconds") else None
        ),
    }
    out = _kv(rows)
    failed = r.get("failed") or []
    if failed:
        items = "".join(
            f"<li><code>{html.escape(str(f.get('source')))}</code>: "
            f"{html.escape(str(f.get('error')))}</li>"
            for f in failed[:50]
        )
        out += _details(f"failed inputs ({len(failed)})", f"<ul>{items}</ul>", open_=True)
    store = (record.get("config") or {}).get("store")
    gif = page.asset(record, "samples.gif")
    if store and not _fresh(gif, record):
        _store_samples(str(store), gif)
    return out + f'<div class="figs">{page.img(gif, "first videos of the store")}</div>'


def _train(record: dict[str, Any], r: dict[str, Any], page: _Page) -> str:
    rows = {
        "model": r.get("model"),
        "steps": r.get("steps"),
        "final loss": r.get("loss"),
        "throughput": f"{_fmt(r.get('samples_per_s'))} clips/s on {r.get('device')}",
        "training time": _seconds(r.get("seconds")),
        "backend": f"{r.get('backend')} ({r.get('workers')} worker(s))",
        "resumed": r.get("resumed") or None,
    }
    run_dir = Path(str((record.get("config") or {}).get("run_dir") or ""))
    metrics = run_dir / "metrics.jsonl"
    png = page.asset(record, "loss.png")
    if metrics.exists() and not _fresh(png, record):
        _plot_curves(metrics, png, str(r.get("model")))
    links = [page.link(metrics, "metrics.jsonl"), page.link(run_dir / "train.json", "train.json")]
    return (
        _kv(rows)
        + f'<div class="figs">{page.img(png, "training losses per step")}</div>'
        + f"<p class=links>{' · '.join(links)}</p>"
    )


# Generator metrics shown side by side: (label, key in metrics.json, key inside it or None).
GENERATOR_ROWS = (
    ("ACD (the object's colour; lower: steadier)", "acd", None),
    ("classifier accuracy", "accuracy", None),
    ("Inception Score (classifier posteriors)", "inception_score", None),
)
SHAPE_ROWS = (
    ("one compact object", "single_object"),
    ("circle-like", "circle_like"),
    ("square-like", "square_like"),
    ("circle- or square-like", "recognisable"),
    ("videos of one shape", "videos_recognisable"),
    ("median fill ratio", "fill_median"),
    ("read as a circle (template)", "read_circle"),
    ("read as a square (template)", "read_square"),
    ("read as a shape (template)", "read_shape"),
    ("median IoU with the nearer template", "template_iou_median"),
)


def _evaluate_generator(record: dict[str, Any], r: dict[str, Any], page: _Page) -> str:
    """A generator's evaluation: its metrics beside the real videos' (evaluate_generator)."""
    cells = []
    for label, key, _ in GENERATOR_ROWS:
        pair = r.get(key)
        if isinstance(pair, dict):
            cells.append(
                f"<tr><th>{label}</th><td>{_fmt(pair.get('generated'))}</td>"
                f"<td>{_fmt(pair.get('real'))}</td></tr>"
            )
    sf = r.get("shape_fill")
    if sf:
        for label, key in SHAPE_ROWS:
            cells.append(
                f"<tr><th>shapes: {label}</th><td>{_fmt(sf['generated'].get(key))}</td>"
                f"<td>{_fmt(sf['real'].get(key))}</td></tr>"
            )
    for shape, part in ((sf or {}).get("by_request") or {}).items():
        if "read_as_requested" in part:
            cells.append(
                f"<tr><th>asked for a {html.escape(shape)} ({part['videos']} videos): frames "
                f"read as one</th><td>{_fmt(part['read_as_requested'])}</td><td></td></tr>"
                f"<tr><th>asked for a {html.escape(shape)}: frames nearer a {html.escape(shape)}"
                f" than the other shape</th><td>{_fmt(part.get('nearer_requested'))}</td>"
                "<td></td></tr>"
            )
    for key in ("frechet_distance", "fvd"):
        if r.get(key) is not None:
            cells.append(f"<tr><th>{key}</th><td>{_fmt(r[key])}</td><td></td></tr>")
    table = (
        "<table class=metrics><tr><th>metric</th><th>generated</th><th>real</th></tr>"
        f"{''.join(cells)}</table>"
    )
    bands = (sf or {}).get("bands") or {}
    about = _kv(
        {
            "videos (generated / real)": f"{r.get('videos')} / {r.get('real_videos')}",
            "frames per video": r.get("length"),
            "checkpoint step": r.get("step"),
            "data": r.get("data"),
            "fill bands of real frames (circle; square)": (
                "; ".join(
                    "-" if bands.get(k) is None else f"{bands[k][0]:.3f} to {bands[k][1]:.3f}"
                    for k in ("circle", "square")
                )
                if sf
                else None
            ),
        }
    )
    notes = "".join(f"<li>{html.escape(str(n))}</li>" for n in r.get("notes") or [])
    files = r.get("files") or {}
    figs = page.img(files.get("samples_gif"), "evaluated generated videos (animated)")
    return (
        about
        + table
        + (f"<ul class=dim>{notes}</ul>" if notes else "")
        + f'<div class="figs">{figs}</div>'
    )


def _evaluate(record: dict[str, Any], r: dict[str, Any], page: _Page) -> str:
    if "acd" in r:
        return _evaluate_generator(record, r, page)
    base = r.get("copy_last") or {}
    cells = []
    names = [m for m in LOWER_IS_BETTER if m in r]
    names += [m for m in (r.get("per_step") or {}) if m not in names and m in r]
    for m in names:
        v, b, lower = r[m], base.get(m), LOWER_IS_BETTER.get(m)
        if b is None or lower is None or not isinstance(v, int | float):
            mark = ""
        elif v < b if lower else v > b:
            mark = '<span class="good">better</span>'
        else:
            mark = '<span class="bad">worse</span>'
        arrow = {True: "lower is better", False: "higher is better", None: ""}[lower]
        cells.append(
            f"<tr><th>{m.upper()}</th><td>{_fmt(v)}</td><td>{_fmt(b)}</td>"
            f"<td>{mark}</td><td class=dim>{arrow}</td></tr>"
        )
    table = (
        "<table class=metrics><tr><th>metric</th><th>model</th><th>copy last frame</th>"
        f"<th></th><th></th></tr>{''.join(cells)}</table>"
    )
    about = _kv(
        {
            "sequences": r.get("sequences"),
            "observed → predicted": f"{r.get('context')} → {r.get('horizon')} frames",
            "checkpoint step": r.get("step"),
            "data": r.get("data"),
        }
    )
    files = r.get("files") or {}
    figs = "".join(
        [
            page.img(files.get("plot"), "metrics per future step (model vs copy-last-frame)"),
            page.img(files.get("grid_gif"), "observed | true | predicted (animated)"),
            page.img(files.get("grid_png"), "observed | true | predicted"),
            page.img(files.get("motion_png"), "predicted frames, their flows and masks"),
            page.img(
                files.get("attention_png"),
                "where the first and last predicted frames looked (red: share of attention)",
            ),
        ]
    )
    return about + table + f'<div class="figs">{figs}</div>'


def _predict(record: dict[str, Any], r: dict[str, Any], page: _Page) -> str:
    rows = {
        "input": r.get("input"),
        "observed → predicted": f"{r.get('context')} → {r.get('horizon')} frames",
        "frames written": r.get("frames_written"),
    }
    for k, v in (r.get("metrics") or {}).items():
        rows[f"{k} (vs true future)"] = v
    video = r.get("out")
    gif = page.asset(record, "prediction.gif")
    if video and Path(video).exists() and not _fresh(gif, record):
        _video_to_gif(str(video), gif, float(r.get("fps") or 10))
    caption = "true (left) | observed, then predicted (right; red bar: predicted)"
    link = f"<p class=links>{page.link(video, 'the video')}</p>" if video else ""
    return _kv(rows) + f'<div class="figs">{page.img(gif, caption)}</div>' + link


def _generate(record: dict[str, Any], r: dict[str, Any], page: _Page) -> str:
    rows = {
        "model": f"{r.get('model')} (step {r.get('step')})",
        "videos": r.get("num_videos"),
        "generated / kept from before": f"{r.get('generated')} / {r.get('skipped')}",
        "frames per video": r.get("length"),
        "category": r.get("category"),
        "throughput": (
            f"{_fmt(r.get('videos_per_s'))} videos/s ({r.get('workers')} worker(s), "
            f"{r.get('backend')}, {r.get('device')})"
        ),
        "format": r.get("format"),
    }
    files = r.get("files") or {}
    figs = page.img(files.get("preview_gif"), "generated videos (animated)") + page.img(
        files.get("preview_png"), "generated videos: a row of frames per video"
    )
    links = [page.link(files["manifest"], "manifest.jsonl")] if files.get("manifest") else []
    if r.get("out"):
        links.append(page.link(r["out"], "the videos"))
    return _kv(rows) + f'<div class="figs">{figs}</div><p class=links>{" · ".join(links)}</p>'


_RENDERERS = {
    "synth": _synth,
    "ingest": _ingest,
    "train": _train,
    "evaluate": _evaluate,
    "predict": _predict,
    "generate": _generate,
}


# ---------------------------------------------------------------- drawn assets


def _store_samples(url: str, path: Path, count: int = 8, frames: int = 16) -> None:
    """An animated GIF of the first `count` videos of a store, side by side."""
    import numpy as np

    store = FrameStore.open(url)
    ids = store.video_ids()[:count]
    if not ids:
        return
    clips = [store.frames(v, 0, frames) for v in ids]
    t = min(len(c) for c in clips)
    h, w, c = clips[0].shape[1:]
    clips = [x[:t] for x in clips if x.shape[1:] == (h, w, c)]
    gap = np.full((t, h, 2, c), 255, np.uint8)
    row = np.concatenate([p for x in clips for p in (x, gap)][:-1], axis=2)
    scale = max(1, 96 // h)
    if scale > 1:
        row = row.repeat(scale, axis=1).repeat(scale, axis=2)
    if c == 1:
        row = np.repeat(row, 3, axis=3)
    write_video(str(path), row, fps=8)


def _video_to_gif(video: str, path: Path, fps: float) -> None:
    import numpy as np

    frames = list(decode_frames(video, max_frames=200))
    if frames:
        write_video(str(path), np.stack(frames), fps=min(fps, 10.0))


def _plot_curves(metrics: Path, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(ln) for ln in metrics.read_text().splitlines() if ln.strip()]
    if not records:
        return
    skip = {"step", "time", "samples_per_s", "instance_noise"}
    keys = [k for k in records[-1] if k not in skip and isinstance(records[-1][k], int | float)]
    steps = [r["step"] for r in records]
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    for k in keys:
        ax.plot(steps, [r.get(k, float("nan")) for r in records], label=k, lw=1.2)
    ax.set_xlabel("step")
    ax.set_title(f"{title}: training")
    if len(keys) > 1:
        ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="data:,">
<style>{css}</style></head>
<body>
{body}
</body></html>
"""

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;
max-width:1200px;padding:16px 24px;color:#1d2330;background:#fafbfc}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:17px;margin:0 0 8px}
h2 small{font-weight:normal;color:#667}
section{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:14px 18px;margin:14px 0}
table{border-collapse:collapse;margin:6px 0}
td,th{padding:3px 10px;text-align:left;border-bottom:1px solid #eef0f4;vertical-align:top}
table.kv th{color:#556;font-weight:500}
table.overview th{background:#f0f2f6}
table.metrics td{font-variant-numeric:tabular-nums}
.st{font-size:12px;padding:1px 7px;border-radius:9px;background:#e4e7ee;font-weight:500}
.st.ran{background:#d7f0dd}.st.cached{background:#dde8fb}.st.failed{background:#f8d7d7}
.st.partial{background:#fbecc9}.st.running{background:#fbecc9}
.good{color:#17803a;font-weight:600}.bad{color:#b3261e;font-weight:600}.dim{color:#889}
.missing{color:#b3261e}.meta{color:#667;font-size:12px}.desc{max-width:900px}
.figs{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start;margin:8px 0}
figure{margin:0}figure img{max-width:100%;border:1px solid #dde1e8}
img[src$=".gif"]{image-rendering:pixelated;min-height:128px}
figcaption{font-size:12px;color:#556}
pre{background:#f4f6f9;padding:8px 10px;overflow:auto;font-size:12px;max-height:480px}
details summary{cursor:pointer;color:#345}
"""

__all__ = ["run", "build_report"]
