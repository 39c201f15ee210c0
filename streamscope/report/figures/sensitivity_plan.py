"""``sensitivity_plan.png``: the mixed-precision plan on a layer x Linear-type grid; each cell is the output
SQNR that keeping the Linear at the keep scheme gains over the recipe's scheme, the kept Linears framed, the
plan's KL, target and bits per weight in the title."""

from __future__ import annotations

import numpy as np

from streamscope.plotstyle import figure
from streamscope.report.labels import tick_step
from streamscope.report.sensitivity_data import finite, of, place, plan_gains

ANNOTATED = 160  # cells up to which each gets its number written in


def _title(plan: dict) -> str:
    kl = f"{plan['kl']:.3g}" if finite(plan.get("kl")) else "n/a"
    bpw = f"{plan['bits_per_weight']:.2f}" if finite(plan.get("bits_per_weight")) else "n/a"
    return (f"Plan: {len(plan['keep'])} Linears kept at {plan['keep_scheme']}, the rest at {plan['recipe']}\n"
            f"KL {kl} (target {plan['target_kl']:g}), {bpw} bits per weight")  # fmt: skip


def draw(results):
    record = of(results)
    plan = (record or {}).get("plan") or {}
    gains = plan_gains(record) if plan.get("keep") is not None else {}
    if not gains:
        return None
    where = {m: place(m) for m in gains}
    layers = sorted({l for l, _ in where.values() if l is not None})
    kinds = list(dict.fromkeys(t for _, t in where.values()))
    grid = np.full((len(kinds), len(layers)), np.nan)
    for m, (l, t) in where.items():
        if l is not None:
            grid[kinds.index(t), layers.index(l)] = gains[m]
    fig = figure(max(8, min(22, 2.5 + 0.3 * len(layers))), 2.0 + 0.45 * len(kinds))
    ax = fig.add_subplot()
    image = ax.imshow(grid, aspect="auto", cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=ax, label=f"SQNR gain, {plan['keep_scheme']} over the recipe (dB)")
    for m in plan["keep"]:
        l, t = where.get(m, (None, None))
        if l is not None:
            ax.add_patch(_frame(layers.index(l), kinds.index(t)))
    if grid.size <= ANNOTATED:
        for (r, c), v in np.ndenumerate(grid):
            if np.isfinite(v):  # dark text on the light (high) end of viridis
                color = "black" if image.norm(v) > 0.6 else "white"
                ax.text(c, r, f"{v:.1f}", ha="center", va="center", fontsize=7, color=color)
    step = tick_step(len(layers))
    ax.set_xticks(range(0, len(layers), step), [str(l) for l in layers[::step]], fontsize=8)
    ax.set_yticks(range(len(kinds)), kinds, fontsize=8)
    ax.set_xlabel("decoder layer (red frame: kept)")
    ax.set_title(_title(plan), fontsize=10)
    return fig


def _frame(col: int, row: int):
    from matplotlib.patches import Rectangle

    return Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="#d62728", lw=2)
