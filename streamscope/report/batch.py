"""Several models side by side (``streamscope scan A B C``): one summary row per scanned model."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from streamscope.report.labels import plain

COLUMNS = ("model", "parameters", "Excellent", "Good", "Warning", "Critical", "worst κ", "lowest INT8 SQNR (dB)",
           "embedding norm mean", "seconds", "out")  # fmt: skip


def _finite(values):
    return [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)]


def summary_row(name: str, result) -> dict:
    """Parameters, grade counts, worst condition number, lowest SQNR, mean embedding row norm, time."""
    model = result.model
    counts = (model.get("health") or {}).get("counts") or {}
    kappa = _finite((r.get("spectral") or {}).get("condition_number") for r in result.tensors.values())
    sqnr = _finite((r.get("quantization") or {}).get("sqnr_db") for r in result.tensors.values())
    token_matrices = sorted((model.get("embedding") or {}).values(), key=lambda e: -e.get("vocab_size", 0))  # the token table first
    norms = _finite(e.get("norm_mean") for e in token_matrices)
    return {"model": name, "parameters": model["checkpoint"]["total_params"], **{g: counts.get(g) for g in COLUMNS[2:6]},
            "worst κ": max(kappa) if kappa else None, "lowest INT8 SQNR (dB)": min(sqnr) if sqnr else None,
            "embedding norm mean": norms[0] if norms else None, "seconds": round(model["timing"]["seconds"], 2), "out": str(result.out)}  # fmt: skip


def print_batch(rows: list[dict], console: Console) -> None:
    t = Table(title=f"{len(rows)} models")
    for c in COLUMNS[:-1]:
        t.add_column(c, justify="left" if c == "model" else "right")
    fmt = lambda v: "-" if v is None else (f"{v:,}" if isinstance(v, int) else f"{v:.4g}" if isinstance(v, float) else plain(v))  # noqa: E731
    for r in rows:
        t.add_row(*(fmt(r.get(c)) for c in COLUMNS[:-1]))
    console.print(t)
