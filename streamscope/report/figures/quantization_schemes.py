"""``quantization_schemes.png``: SQNR of INT8 per-tensor, INT8 per-channel, INT4 group-128 and FP8 per layer
(the worst matrix of each layer): which layers need a finer scheme than the rest. INT4 groups are 128 values
along a row, the last one shorter where 128 does not divide the row: every matrix is grouped alike."""

from __future__ import annotations

import math
from collections import defaultdict

from streamscope.plotstyle import empty, figure

SCHEMES = (("int8", "INT8 per-tensor", "#d62728"), ("int8_channel", "INT8 per-channel", "#1f77b4"),
           ("int4_g128", "INT4 groups of 128 sym", "#9467bd"), ("int4_g128_asym", "INT4 groups of 128 asym", "#c5b0d5"),
           ("fp8_e4m3", "FP8 E4M3 per-tensor", "#2ca02c"))  # fmt: skip


def draw(results):
    worst: dict[str, dict[int, float]] = defaultdict(dict)
    for n, r in results.matrices.items():
        layer = r["info"].get("layer_index")
        schemes = (r.get("quantization") or {}).get("schemes") or {}
        if layer is None:
            continue
        for key, _, _ in SCHEMES:
            v = (schemes.get(key) or {}).get("sqnr_db")
            if isinstance(v, (int, float)) and math.isfinite(v):
                worst[key][layer] = min(v, worst[key].get(layer, math.inf))
    if not worst:
        return empty("Quantization schemes", "no per-layer scheme results: scan with --analyses quantization")
    fig = figure(12, 5)
    ax = fig.add_subplot()
    for key, label, color in SCHEMES:
        if worst.get(key):
            pts = sorted(worst[key].items())
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=label, color=color)
    ax.axhline(40, color="#2ca02c", ls="--", lw=1, label="40 dB")
    ax.axhline(30, color="#d62728", ls=":", lw=1, label="30 dB")
    ax.set_xlabel("layer")
    ax.set_ylabel("SQNR of the layer's worst matrix (dB)")
    ax.set_title("Quantization schemes per layer: where the lines fall, a finer scheme is needed\n"
                 "(INT4: groups of 128 along each row, a shorter last group where 128 does not divide the row)", fontsize=10)
    ax.legend(fontsize=8, ncol=3)
    return fig
