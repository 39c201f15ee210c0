"""``layer_trends.png``: per-layer trend lines by block type (std, L2 norm, condition number, stable rank, INT8
SQNR, alpha against layer index): where along the depth a model changes, one line per projection type."""

from __future__ import annotations

import math
from collections import defaultdict

from streamscope.plotstyle import empty, figure, log10_kappa, type_color

PANELS = (("basic_stats", "std", "std", False), ("basic_stats", "l2_norm", "L2 norm", False),
          ("spectral", "condition_number", "log10 condition number", True), ("spectral", "stable_rank", "stable rank", False),
          ("quantization", "sqnr_db", "INT8 SQNR (dB)", False), ("spectral", "alpha", "power-law alpha", False))  # fmt: skip


def series(results, section: str, key: str, log: bool = False) -> dict[str, dict[int, float]]:
    """``{block type: {layer: mean value}}`` over the matrices of the layer stack."""
    acc: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for n, v in results.field(section, key, results.matrices).items():
        info = results.tensors[n]["info"]
        if info.get("layer_index") is None or info.get("tower") == "vision" or not math.isfinite(v) and not log:
            continue
        acc[info["block_type"]][info["layer_index"]].append(log10_kappa(v) if log else v)
    return {t: {l: sum(vs) / len(vs) for l, vs in sorted(d.items())} for t, d in acc.items()}


def draw(results):
    panels = [(title, series(results, s, k, log)) for s, k, title, log in PANELS]
    panels = [(t, d) for t, d in panels if d]
    if not panels:
        return empty("Layer trends", "no per-layer matrices in these results")
    cols = 3
    rows = -(-len(panels) // cols)
    fig = figure(15, 3.6 * rows + 0.6)
    for i, (title, data) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        for t, points in sorted(data.items()):
            ax.plot(list(points), list(points.values()), marker=".", ms=4, lw=1.2, color=type_color(t), label=t)
        if title.startswith("power-law"):
            ax.axhspan(2, 6, color="#2ca02c", alpha=0.08)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("layer", fontsize=8)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(8, len(labels)), fontsize=8)
    fig.suptitle("Per-layer trends by block type (mean over experts where there are several)")
    return fig
