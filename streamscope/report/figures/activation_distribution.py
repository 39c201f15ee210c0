"""``distribution.png``: the seed's distribution plots: a box plot per selected module (1st-99th percentile
whiskers, min and max marked) and the value histogram of each, from the bf16-pattern counts; the panels that
``visualization.distribution.plot_types`` names."""

from __future__ import annotations

from streamscope.plotstyle import figure


def draw(results):
    act = results.activations
    if not act or not act.get("config", {}).get("visualization", {}).get("enabled", {}).get("distribution", False):
        return None
    mods = (act.get("distribution") or {}).get("modules") or {}
    mods = {n: d for n, d in mods.items() if d.get("q1") is not None}
    if not mods:
        return None
    kinds = act["config"]["visualization"].get("distribution", {}).get("plot_types") or ["boxplot", "histogram"]
    names = list(mods)
    fig = figure(max(9, 0.5 * len(names)), 4 * len(kinds))
    panels = iter(range(1, len(kinds) + 1))
    if "boxplot" in kinds:
        ax = fig.add_subplot(len(kinds), 1, next(panels))
        stats = [{"label": n.replace("model.", "").replace("layers.", "L"), "whislo": d["p01"], "q1": d["q1"], "med": d["median"], "q3": d["q3"],
                  "whishi": d["p99"], "fliers": [d["min"], d["max"]]} for n, d in mods.items()]  # fmt: skip
        ax.bxp(stats, showfliers=True)
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.tick_params(axis="x", labelrotation=90, labelsize=7)
        ax.set_title(f"Distribution of {act['distribution'].get('direction', 'input')}s (box: quartiles; whiskers: 1st-99th percentile; dots: min, max)")
    if "histogram" in kinds:
        _histograms(fig.add_subplot(len(kinds), 1, next(panels)), mods)
    return fig


def _histograms(ax, mods: dict) -> None:
    for n, d in list(mods.items())[:8]:
        h = d.get("histogram")
        if h:
            centers = [(a + b) / 2 for a, b in zip(h["edges"][:-1], h["edges"][1:])]
            ax.plot(centers, [c if c > 0 else float("nan") for c in h["counts"]], lw=1, label=n)
    ax.set_yscale("log")
    ax.set_xlabel("value")
    ax.set_ylabel("count")
    ax.legend(fontsize=7)
    ax.set_title("Histograms (64 bins between min and max)")
