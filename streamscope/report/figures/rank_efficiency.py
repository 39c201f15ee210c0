"""``rank_efficiency.png``: stable rank / total rank per matrix (bars), total vs stable rank (scatter), and the
share of matrices by compression opportunity (pie). Below 30 % there is room for low-rank methods; the stable
rank is a data-backed starting point for a LoRA rank."""

from __future__ import annotations

import numpy as np

from streamscope.plotstyle import empty, figure, type_color
from streamscope.report.labels import short_label, tick_step

#: (upper bound of utilisation %, label, colour); WeightScope's high / medium / low opportunity / already efficient.
OPPORTUNITY = ((10, "high (< 10 %)", "#d62728"), (30, "medium (10–30 %)", "#e67e22"), (60, "low (30–60 %)", "#f1c40f"),
               (101, "efficient (≥ 60 %)", "#2ca02c"))  # fmt: skip


def draw(results):
    stable = results.field("spectral", "stable_rank", results.matrices)
    total = results.field("spectral", "total_rank", results.matrices)
    names = [n for n in stable if total.get(n)]
    if not names:
        return empty("Rank efficiency", "no spectra: scan with --analyses spectral")
    util = {n: 100 * stable[n] / total[n] for n in names}
    fig = figure(12, 8)
    grid = fig.add_gridspec(2, 2, height_ratios=(1.1, 1))
    ax = fig.add_subplot(grid[0, :])
    x = np.arange(len(names))
    ax.bar(x, [util[n] for n in names], color=[type_color(results.tensors[n]["info"]["block_type"]) for n in names], width=0.9)
    ax.axhline(30, color="#d62728", ls="--", lw=1, label="30 %: compression opportunity")
    step = tick_step(len(names), 50)
    ax.set_xticks(x[::step], [short_label(n) for n in names[::step]], rotation=90, fontsize=7)
    ax.set_ylabel("stable rank / total rank (%)")
    ax.set_title("Rank utilisation per matrix (disk order; colour = block type)")
    ax.legend(fontsize=8)
    sc = fig.add_subplot(grid[1, 0])
    sc.scatter([total[n] for n in names], [stable[n] for n in names], s=14,
               c=[type_color(results.tensors[n]["info"]["block_type"]) for n in names])  # fmt: skip
    top = max(total[n] for n in names)
    sc.plot([1, top], [1, top], color="#999999", lw=0.8, ls=":", label="stable rank = total rank")  # from 1: log axis
    sc.set_xlabel("total rank (min side)")
    sc.set_ylabel("stable rank")
    sc.set_yscale("log")
    sc.set_title("Total vs stable rank")
    sc.legend(fontsize=8)
    pie = fig.add_subplot(grid[1, 1])
    counts, labels, colors = [], [], []
    lo = 0
    for hi, label, color in OPPORTUNITY:
        k = sum(lo <= util[n] < hi for n in names)
        lo = hi
        if k:
            counts.append(k)
            labels.append(f"{label}: {k}")
            colors.append(color)
    pie.pie(counts, labels=labels, colors=colors, autopct="%1.0f%%", textprops={"fontsize": 8})
    pie.set_title("Compression opportunity")
    return fig
