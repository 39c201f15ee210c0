"""The value histogram of every tensor, for figures: ``histogram_bins`` equal bins between min and max.

Rebinned from the pass's bit-pattern counts (``kernels.patterns``), so it costs no extra read.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamscope.analyses.registry import Analysis
from streamscope.errors import OptionError


@dataclass(frozen=True)
class HistogramOptions:
    histogram_bins: int = 256

    def __post_init__(self) -> None:
        if not 2 <= int(self.histogram_bins) <= 65536:
            raise OptionError(f"histogram_bins must be between 2 and 65536; got {self.histogram_bins}")


def histogram(ctx, options: HistogramOptions) -> None:
    """Adds ``histogram_counts`` and ``histogram_edges`` to the tensor's arrays; writes no record field."""
    from streamscope.kernels import patterns

    acc = ctx.acc
    s = acc.summary()
    if s["n"]:
        counts, edges = patterns.rebin(acc.kind, acc.hist, options.histogram_bins, s["min"], s["max"])
        ctx.arrays["histogram_counts"], ctx.arrays["histogram_edges"] = counts, edges
    return None


ANALYSIS = Analysis(
    name="histogram",
    kind="tensor",
    help="value histogram for figures",
    options=HistogramOptions,
    selectable=False,
    writes=("histogram_counts", "histogram_edges"),
    compute=histogram,
)
