"""Health grades from the WeightScope thresholds, per tensor and for the whole model.

Each metric maps to a level 0..3 (Excellent, Good, Warning, Critical); a tensor's grade is its worst level.
- condition number: < 1e3 safe, 1e3-1e4 attention, 1e4-1e5 high risk, > 1e5 critical (a lower bound from the
  method's resolution counts; one whose sigma_min lies below the stored dtype's rounding noise is not graded,
  only noted: it measures the rounding, and bf16 and GGUF copies of one model would grade differently)
- INT8 SQNR: > 40 dB safe, 30-40 dB medium, 20-30 dB high risk, < 20 dB critical
- extreme outliers (3 x IQR): < 0.1 % friendly, 0.1-1 % needs a strategy, 1-10 % high risk, > 10 % critical
- stable-rank utilisation (stable rank / total rank) below 0.3 is reported as a compression opportunity,
  not a risk.
- an all-zero matrix carries no information: it is Critical whichever metrics were computed (its condition
  number is undefined, its SQNR 0/0), with that reason, so the grade does not depend on ``--spectral``.
"""

from __future__ import annotations

import math

from streamscope.analyses.registry import Analysis

GRADES = ("Excellent", "Good", "Warning", "Critical")


def _level(value: float | None, edges: tuple[float, float, float], higher_is_worse: bool = True) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if not higher_is_worse:
        value = -value
        edges = tuple(-e for e in edges)  # type: ignore[assignment]
    return sum(value > e for e in edges)


def _all_zero(record: dict, spec: dict, quant: dict) -> bool:
    """A non-empty matrix whose every value is 0, from whichever metric saw its largest value."""
    shape = record.get("info", {}).get("shape", [0, 0])
    if len(shape) < 2 or not math.prod(shape):
        return False
    for v in ((record.get("basic_stats") or {}).get("abs_max"), quant.get("abs_max"), spec.get("max_singular_value")):
        if v is not None:
            return v == 0
    return False


def grade_tensor(record: dict, nan: int = 0, inf: int = 0) -> dict | None:
    """Grade one tensor record (needs ``spectral`` and/or ``quantization``); None when neither is there.

    NaN or Inf values make a tensor Critical whatever else it shows. Quantization metrics grade matrices only:
    a norm or bias vector is never quantized to INT8 on its own.
    """
    spec, quant = record.get("spectral") or {}, record.get("quantization") or {}
    if not spec and not quant:
        return None
    if len(record.get("info", {}).get("shape", [0, 0])) < 2:
        quant = {}
    levels: dict[str, int] = {}
    reasons, notes = [], []
    if nan or inf:
        levels["non_finite"] = 3
    cond = spec.get("condition_number")
    if not nan and not inf and _all_zero(record, spec, quant):
        levels["all_zero"] = 3  # its other metrics (κ = 0/0, SQNR = 0/0) mean nothing: not graded
    elif cond is not None and spec.get("condition_number_resolved") is False:
        notes.append(f"condition number >= {cond:.3g} not resolved at the stored dtype: not graded")
    elif cond is not None:
        levels["condition_number"] = _level(math.inf if cond is None else cond, (1e3, 1e4, 1e5))
    if quant and "all_zero" not in levels:
        sqnr = quant.get("sqnr_db")
        lv = _level(sqnr, (40.0, 30.0, 20.0), higher_is_worse=False) if sqnr is not None else None
        if lv is not None:
            levels["sqnr_db"] = lv
        lv = _level(quant.get("extreme_outlier_percentage"), (0.1, 1.0, 10.0))
        if lv is not None:
            levels["extreme_outlier_percentage"] = lv
    describe = {
        "condition_number": lambda: f"condition number {cond:.3g}" + (" (lower bound)" if spec.get("condition_number_is_lower_bound") else ""),
        "sqnr_db": lambda: f"INT8 SQNR {quant['sqnr_db']:.1f} dB",
        "extreme_outlier_percentage": lambda: f"{quant['extreme_outlier_percentage']:.3g}% extreme outliers",
        "non_finite": lambda: f"{nan} NaN and {inf} Inf values",
        "all_zero": lambda: "all values are zero: the matrix carries no information",
    }
    for key, lv in sorted(levels.items(), key=lambda kv: -kv[1]):
        if lv >= 2:
            reasons.append(describe[key]())
    if not levels:
        return None  # nothing gradable (a vector without NaN/Inf, a matrix whose metrics are unavailable)
    worst = max(levels.values())
    util = spec.get("stable_rank_utilization")
    out = {
        "grade": GRADES[worst],
        "level": worst,
        "levels": levels,
        "reasons": reasons,
        # ordering within a grade: the sum of levels, then the SQNR deficit
        "score": worst * 100 + sum(levels.values()) * 10 + max(0.0, 40.0 - (quant.get("sqnr_db") or 40.0)),
        "compressible": util is not None and util < 0.3,
    }
    if notes:
        out["notes"] = notes
    return out


def model_health(records: dict[str, dict], top: int = 10) -> dict:
    """Counts per grade and the ``top`` riskiest tensors with their reasons."""
    graded = {n: r["health"] for n, r in records.items() if r.get("health")}
    counts = {g: 0 for g in GRADES}
    for h in graded.values():
        counts[h["grade"]] += 1
    riskiest = sorted(graded.items(), key=lambda kv: -kv[1]["score"])[:top]
    return {
        "graded_tensors": len(graded),
        "counts": counts,
        "riskiest": [{"name": n, "grade": h["grade"], "reasons": h["reasons"] or ["no metric beyond the Good range"]} for n, h in riskiest],
        "compressible_tensors": sum(1 for h in graded.values() if h["compressible"]),
    }


ANALYSIS = Analysis(
    name="health",
    kind="tensor",
    help="a grade per tensor from condition number, INT8 SQNR and extreme outliers",
    selectable=False,
    histogram=False,
    compute=lambda ctx, options: grade_tensor(ctx.record, ctx.acc.summary()["nan"], ctx.acc.summary()["inf"]),
)

MODEL_ANALYSIS = Analysis(
    name="model_health",
    key="health",
    kind="model",
    help="grade counts and the ten riskiest tensors",
    selectable=False,
    compute=lambda ctx, options: model_health(ctx.records),
)
