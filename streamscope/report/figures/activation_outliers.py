"""``outlier_layer_wise.png``, ``outlier_position.png``, ``outlier_token.png``: the seed's outlier plots.

Outlier tokens are those whose largest |x| exceeds the threshold times the median |x| of the module's output
(``activations.json["outliers"]``): their count per module, their positions in the sequence, and the tokens
most often among them (decoded text where a tokenizer was found, else the id).
"""

from __future__ import annotations

from collections import Counter

from streamscope.plotstyle import figure


def _outliers(results, key: str):
    act = results.activations
    if not act or not act.get("config", {}).get("visualization", {}).get("enabled", {}).get(key, True):
        return None
    layers = (act.get("outliers") or {}).get("layers") or {}
    return act["outliers"] if layers else None


def layer_wise(results):
    o = _outliers(results, "outlier_layer_wise")
    if o is None:
        return None
    names = list(o["layers"])
    counts = [o["layers"][n]["count"] for n in names]
    fig = figure(max(8, 0.3 * len(names)), 4.5)
    ax = fig.add_subplot()
    ax.bar(range(len(names)), counts, color="#d62728")
    ax.set_xticks(range(len(names)), [n.rsplit(".", 1)[-1] if n.rsplit(".", 1)[-1].isdigit() else n for n in names], fontsize=7, rotation=90)
    ax.set_xlabel("module (layer index)")
    ax.set_ylabel("outlier tokens")
    ax.set_title(f"Outlier tokens per layer (|x| > {o['threshold']:g} x median |x|)")
    return fig


def position(results):
    o = _outliers(results, "outlier_position")
    if o is None:
        return None
    pos = [p[1] for r in o["layers"].values() for p in r["positions"]]
    if not pos:
        return None
    fig = figure(9, 4)
    ax = fig.add_subplot()
    seq = results.activations["run"]["seq_len"]
    ax.hist(pos, bins=min(64, seq), range=(0, seq), color="#1f77b4")
    ax.set_xlabel("token position in the sample")
    ax.set_ylabel("outlier occurrences (all layers)")
    ax.set_yscale("log")
    ax.set_title("Where outlier tokens sit")
    return fig


def token(results):
    o = _outliers(results, "outlier_token")
    if o is None:
        return None
    c: Counter = Counter()
    for r in o["layers"].values():
        labels = r.get("tokens") or [f"#{i}" for i in r["token_ids"]]
        c.update(repr(t)[1:-1] if isinstance(t, str) else t for t in labels)
    if not c:
        return None
    top = c.most_common(20)[::-1]
    fig = figure(8, 0.3 * len(top) + 1.5)
    ax = fig.add_subplot()
    ax.barh(range(len(top)), [n for _, n in top], color="#9467bd")
    ax.set_yticks(range(len(top)), [t for t, _ in top], fontsize=8)
    ax.set_xlabel("occurrences as an outlier token (all layers)")
    ax.set_title("Tokens most often carrying outliers")
    return fig
