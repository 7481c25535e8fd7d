"""One progress display for every long stage: done/total, rate, ETA, and free-form fields.

On a terminal it is a live rich progress bar; otherwise (CI, logs, `ray job submit`) it prints a
plain line every `PLAIN_EVERY_S` seconds and one at the end. Without rich (a bare GPU host that
runs `trainer.backend=local` from carried wheels) the plain lines are used everywhere.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

try:
    from rich.console import Console

    console: Any = Console(stderr=True)
except ImportError:  # pragma: no cover - exercised on hosts without rich
    console = None

PLAIN_EVERY_S = 10.0


class Tracker:
    """Handle returned by `progress()`: call `advance(n, **fields)` as work completes."""

    def __init__(
        self, description: str, total: float | None, unit: str, completed: float, live: Any
    ) -> None:
        self.description, self.total, self.unit = description, total, unit
        self.start = time.perf_counter()
        self.done = completed
        self._initial = completed
        self._live = live  # (Progress, task id) on a terminal, else None
        self._last_print = self.start
        self._fields = ""
        self.time_limit: float | None = None  # seconds: the work also stops then (train)

    def advance(self, n: float = 1, **fields: Any) -> None:
        self.done += n
        self._fields = "  ".join(f"{k} {_fmt(v)}" for k, v in fields.items())
        if self._live is not None:
            progress, task = self._live
            progress.update(
                task, advance=n, rate=f"{self.rate:,.1f} {self.unit}/s", info=self._fields
            )
        elif time.perf_counter() - self._last_print >= PLAIN_EVERY_S:
            self._print()

    @property
    def rate(self) -> float:
        return (self.done - self._initial) / max(time.perf_counter() - self.start, 1e-9)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def _print(self) -> None:
        self._last_print = time.perf_counter()
        total = f"/{self.total:g}" if self.total else ""
        eta = ""
        if self.total and self.rate > 0:
            left = (self.total - self.done) / self.rate
            if self.time_limit is not None:
                left = min(left, max(0.0, self.time_limit - self.seconds))
            eta = f"  ETA {_hms(left)}"
        line = (
            f"{self.description}: {self.done:g}{total} {self.unit}  {self.rate:,.1f} {self.unit}/s"
            f"  elapsed {_hms(self.seconds)}{eta}  {self._fields}"
        )
        if console is None:
            print(line, file=sys.stderr, flush=True)
        else:
            console.print(line, highlight=False, soft_wrap=True)


def _hms(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


@contextmanager
def progress(
    description: str,
    total: float | None,
    unit: str = "it",
    completed: float = 0,
    time_limit: float | None = None,
) -> Iterator[Tracker]:
    """A live progress line on stderr (plain periodic lines when stderr is not a terminal).
    `time_limit` (seconds) caps the ETA of work that also stops on a clock."""
    if console is None or not console.is_terminal:
        tracker = Tracker(description, total, unit, completed, None)
        tracker.time_limit = time_limit
        yield tracker
        tracker._print()
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    ]
    if time_limit is not None:
        columns[-2] = TextColumn("{task.fields[eta]}")
    with Progress(*columns, console=console, transient=False) as p:
        task = p.add_task(description, total=total, completed=completed, rate="", info="", eta="")
        tracker = Tracker(description, total, unit, completed, (p, task))
        tracker.time_limit = time_limit
        yield tracker


def summary(title: str, rows: dict[str, Any]) -> None:
    """The one-screen summary a stage prints when it ends: a table on a terminal, plain lines
    elsewhere (logs, pipes, `ray job submit`), which no console width wraps mid-path."""
    if console is None or not console.is_terminal:
        print(title, file=sys.stderr)
        for k, v in rows.items():
            print(f"  {k:<16} {_fmt(v)}", file=sys.stderr)
        return
    from rich.table import Table

    table = Table(title=title, show_header=False, title_justify="left")
    for k, v in rows.items():
        table.add_row(str(k), _fmt(v))
    console.print(table)
