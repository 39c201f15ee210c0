"""Sparsity of one tensor: near-zero fractions, dead rows and columns, magnitude percentiles."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamscope.analyses.registry import Analysis

if TYPE_CHECKING:
    from streamscope.kernels.blockstats import TensorAccumulator

PERCENTILES = (10, 25, 50, 75, 90)


def sparsity(acc: TensorAccumulator) -> dict:
    """The WeightScope sparsity fields.

    ``sparsity_levels["threshold_t"]`` is the percentage of elements with ``|w| < t`` (``w == 0`` for t = 0).
    ``structured_sparsity`` (tensors with two or more dims, seen as rows x the rest) counts rows and columns
    whose every ``|w|`` is below ``DEAD_THRESHOLD``. ``magnitude_percentiles`` are percentiles of ``|w|``
    (numpy's linear method); ``percentiles_exact`` says whether they are exact (see ``patterns``).
    """
    from streamscope.kernels.blockstats import DEAD_THRESHOLD, SPARSITY_THRESHOLDS

    s = acc.summary()
    n = s["n"]
    pct = lambda k: 100.0 * k / n if n else 0.0  # noqa: E731
    q, exact = acc.quantiles([p / 100 for p in (*PERCENTILES,)], absolute=True)
    out = {
        "sparsity_levels": {f"threshold_{_fmt(t)}": pct(acc.abs_below(t)) for t in SPARSITY_THRESHOLDS},
        "magnitude_percentiles": {f"p{p}": float(v) for p, v in zip(PERCENTILES, q)},
        "mean_abs_weight": s["sum_abs"] / s["finite"] if s["finite"] else float("nan"),
        "median_abs_weight": float(q[PERCENTILES.index(50)]),
        "percentiles_exact": exact,
    }
    if acc.row_stats:
        dead_rows = int((acc.row_absmax < DEAD_THRESHOLD).sum())
        dead_cols = int((acc.col_absmax < DEAD_THRESHOLD).sum())
        rows, cols = acc.info.rows, acc.info.cols
        out["structured_sparsity"] = {
            "dead_rows": dead_rows,
            "dead_rows_percentage": 100.0 * dead_rows / rows if rows else 0.0,
            "dead_columns": dead_cols,
            "dead_columns_percentage": 100.0 * dead_cols / cols if cols else 0.0,
        }
    return out


def _fmt(t: float) -> str:
    return "0.0" if t == 0 else f"{t:.0e}".replace("e-0", "e-")


ANALYSIS = Analysis(
    name="sparsity",
    kind="tensor",
    help="near-zero fractions, dead rows and columns, |w| percentiles",
    default=True,
    row_maxima=True,
    compute=lambda ctx, options: sparsity(ctx.acc),
)
