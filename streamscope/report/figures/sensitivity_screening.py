"""``sensitivity_screening.png``: weight-only SQNR against the measured output SQNR of every Linear, at INT8
per-channel and INT4 g128, with Spearman's rank correlation: how well screening the weights alone would rank the
Linears that a quantized model's outputs actually suffer from."""

from __future__ import annotations

from streamscope.report.activation_table import module_label
from streamscope.plotstyle import figure
from streamscope.report.sensitivity_data import SCREENED, of, screening, spearman

COLORS = {"int8_channel": "#1f77b4", "int4_g128": "#9467bd"}
NAMED = 3  # the Linears with the lowest output SQNR are named on the plot


def draw(results):
    record = of(results)
    panels = [(s, *screening(record, s)) for s in SCREENED] if record else []
    panels = [p for p in panels if p[1]]
    if not panels:
        return None
    fig = figure(6 * len(panels), 5.2)
    for i, (scheme, names, weight, output) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        color = COLORS.get(scheme, "#555555")
        ax.scatter(weight, output, s=18, color=color, alpha=0.8, label=f"{scheme} ({len(names)} Linears)")
        lo, hi = min(weight + output), max(weight + output)
        ax.plot([lo, hi], [lo, hi], ls="--", lw=1, color="#888888", label="output = weight")
        for j in sorted(range(len(names)), key=lambda j: output[j])[:NAMED]:
            ax.annotate(module_label(names[j]), (weight[j], output[j]), fontsize=7, xytext=(3, -9), textcoords="offset points")
        rho = spearman(weight, output)
        shown = f"{rho:.3f}" if rho is not None else "n/a (too few points)"
        ax.set_title(f"{scheme}: Spearman ρ = {shown}", fontsize=11)
        ax.set_xlabel("weight-only SQNR (dB)")
        ax.set_ylabel("output SQNR on real inputs (dB)")
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("Weight-only screening against measured output error: "
                 "a low rank correlation says screening the weights misranks Linears", fontsize=10)
    return fig
