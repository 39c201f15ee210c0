"""``distribution.png``: the seed's distribution plots: a box plot per selected module (1st-99th percentile
whiskers, min and max marked) and the value histogram of each, from the bf16-pattern counts."""

from __future__ import annotations

from streamscope.report.figures.style import figure


def draw(results):
    act = results.activations
    if not act or not act.get("config", {}).get("visualization", {}).get("enabled", {}).get("distribution", False):
        return None
    mods = (act.get("distribution") or {}).get("modules") or {}
    mods = {n: d for n, d in mods.items() if d.get("q1") is not None}
    if not mods:
        return None
    names = list(mods)
    fig = figure(max(9, 0.5 * len(names)), 8)
    ax = fig.add_subplot(2, 1, 1)
    stats = [{"label": n.replace("model.", "").replace("layers.", "L"), "whislo": d["p01"], "q1": d["q1"], "med": d["median"], "q3": d["q3"],
              "whishi": d["p99"], "fliers": [d["min"], d["max"]]} for n, d in mods.items()]  # fmt: skip
    ax.bxp(stats, showfliers=True)
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.tick_params(axis="x", labelrotation=90, labelsize=7)
    ax.set_title(f"Distribution of {act['distribution'].get('direction', 'input')}s (box: quartiles; whiskers: 1st-99th percentile; dots: min, max)")
    ax2 = fig.add_subplot(2, 1, 2)
    for n, d in list(mods.items())[:8]:
        h = d.get("histogram")
        if h:
            centers = [(a + b) / 2 for a, b in zip(h["edges"][:-1], h["edges"][1:])]
            ax2.plot(centers, [c if c > 0 else float("nan") for c in h["counts"]], lw=1, label=n)
    ax2.set_yscale("log")
    ax2.set_xlabel("value")
    ax2.set_ylabel("count")
    ax2.legend(fontsize=7)
    ax2.set_title("Histograms (64 bins between min and max)")
    return fig
