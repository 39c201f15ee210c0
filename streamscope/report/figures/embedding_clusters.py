"""``embedding_elbow.png`` (inertia over k with the chosen k marked, silhouette beside it) and
``embedding_clusters.png`` (a seeded sample of rows on the two leading principal axes, coloured by cluster),
from ``streamscope embeddings``."""

from __future__ import annotations

import numpy as np

from streamscope.plotstyle import figure


def _studies(results):
    return list(((results.embeddings or {}).get("clusters") or {}).items())


def elbow(results):
    studies = _studies(results)
    if not studies:
        return None
    fig = figure(12, 3.8 * len(studies))
    for i, (name, c) in enumerate(studies):
        ks = [e["k"] for e in c["elbow"]]
        ax = fig.add_subplot(len(studies), 2, 2 * i + 1)
        ax.plot(ks, [e["inertia"] for e in c["elbow"]], marker="o", ms=3)
        chosen = next(e for e in c["elbow"] if e["k"] == c["k"])
        ax.plot([c["k"]], [chosen["inertia"]], marker="o", ms=10, mfc="none", mec="#d62728", mew=2, label=f"chosen k = {c['k']}")
        ax.set_xlabel("k")
        ax.set_ylabel(f"inertia ({c['metric']})")
        ax.set_title(f"{name}: elbow", fontsize=10)
        ax.legend(fontsize=8)
        ax = fig.add_subplot(len(studies), 2, 2 * i + 2)
        sil = [np.nan if e["silhouette"] is None else e["silhouette"] for e in c["elbow"]]
        ax.bar(ks, sil, color=["#d62728" if k == c["k"] else "#1f77b4" for k in ks])
        ax.set_xlabel("k")
        ax.set_ylabel("silhouette (sample)")
        ax.set_title(f"{name}: silhouette", fontsize=10)
    return fig


def projection(results):
    studies = _studies(results)
    panels = [(n, c, results.embedding_array(n, "projection"), results.embedding_array(n, "projection_labels")) for n, c in studies]
    panels = [p for p in panels if p[2] is not None and p[3] is not None]
    if not panels:
        return None
    fig = figure(7 * min(2, len(panels)), 6 * -(-len(panels) // 2))
    for i, (name, c, xy, labels) in enumerate(panels):
        ax = fig.add_subplot(-(-len(panels) // 2), min(2, len(panels)), i + 1)
        cmap = "tab20" if c["k"] <= 20 else "turbo"
        ax.scatter(xy[:, 0], xy[:, 1], c=labels, s=2 if len(labels) > 5000 else 8, cmap=cmap, alpha=0.6, linewidths=0, rasterized=True)
        ax.set_xlabel("principal axis 1")
        ax.set_ylabel("principal axis 2")
        ax.set_title(f"{name}: {len(labels)} sampled rows, k = {c['k']}", fontsize=10)
    return fig
