"""Small statistics shared by the stages: latency percentiles."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def percentiles(values: Iterable[float] | np.ndarray) -> dict[str, float | None]:
    """p50/p95/p99/mean/max of `values` (None when empty), rounded to 0.001, and their count."""
    a = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, np.float64)
    if a.size == 0:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "max": None, "n": 0}
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {
        "p50": round(float(p50), 3),
        "p95": round(float(p95), 3),
        "p99": round(float(p99), 3),
        "mean": round(float(a.mean()), 3),
        "max": round(float(a.max()), 3),
        "n": int(a.size),
    }
