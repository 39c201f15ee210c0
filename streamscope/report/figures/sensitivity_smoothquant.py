"""``sensitivity_smoothquant.png``: W8A8 SQNR of each smoothed Linear against SmoothQuant's alpha, beside the
gain over no smoothing; a thin line per Linear (per Linear type where there are many), the median bold, no
smoothing dashed: which alpha helps, and how much."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from streamscope.report.activation_table import module_label
from streamscope.plotstyle import figure
from streamscope.report.sensitivity_data import alpha_curves, of, place

MOST_LINES = 40  # past this many Linears, one line per Linear type (the median of its Linears)


def _median(rows: list[list[float | None]]) -> list[float]:
    a = np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=float)
    return [float(np.nanmedian(c)) if np.isfinite(c).any() else float("nan") for c in a.T]


def _lines(curves: dict) -> dict[str, tuple[str, float | None, list]]:
    """``{label: (Linear type, unsmoothed, curve)}``: a line per Linear, or the median per Linear type where there
    are many."""
    if len(curves) <= MOST_LINES:
        return {module_label(m): (place(m)[1], *c) for m, c in curves.items()}
    groups = defaultdict(list)
    for m, (none, values) in curves.items():
        groups[place(m)[1]].append([none, *values])
    return {f"{t} ({len(rows)})": (t, _median(rows)[0], _median(rows)[1:]) for t, rows in groups.items()}


def draw(results):
    record = of(results)
    alphas, curves = alpha_curves(record) if record else ([], {})
    if not alphas or not curves:
        return None
    lines = _lines(curves)
    fig = figure(13, 5.2)
    absolute, gain = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    colors = {t: f"C{i % 10}" for i, t in enumerate(dict.fromkeys(place(m)[1] for m in curves))}
    by_type = len(curves) > MOST_LINES
    for label, (kind, none, values) in lines.items():
        color = colors[kind]
        y = np.array([np.nan if v is None else v for v in values], dtype=float)
        kw = dict(color=color, lw=1.4 if by_type else 0.8, alpha=0.9 if by_type else 0.5)
        absolute.plot(alphas, y, label=label if by_type else None, **kw)
        if none is not None and np.isfinite(none):
            gain.plot(alphas, y - none, **kw)
    rows = [[none, *values] for none, values in curves.values()]
    med = _median(rows)
    absolute.plot(alphas, med[1:], color="black", lw=2.6, label=f"median of {len(curves)} Linears")
    if np.isfinite(med[0]):
        absolute.axhline(med[0], color="black", ls="--", lw=1.2, label="median without smoothing")
    gains = _median([[v - n if n is not None and v is not None else None for v in vals] for n, vals in curves.values()])
    gain.plot(alphas, gains, color="black", lw=2.6)
    gain.axhline(0, color="black", ls="--", lw=1.2)
    absolute.set(xlabel="SmoothQuant alpha", ylabel="W8A8 output SQNR (dB)", title="W8A8 SQNR per alpha")
    gain.set(xlabel="SmoothQuant alpha", ylabel="gain over no smoothing (dB)", title="Gain over no smoothing (dashed: none)")
    if not by_type:
        for t, c in colors.items():
            absolute.plot([], [], color=c, lw=1.5, label=t)
    absolute.legend(fontsize=7, ncol=2)
    grouped = " (median per Linear type)" if by_type else ""
    fig.suptitle(f"SmoothQuant: W8A8 error of each smoothed Linear against alpha{grouped}")
    return fig
