"""``quantization_risk.png``: extreme-outlier % against INT8 SQNR per matrix, with WeightScope's lines.

Lines at 40 dB (relatively safe) and 1 % outliers (needs a strategy); the red region below 30 dB is high risk.
Bottom right (many outliers, low SQNR): naive INT8 is a bad idea; top left: INT8 friendly.
"""

from __future__ import annotations

from streamscope.plotstyle import empty, figure, type_color
from streamscope.report.labels import short_label


def draw(results):
    sqnr = results.field("quantization", "sqnr_db", results.matrices)
    outl = results.field("quantization", "extreme_outlier_percentage", results.matrices)
    names = [n for n in sqnr if n in outl]
    if not names:
        return empty("Quantization risk", "no quantization results: scan with --analyses quantization")
    fig = figure(10, 6.5)
    ax = fig.add_subplot()
    types = sorted({results.tensors[n]["info"]["block_type"] for n in names})
    for t in types:
        sel = [n for n in names if results.tensors[n]["info"]["block_type"] == t]
        ax.scatter([outl[n] for n in sel], [min(sqnr[n], 80.0) for n in sel], s=18, color=type_color(t), label=t, alpha=0.8)
    lo = min(min(sqnr[n] for n in names), 25.0) - 3
    ax.axhspan(lo, 30, color="#d62728", alpha=0.08, label="SQNR < 30 dB: high risk")
    ax.axhline(40, color="#2ca02c", ls="--", lw=1, label="40 dB: relatively safe")
    ax.axvline(1.0, color="#e67e22", ls="--", lw=1, label="1 % outliers: needs a strategy")
    ax.set_ylim(bottom=lo)
    worst = sorted(names, key=lambda n: sqnr[n])[:5]
    for n in worst:
        ax.annotate(short_label(n), (outl[n], min(sqnr[n], 80.0)), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("extreme outliers (beyond 3 IQR), % of values")
    ax.set_ylabel("INT8 per-tensor SQNR (dB)")
    ax.set_title("Quantization risk: bottom right needs per-channel, group or mixed precision")
    ax.legend(fontsize=7, loc="upper right", ncol=2)
    return fig
