"""The one result shape of every benchmark: a printed table and `{"rows": [...]}` JSON."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any


class Table:
    """Rows of {"name", "value", "unit", "reference", "ratio"}; ratio = value / reference's."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.rows: list[dict[str, Any]] = []

    def add(self, name: str, value: float, unit: str, reference: str | None = None) -> None:
        ratio = None
        if reference is not None:
            ref = next(r for r in self.rows if r["name"] == reference)
            ratio = round(value / ref["value"], 3) if ref["value"] else None
        self.rows.append(
            {
                "name": name,
                "value": round(value, 3),
                "unit": unit,
                "reference": reference,
                "ratio": ratio,
            }
        )

    def print(self) -> None:
        print(f"\n{self.title}  ({platform.node()}, {platform.processor() or platform.machine()})")
        w = max(len(r["name"]) for r in self.rows)
        print(f"{'name':<{w}}  {'value':>12}  {'unit':<10}  {'ratio':>6}  reference")
        for r in self.rows:
            ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}x"
            value = f"{r['value']:>12,.1f}" if abs(r["value"]) >= 100 else f"{r['value']:>12.3f}"
            print(f"{r['name']:<{w}}  {value}  {r['unit']:<10}  {ratio:>6}  {r['reference'] or ''}")

    def write(self, path: str | None, **extra: Any) -> None:
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            body = {"title": self.title, "time": time.time(), "rows": self.rows, **extra}
            Path(path).write_text(json.dumps(body, indent=2) + "\n")
            print(f"wrote {path}")
