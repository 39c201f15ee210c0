"""``embedding_norms.png``: the per-token L2-norm histogram of each embedding matrix, its extreme tokens named."""

from __future__ import annotations

import numpy as np

from streamscope.plotstyle import empty, figure

MAX_PANELS = 4


def _token(row: dict) -> str:
    t = row.get("token")
    return repr(t)[1:-1][:14] if t is not None else f"#{row['id']}"


def draw(results):
    emb = {n: e for n, e in (results.model.get("embedding") or {}).items() if e.get("vocab_size", 0) >= 16}  # not token types
    panels = [(n, e, results.array(n, "row_norms")) for n, e in list(emb.items())[:MAX_PANELS]]
    panels = [p for p in panels if p[2] is not None and p[2].size]
    if not panels:
        return empty("Embedding row norms", "no embedding matrices in these results")
    fig = figure(12, 4.2 * len(panels))
    for i, (name, e, norms) in enumerate(panels):
        ax = fig.add_subplot(len(panels), 1, i + 1)
        ax.hist(norms, bins=120, color="#8c564b", alpha=0.85, log=True)
        ax.axvline(e["norm_mean"], color="#333333", ls="--", lw=1, label=f"mean {e['norm_mean']:.3g}")
        for rows, color, side in ((e["largest"][:5], "#d62728", "largest"), (e["smallest"][:5], "#1f77b4", "smallest")):
            for k, row in enumerate(rows):
                ax.axvline(row["norm"], color=color, lw=0.6, alpha=0.6)
                ax.annotate(_token(row), (row["norm"], 1), xytext=(0, 12 + 11 * k), textcoords="offset points", fontsize=7,
                            color=color, rotation=0, ha="center", xycoords=("data", "axes fraction"), annotation_clip=False)  # fmt: skip
        ax.set_xlabel("row (token) L2 norm")
        ax.set_ylabel("tokens (log)")
        ax.set_title(f"{name}: {e['vocab_size']} x {e['embedding_dim']}; red: largest norms, blue: smallest", fontsize=10, pad=70)
        ax.legend(fontsize=8, loc="upper right")
        ax.set_xlim(float(np.min(norms)) * 0.98, float(np.max(norms)) * 1.02)
    return fig
