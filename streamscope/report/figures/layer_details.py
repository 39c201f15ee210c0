"""``layer_details/<name>_distribution.png`` (value histogram, linear and log counts) and
``layer_details/<name>_singular_values.png`` (top singular values, and the whole spectrum on a log scale), for
the riskiest tensors (``--details N``) or all of them (``--details all``)."""

from __future__ import annotations

import re

import numpy as np

from streamscope.plotstyle import figure


def file_stem(name: str) -> str:
    """A file name for a tensor: dots kept, anything else odd replaced (``model.layers.0.mlp.up_proj.weight``)."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:150]
    return stem.strip(".") or "tensor"


def chosen(results, details: str | int) -> list[str]:
    """The tensors that get detail figures: all, or the N riskiest (by health score, else the largest)."""
    if str(details) == "all":
        return list(results.tensors)
    n = int(details)
    graded = sorted((r["health"]["score"], name) for name, r in results.tensors.items() if r.get("health"))
    names = [name for _, name in sorted(graded, key=lambda t: -t[0])][:n]
    if len(names) < n:
        largest = sorted(results.matrices, key=lambda k: -results.matrices[k]["info"]["numel"])
        names += [k for k in largest if k not in names][: n - len(names)]
    return names


def distribution(results, name: str):
    hist = results.histogram(name)
    if hist is None:
        return None
    counts, edges = hist
    centers = (edges[:-1] + edges[1:]) / 2
    width = np.diff(edges)
    fig = figure(11, 3.8)
    for i, log in enumerate((False, True)):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.bar(centers, counts, width=width, color="#1f77b4", log=log)
        ax.set_xlabel("value")
        ax.set_ylabel("count (log)" if log else "count")
        ax.set_title("log counts: tails and extreme values" if log else "value distribution", fontsize=10)
    fig.suptitle(name, fontsize=10)
    return fig


def singular_values(results, name: str, top: int = 32):
    sv = results.array(name, "singular_values")
    if sv is None or sv.size == 0:
        return None
    fig = figure(11, 3.8)
    ax = fig.add_subplot(1, 2, 1)
    k = min(top, sv.size)
    ax.plot(np.arange(1, k + 1), sv[:k], marker="o", ms=3)
    ax.set_xlabel("index")
    ax.set_ylabel("σ")
    ax.set_title(f"top {k} singular values", fontsize=10)
    ax = fig.add_subplot(1, 2, 2)
    positive = sv[sv > 0]
    ax.semilogy(np.arange(1, positive.size + 1), positive)
    ax.set_xlabel("index")
    ax.set_ylabel("σ (log)")
    method = (results.tensors[name].get("spectral") or {}).get("method", "")
    ax.set_title(f"all {positive.size} computed singular values ({method})", fontsize=10)
    fig.suptitle(name, fontsize=10)
    return fig
