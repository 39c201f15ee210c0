"""The value histogram of every tensor, for figures: ``histogram_bins`` equal bins between min and max.

Rebinned from the pass's bit-pattern counts (``kernels.patterns``), so it costs no extra read. The pass keeps
those counts when some other analysis reads them (``Analysis.histogram``): a bfloat16 scan of ``spectral``
alone skips them, and has no value histograms.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamscope.analyses.registry import Analysis
from streamscope.errors import OptionError
from streamscope.optionspec import opt


@dataclass(frozen=True)
class HistogramOptions:
    histogram_bins: int = opt(256, "Bins of the value and |value| histograms.", metavar="N", advanced=True)

    def __post_init__(self) -> None:
        if not 2 <= int(self.histogram_bins) <= 65536:
            raise OptionError(f"--histogram-bins must be between 2 and 65536; got {self.histogram_bins}")


def histogram(ctx, options: HistogramOptions) -> None:
    """Adds ``histogram_counts`` and ``histogram_edges`` to the tensor's arrays; writes no record field.

    Nothing when the pass kept no histogram: a scan whose other analyses read none (``spectral`` alone, on
    bfloat16 weights) skips it, and its report has no value histograms.
    """
    from streamscope.kernels import patterns

    acc = ctx.acc
    if acc.light:
        return None
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
    histogram=False,  # drawn from the histogram when the pass kept one (see ``histogram``); never asks for it
    writes=("histogram_counts", "histogram_edges"),
    compute=histogram,
)
