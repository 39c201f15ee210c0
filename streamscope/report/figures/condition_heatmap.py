"""``condition_heatmap.png``: log10 of each matrix's condition number, coloured by WeightScope's bands.

Up to 80 matrices: one horizontal bar each, labelled ``L9.attn.q_proj``. More (a 72B model has 560+): a grid of
layer index x block type, each cell the band of that matrix's condition number, so every layer stays visible.
"""

from __future__ import annotations

import math

import numpy as np

from streamscope.report.figures.style import BAND_COLORS, BAND_EDGES, band, empty, figure, log10_kappa
from streamscope.report.labels import short_label, tick_step

BARS_UP_TO = 80


def draw(results):
    kappa = results.field("spectral", "condition_number", results.matrices)
    if not kappa:
        return empty("Condition number", "no condition numbers: scan with --analyses spectral (exact or gram method)")
    names = list(kappa)
    if len(names) <= BARS_UP_TO:
        return _bars(results, names, kappa)
    return _grid(results, names, kappa)


def _legend(ax, outside: bool = False) -> None:
    from matplotlib.patches import Patch

    labels = ("κ < 1e3", "1e3 – 1e4", "1e4 – 1e5", "κ > 1e5")
    handles = [Patch(color=c, label=l) for c, l in zip(BAND_COLORS, labels)]
    if outside:  # beside the grid, never over a cell
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    else:
        ax.legend(handles=handles, loc="lower right", fontsize=8)


def _bars(results, names, kappa):
    values = [log10_kappa(kappa[n]) for n in names]
    fig = figure(10, max(3.0, 0.22 * len(names) + 1.2))
    ax = fig.add_subplot()
    y = np.arange(len(names))
    ax.barh(y, values, color=[BAND_COLORS[band(v)] for v in values])
    ax.set_yticks(y, [short_label(n, results.tensors[n]["info"].get("tower")) for n in names], fontsize=8)
    ax.invert_yaxis()
    for e in BAND_EDGES:
        ax.axvline(e, color="#999999", lw=0.6, ls="--")
    ax.set_xlabel("log10(condition number κ)")
    ax.set_title("Condition number per matrix (red first: the numerically fragile layers)")
    _legend(ax)
    return fig


def _grid(results, names, kappa):
    from matplotlib.colors import BoundaryNorm, ListedColormap

    layers = sorted({results.tensors[n]["info"]["layer_index"] for n in names if results.tensors[n]["info"].get("layer_index") is not None})
    types = sorted({results.tensors[n]["info"]["block_type"] for n in names})
    grid = np.full((len(layers), len(types)), np.nan)
    row = {l: i for i, l in enumerate(layers)}
    col = {t: j for j, t in enumerate(types)}
    for n in names:
        info = results.tensors[n]["info"]
        if info.get("layer_index") in row:
            i, j = row[info["layer_index"]], col[info["block_type"]]
            v = log10_kappa(kappa[n])
            grid[i, j] = v if math.isnan(grid[i, j]) else max(grid[i, j], v)  # experts: the worst of them
    fig = figure(max(6.0, 0.9 * len(types) + 3), max(4.0, 0.12 * len(layers) + 2))
    ax = fig.add_subplot()
    cmap = ListedColormap(BAND_COLORS).with_extremes(bad="#eeeeee")  # grey: no such matrix in that layer
    ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap=cmap, norm=BoundaryNorm([-1, *BAND_EDGES, 99], cmap.N), interpolation="nearest")
    ax.set_xticks(range(len(types)), types, rotation=45, ha="right", fontsize=8)
    step = tick_step(len(layers), 50)
    ax.set_yticks(range(0, len(layers), step), [str(l) for l in layers[::step]], fontsize=8)
    ax.set_ylabel("layer")
    ax.set_title(f"Condition number band per layer and block type ({len(names)} matrices; the worst where a cell has several)")
    _legend(ax, outside=True)
    return fig
