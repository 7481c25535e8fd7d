"""One progress display for every long stage: done/total, rate, ETA, and free-form fields."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


class Tracker:
    """Handle returned by `progress()`: call `advance(n, **fields)` as work completes."""

    def __init__(self, progress: Progress, task: Any, unit: str) -> None:
        self._progress, self._task, self.unit = progress, task, unit
        self.start = time.perf_counter()
        self.done = 0

    def advance(self, n: float = 1, **fields: Any) -> None:
        self.done += n
        rate = self.done / max(time.perf_counter() - self.start, 1e-9)
        info = "  ".join(f"{k} {_fmt(v)}" for k, v in fields.items())
        self._progress.update(self._task, advance=n, rate=f"{rate:,.1f} {self.unit}/s", info=info)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


@contextmanager
def progress(
    description: str, total: float | None, unit: str = "it", completed: float = 0
) -> Iterator[Tracker]:
    """A live progress line on stderr (plain periodic lines when stderr is not a terminal)."""
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
    with Progress(
        *columns,
        console=console,
        transient=False,
        refresh_per_second=4 if sys.stderr.isatty() else 0.2,
    ) as p:
        task = p.add_task(description, total=total, completed=completed, rate="", info="")
        yield Tracker(p, task, unit)


def summary(title: str, rows: dict[str, Any]) -> None:
    """The one-screen summary a stage prints when it ends."""
    from rich.table import Table

    table = Table(title=title, show_header=False, title_justify="left")
    for k, v in rows.items():
        table.add_row(str(k), _fmt(v))
    console.print(table)
