"""``condition_heatmap.png``: log10 of each matrix's condition number, coloured by WeightScope's bands.

Up to 80 matrices: one horizontal bar each, labelled ``L9.attn.q_proj``. More (a 72B model has 560+): a grid of
layer index x block type, each cell the band of that matrix's condition number, so every layer stays visible.
A condition number whose sigma_min lies below the stored dtype's rounding noise is a lower bound, not a
measurement (``condition_number_resolved`` false): its bar is hatched, its grid cell crossed.
"""

from __future__ import annotations

import math

import numpy as np

from streamscope.plotstyle import BAND_COLORS, BAND_EDGES, band, empty, figure, log10_kappa
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


def _unresolved(results, names) -> set[str]:
    return {n for n in names if (results.tensors[n].get("spectral") or {}).get("condition_number_resolved") is False}


def _legend(ax, outside: bool = False, unresolved: bool = False) -> None:
    from matplotlib.patches import Patch

    labels = ("κ < 1e3", "1e3 – 1e4", "1e4 – 1e5", "κ > 1e5")
    handles = [Patch(color=c, label=l) for c, l in zip(BAND_COLORS, labels)]
    if unresolved:
        handles.append(Patch(facecolor="white", edgecolor="#333333", hatch="///" if not outside else None,
                             label="κ ≥ shown: σ_min below the dtype's rounding noise" + (" (×)" if outside else "")))  # fmt: skip
    if outside:  # beside the grid, never over a cell
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    else:
        ax.legend(handles=handles, loc="lower right", fontsize=8)


def _bars(results, names, kappa):
    values = [log10_kappa(kappa[n]) for n in names]
    fig = figure(10, max(3.0, 0.22 * len(names) + 1.2))
    ax = fig.add_subplot()
    y = np.arange(len(names))
    bars = ax.barh(y, values, color=[BAND_COLORS[band(v)] for v in values])
    unresolved = _unresolved(results, names)
    for bar, n in zip(bars, names):
        if n in unresolved:
            bar.set_hatch("///")
            bar.set_edgecolor("#333333")
    ax.set_yticks(y, [short_label(n, results.tensors[n]["info"].get("tower")) for n in names], fontsize=8)
    ax.invert_yaxis()
    for e in BAND_EDGES:
        ax.axvline(e, color="#999999", lw=0.6, ls="--")
    ax.set_xlabel("log10(condition number κ)")
    ax.set_title("Condition number per matrix (red first: the numerically fragile layers)")
    _legend(ax, unresolved=bool(unresolved))
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
    unresolved = _unresolved(results, names)
    crossed = {(row[results.tensors[n]["info"]["layer_index"]], col[results.tensors[n]["info"]["block_type"]])
               for n in unresolved if results.tensors[n]["info"].get("layer_index") in row}  # fmt: skip
    if crossed:
        ax.scatter([j for _, j in crossed], [i for i, _ in crossed], marker="x", s=12, color="#333333", linewidths=0.8)
    ax.set_title(f"Condition number band per layer and block type ({len(names)} matrices; the worst where a cell has several)")
    _legend(ax, outside=True, unresolved=bool(crossed))
    return fig
