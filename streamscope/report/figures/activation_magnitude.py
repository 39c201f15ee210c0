"""``magnitude_input.png``, ``magnitude_output.png``, ``magnitude_weight.png``: the seed's magnitude plots.

One panel per kind of module (the module name with its layer index taken out, e.g. ``mlp.down_proj``): by
layer, top-1, top-2, top-3, median and min of |x|, on a log scale.
"""

from __future__ import annotations

import re
from collections import defaultdict

from matplotlib.ticker import MaxNLocator

from streamscope.plotstyle import figure

SERIES = (("top1", "top-1", "#d62728"), ("top2", "top-2", "#ff7f0e"), ("top3", "top-3", "#bcbd22"), ("median", "median", "#1f77b4"),
          ("min", "min", "#7f7f7f"))  # fmt: skip
_LAYER = re.compile(r"^(.*?)\.(\d+)(?:\.(.*))?$")


def by_kind(records: dict[str, dict]) -> dict[str, list[tuple[int, dict]]]:
    """``{kind: [(layer index, record), ...]}`` with the kind the name around its last layer index."""
    groups: dict[str, list[tuple[int, dict]]] = defaultdict(list)
    for name, rec in records.items():
        m = _LAYER.match(name)
        if m and m.group(2):
            kind = m.group(3) or "decoder layer"
            groups[kind].append((int(m.group(2)), rec))
        else:
            groups[name].append((-1, rec))
    return {k: sorted(v, key=lambda e: e[0]) for k, v in sorted(groups.items())}


def _draw(results, direction: str, key: str):
    act = results.activations
    if not act or not (act.get("config", {}).get("visualization", {}).get("enabled", {}).get(key, True)):
        return None
    if direction == "weight":
        records = act.get("weights") or {}
    else:
        records = {n: d[direction] for n, d in act.get("modules", {}).items() if direction in d}
    groups = by_kind(records)
    if not groups:
        return None
    n = len(groups)
    cols = min(2, n)
    rows = -(-n // cols)
    fig = figure(6.5 * cols, 3.6 * rows)
    for i, (kind, entries) in enumerate(groups.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        xs = [e[0] for e in entries]
        for field, label, color in SERIES:
            ys = [e[1].get(field) for e in entries]
            if any(isinstance(y, (int, float)) and y > 0 for y in ys):
                ax.plot(xs, [y if isinstance(y, (int, float)) and y > 0 else float("nan") for y in ys], marker="o", ms=3, lw=1.2,
                        label=label, color=color)  # fmt: skip
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(kind, fontsize=10)
        ax.set_xlabel("layer")
        ax.set_ylabel(f"|{'w' if direction == 'weight' else 'x'}|")
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=8)
    fig.suptitle(f"Magnitude of {direction}s by layer (top-1/2/3, median, min)")
    return fig


def draw_input(results):
    return _draw(results, "input", "magnitude_input")


def draw_output(results):
    return _draw(results, "output", "magnitude_output")


def draw_weight(results):
    return _draw(results, "weight", "magnitude_weight")
