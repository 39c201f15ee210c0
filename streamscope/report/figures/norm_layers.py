"""``norm_layers.png``: every norm layer's weight mean with its min-max range, by layer, per norm kind; the
embedding-related norms (first layer input, post-embedding, final) marked."""

from __future__ import annotations

from collections import defaultdict

from streamscope.report.figures.style import empty, figure


def draw(results):
    layers = (results.model.get("norm_layers") or {}).get("layers") or []
    weights = [e for e in layers if e.get("param") != "bias"]
    if not weights:
        return empty("Norm layers", "no norm layers in these results")
    groups: dict[str, list[dict]] = defaultdict(list)
    for e in weights:
        leaf = e["name"].rsplit(".", 2)[-2] if "." in e["name"] else e["name"]
        groups[leaf].append(e)
    fig = figure(12, 5)
    ax = fig.add_subplot()
    colors = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
    for (leaf, entries), color in zip(sorted(groups.items()), colors * 4):
        xs = [e["layer_index"] if e["layer_index"] is not None else -1 for e in entries]
        ax.errorbar(xs, [e["mean"] for e in entries], yerr=[[e["mean"] - e["min"] for e in entries], [e["max"] - e["mean"] for e in entries]],
                    fmt="o", ms=3, lw=0.8, capsize=2, color=color, label=leaf)  # fmt: skip
    related = [e for e in weights if e.get("embedding_related")]
    ax.scatter([e["layer_index"] if e["layer_index"] is not None else -1 for e in related], [e["mean"] for e in related],
               s=80, facecolors="none", edgecolors="#d62728", label="embedding-related")  # fmt: skip
    ax.set_xlabel("layer (-1: outside the layer stack)")
    ax.set_ylabel("weight mean (bars: min to max)")
    ax.set_title("Norm-layer parameters")
    ax.legend(fontsize=8, ncol=3)
    return fig
