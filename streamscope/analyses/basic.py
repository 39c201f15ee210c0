"""Basic statistics of one tensor, with the field names of the WeightScope report."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from streamscope.analyses.registry import Analysis

if TYPE_CHECKING:
    from streamscope.kernels.blockstats import TensorAccumulator


def basic_stats(acc: TensorAccumulator) -> dict:
    """``mean, std, var, min, max, abs_max, l2_norm, zeros_percentage, numel, nan_count, inf_count``.

    Moments are over the finite values; ``std`` and ``var`` use Bessel's correction (ddof=1), as ``torch.std``
    does. ``zeros_percentage`` is in percent of all elements.
    """
    s = acc.summary()
    n = s["n"]
    return {
        "mean": s["mean"],
        "std": math.sqrt(s["var"]) if s["var"] == s["var"] else float("nan"),
        "var": s["var"],
        "min": s["min"],
        "max": s["max"],
        "abs_max": max(abs(s["min"]), abs(s["max"])) if s["finite"] else float("nan"),
        "l2_norm": math.sqrt(s["sumsq"]),
        "zeros_percentage": 100.0 * s["zeros"] / n if n else 0.0,
        "numel": n,
        "nan_count": s["nan"],
        "inf_count": s["inf"],
    }


ANALYSIS = Analysis(
    name="basic_stats",
    kind="tensor",
    aliases=("basic",),
    help="mean, std, extremes, L2 norm, zeros, NaN/Inf counts (exact for 16- and 8-bit dtypes)",
    default=True,
    compute=lambda ctx, options: basic_stats(ctx.acc),
)
