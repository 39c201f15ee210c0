"""``health_dashboard.png``: distributions of condition number, outliers, rank use, SQNR and sparsity; the
grade pie; the ten riskiest tensors. Read the top-10 first, then whether problems are few or systemic."""

from __future__ import annotations

import numpy as np

from streamscope.plotstyle import GRADE_COLORS, empty, figure, log10_kappa
from streamscope.report.labels import short_label


def _hist(ax, values, title, xlabel, color, line=None):
    values = [v for v in values if np.isfinite(v)]
    if values:
        ax.hist(values, bins=min(40, max(5, len(values) // 3)), color=color, alpha=0.85)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    if line is not None:
        ax.axvline(line, color="#d62728", ls="--", lw=1)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=8)


def draw(results):
    m = results.matrices
    health = results.model.get("health") or {}
    if not health.get("graded_tensors"):
        return empty("Model health", "no health grades: scan with --analyses quantization and/or spectral")
    fig = figure(16, 8.5)
    top, bottom = fig.subfigures(2, 1)  # each row lays out on its own: long labels below do not shift the top row
    axes = top.subplots(1, 4)
    kappa = results.field("spectral", "condition_number", m)
    _hist(axes[0], [log10_kappa(v) for v in kappa.values()], "Condition number (stability)", "log10 κ", "#1f77b4", 5)
    _hist(axes[1], results.field("quantization", "extreme_outlier_percentage", m).values(), "Extreme outliers (quantization risk)", "% beyond 3 IQR", "#e67e22", 1)
    _hist(axes[2], [100 * v for v in results.field("spectral", "stable_rank_utilization", m).values()], "Rank utilisation (compression room)", "stable / total rank %", "#9467bd", 30)
    _hist(axes[3], [min(v, 80) for v in results.field("quantization", "sqnr_db", m).values()], "INT8 SQNR (quantization quality)", "dB", "#2ca02c", 40)
    grid = bottom.add_gridspec(1, 4)
    sparsity = [((results.tensors[n].get("sparsity") or {}).get("sparsity_levels") or {}).get("threshold_1e-4") for n in m]
    _hist(bottom.add_subplot(grid[0, 0]), [v for v in sparsity if v is not None], "Near-zero weights (pruning room)", "% with |w| < 1e-4", "#8c564b")
    pie = bottom.add_subplot(grid[0, 1])
    counts = {g: c for g, c in health["counts"].items() if c}
    pie.pie(list(counts.values()), labels=[f"{g}: {c}" for g, c in counts.items()], colors=[GRADE_COLORS[g] for g in counts], textprops={"fontsize": 8})
    pie.set_title("Health grades", fontsize=10)
    ax = bottom.add_subplot(grid[0, 2:])
    risky = sorted(((n, r["health"]) for n, r in results.tensors.items() if r.get("health")), key=lambda kv: -kv[1]["score"])[:10]
    y = np.arange(len(risky))
    ax.barh(y, [h["score"] for _, h in risky], color=[GRADE_COLORS[h["grade"]] for _, h in risky])
    ax.set_yticks(y, [short_label(n) for n, _ in risky], fontsize=8)
    ax.invert_yaxis()
    for i, (_, h) in enumerate(risky):
        ax.text(0, i, "  " + "; ".join(h["reasons"])[:70], va="center", fontsize=7)
    ax.set_xlabel("risk score (grade, then sum of levels, then SQNR deficit)", fontsize=8)
    ax.set_title("Ten riskiest tensors", fontsize=10)
    return fig
