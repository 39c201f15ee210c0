"""``alpha_histogram.png``: the power-law exponent alpha of every matrix's eigenvalue tail, WeightWatcher's
2–6 band marked (below 2: over-trained / heavy-tailed; above 6: under-trained, close to random)."""

from __future__ import annotations

import math

from streamscope.plotstyle import empty, figure


def draw(results):
    alpha = [v for v in results.field("spectral", "alpha", results.matrices).values() if math.isfinite(v)]
    if not alpha:
        return empty("Power-law alpha", "no alpha: needs full spectra (spectral method exact or gram)")
    fig = figure(9, 4.5)
    ax = fig.add_subplot()
    ax.axvspan(2, 6, color="#2ca02c", alpha=0.12, label="2 – 6: well trained (WeightWatcher)")
    ax.hist([min(a, 20) for a in alpha], bins=min(50, max(8, len(alpha) // 3)), color="#1f77b4", alpha=0.85)
    inside = sum(2 <= a <= 6 for a in alpha)
    ax.set_xlabel("alpha (values above 20 drawn at 20)")
    ax.set_ylabel("matrices")
    ax.set_title(f"Power-law alpha of {len(alpha)} matrices; {inside} inside 2–6")
    ax.legend(fontsize=8)
    return fig
