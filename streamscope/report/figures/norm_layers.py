"""``norm_layers.png``: every norm layer's weight mean with its min-max range, by layer, per norm kind; the
embedding-related norms (first layer input, post-embedding, final) marked."""

from __future__ import annotations

from collections import defaultdict

from streamscope.plotstyle import empty, figure
from streamscope.report.labels import short_label


def draw(results):
    layers = (results.model.get("norm_layers") or {}).get("layers") or []
    weights = [e for e in layers if e.get("param") != "bias"]
    if not weights:
        return empty("Norm layers", "no norm layers in these results")
    groups: dict[str, list[dict]] = defaultdict(list)
    for e in weights:  # one series per norm of the layer: input_layernorm, attention.output.LayerNorm, ...
        label = short_label(e["name"])
        groups[label.split(".", 1)[1] if e["layer_index"] is not None and "." in label else label].append(e)
    fig = figure(12, 5)
    ax = fig.add_subplot()
    colors = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
    related = []
    for i, ((leaf, entries), color) in enumerate(zip(sorted(groups.items()), colors * 4)):
        shift = 0.12 * (i - (len(groups) - 1) / 2)  # side by side, not on top of each other
        xs = [(e["layer_index"] if e["layer_index"] is not None else -1) + shift for e in entries]
        ax.errorbar(xs, [e["mean"] for e in entries], yerr=[[e["mean"] - e["min"] for e in entries], [e["max"] - e["mean"] for e in entries]],
                    fmt="o", ms=3, lw=0.8, capsize=2, color=color, label=leaf)  # fmt: skip
        related += [(x, e["mean"]) for x, e in zip(xs, entries) if e.get("embedding_related")]
    if related:
        ax.scatter(*zip(*related), s=80, facecolors="none", edgecolors="#d62728", label="embedding-related")
    ax.set_xlabel("layer (-1: outside the layer stack)")
    ax.set_ylabel("weight mean (bars: min to max)")
    ax.set_title("Norm-layer parameters")
    ax.legend(fontsize=8, ncol=3)
    return fig
