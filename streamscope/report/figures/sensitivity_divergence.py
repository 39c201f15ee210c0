"""``sensitivity_divergence.png``: how far each quantized stream has drifted from the float one after every
decoder layer (log10 of 1 - cosine similarity, and SQNR of the hidden states): where along the depth the
quantization error builds up, one line per recipe. The log is taken here rather than by a log axis, whose tick
labels are math text (every text of a figure is drawn plain)."""

from __future__ import annotations

import numpy as np

from streamscope.plotstyle import figure
from streamscope.report.sensitivity_data import finite, of


def _series(layers: list[dict], key: str) -> np.ndarray:
    return np.array([l[key] if finite(l.get(key)) else np.nan for l in layers], dtype=float)


def _label(name: str, p: dict) -> str:
    if finite(p.get("kl_mean")):
        top1 = f", top-1 {100 * p['top1_agreement']:.1f}%" if finite(p.get("top1_agreement")) else ""
        return f"{name} (KL {p['kl_mean']:.3g}{top1})"
    return f"{name} (last hidden state cos {(p.get('output') or {}).get('cos') or float('nan'):.5f})"


def draw(results):
    record = of(results)
    streams = {n: p for n, p in (record or {}).get("propagated", {}).items() if p.get("layers")}
    if not streams:
        return None
    fig = figure(12, 4.8)
    drift, sqnr = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for i, (name, p) in enumerate(streams.items()):
        x = np.arange(len(p["layers"]))
        gap = 1.0 - _series(p["layers"], "cos")
        drift.plot(x, np.log10(np.where(gap > 0, gap, np.nan)), marker=".", color=f"C{i % 10}", label=_label(name, p))
        sqnr.plot(x, _series(p["layers"], "sqnr_db"), marker=".", color=f"C{i % 10}")
    drift.set(xlabel="decoder layer", ylabel="log10(1 - cosine similarity to the float stream)",
              title="Drift of the hidden states")
    sqnr.set(xlabel="decoder layer", ylabel="SQNR of the hidden states (dB)", title="SQNR of the hidden states")
    for ax in (drift, sqnr):
        ax.xaxis.get_major_locator().set_params(integer=True)
    drift.legend(fontsize=8)
    fig.suptitle("Quantized streams against the float stream, after each decoder layer")
    return fig
