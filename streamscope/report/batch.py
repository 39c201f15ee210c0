"""Several models side by side (``streamscope scan A B C``): one summary row per scanned model.

A metric whose analysis did not run is "not computed", never a 0 grade count or a ``-`` that reads as "none found".
"""

from __future__ import annotations

import math

from rich.console import Console

from streamscope.report.labels import plain
from streamscope.report.terminal import Column, fitted_table, num

GRADES = ("Excellent", "Good", "Warning", "Critical")
COLUMNS = ("model", "parameters", *GRADES, "worst κ", "lowest INT8 SQNR (dB)", "embedding norm mean", "seconds", "out")
NOT_COMPUTED = "not computed"
#: Summary column -> the analyses that compute it (any one of them).
_NEEDS = {"grades": ("quantization", "spectral"), "worst κ": ("spectral",), "lowest INT8 SQNR (dB)": ("quantization",)}


def _finite(values):
    return [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)]


def _computed(model: dict, column: str) -> bool:
    ran = set((model.get("options") or {}).get("analyses") or ())
    if column == "grades":
        return bool((model.get("health") or {}).get("graded_tensors")) or bool(ran & set(_NEEDS["grades"]))
    return bool(ran & set(_NEEDS[column]))


def summary_row(name: str, result) -> dict:
    """Parameters, grade counts, worst condition number, lowest SQNR, mean embedding row norm, time; a metric
    whose analysis did not run is None here (empty in summary.csv) and named in ``not_computed``."""
    model = result.model
    counts = (model.get("health") or {}).get("counts") or {}
    kappa = _finite((r.get("spectral") or {}).get("condition_number") for r in result.tensors.values())
    sqnr = _finite((r.get("quantization") or {}).get("sqnr_db") for r in result.tensors.values())
    token_matrices = sorted((model.get("embedding") or {}).values(), key=lambda e: -e.get("vocab_size", 0))  # the token table first
    norms = _finite(e.get("norm_mean") for e in token_matrices)
    graded = _computed(model, "grades")
    return {"model": name, "parameters": model["checkpoint"]["total_params"], **{g: counts.get(g) if graded else None for g in GRADES},
            "worst κ": max(kappa) if kappa else None, "lowest INT8 SQNR (dB)": min(sqnr) if sqnr else None,
            "embedding norm mean": norms[0] if norms else None, "seconds": round(model["timing"]["seconds"], 2), "out": str(result.out),
            "not_computed": [c for c in _NEEDS if not _computed(model, c)]}  # fmt: skip


def csv_rows(rows: list[dict]) -> list[dict]:
    """The rows as summary.csv holds them: ``COLUMNS`` only."""
    return [{c: r.get(c) for c in COLUMNS} for r in rows]


def _cell(r: dict, column: str) -> str:
    if column in r.get("not_computed", ()):
        return NOT_COMPUTED
    if column == "grades":
        return "/".join(num(r.get(g)) for g in GRADES)
    return plain(r["model"]) if column == "model" else num(r.get(column), 4)


def print_batch(rows: list[dict], console: Console) -> None:
    """One row per model; a metric computed for no model is left out of the table and named beneath it."""
    columns = [Column("model", "left", wrap=True, readable=30), Column("parameters"), Column("grades\nE/G/W/C", keep=5),
               Column("worst κ", keep=4), Column("lowest INT8\nSQNR (dB)", keep=3), Column("embedding\nnorm mean", keep=2),
               Column("seconds", keep=1)]  # fmt: skip
    keys = ["model", "parameters", "grades", "worst κ", "lowest INT8 SQNR (dB)", "embedding norm mean", "seconds"]
    absent = [k for k in _NEEDS if all(k in r.get("not_computed", ()) for r in rows)]
    shown = [i for i, k in enumerate(keys) if k not in absent]
    cells = [[_cell(r, keys[i]) for i in shown] for r in rows]
    console.print(fitted_table(f"{len(rows)} models", [columns[i] for i in shown], cells, console.width))
    if absent:
        names = {"grades": "health grades", "worst κ": "condition numbers (κ)", "lowest INT8 SQNR (dB)": "INT8 SQNR"}
        console.print(f"not computed: {', '.join(names[k] for k in absent)}; run with --analyses all (or add quantization,spectral)",
                      highlight=False)  # fmt: skip
