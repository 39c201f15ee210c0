"""Shared look of every figure (the report's and the activation probes'): Agg canvas without pyplot state, band colours,
deterministic PNGs."""

from __future__ import annotations

import math
from pathlib import Path

#: WeightScope's condition-number bands: < 1e3 green, 1e3-1e4 yellow, 1e4-1e5 orange, > 1e5 red.
BAND_EDGES = (3.0, 4.0, 5.0)
BAND_COLORS = ("#2ca02c", "#f1c40f", "#e67e22", "#d62728")
GRADE_COLORS = {"Excellent": "#2ca02c", "Good": "#8fd16a", "Warning": "#e67e22", "Critical": "#d62728"}
#: One colour per block type, stable across figures.
TYPE_COLORS = {"q_proj": "#1f77b4", "k_proj": "#aec7e8", "v_proj": "#ff7f0e", "o_proj": "#ffbb78", "qkv_proj": "#17becf",
               "mlp_gate": "#2ca02c", "mlp_up": "#98df8a", "mlp_down": "#d62728", "mlp_fc": "#9467bd", "embedding": "#8c564b",
               "output": "#e377c2", "moe_expert": "#7f7f7f", "moe_router": "#bcbd22"}  # fmt: skip


#: Every text of a figure is drawn as written: tensor names and tokens hold ``$`` (SmolLM2's ``$$``, ``Ġ$$``),
#: which matplotlib would otherwise parse as math text (a ValueError for an odd or unbalanced one).
PLAIN_TEXT = {"text.usetex": False, "text.parse_math": False}


def plain_text():
    """A context in which every text matplotlib creates (titles, tick labels, annotations, legends) is plain."""
    import matplotlib

    return matplotlib.rc_context(PLAIN_TEXT)


def figure(width: float = 10, height: float = 6):
    """A new figure on its own Agg canvas (no pyplot registry: nothing kept alive between figures)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig, path: Path, dpi: int | None = None) -> Path:
    """PNG without a timestamp or software tag, so that the same results give the same bytes; ``dpi``: the
    resolution (the figure's own when None)."""
    from matplotlib.text import Text

    path.parent.mkdir(parents=True, exist_ok=True)
    with plain_text():  # tick labels made while drawing, too
        for text in fig.findobj(Text):  # texts of a figure drawn outside ``plain_text``
            text.set_usetex(False)
            text.set_parse_math(False)
        fig.savefig(path, format="png", metadata={"Software": None}, dpi=dpi or "figure")
    return path


def band(log10_kappa: float) -> int:
    return sum(log10_kappa > e for e in BAND_EDGES)


def type_color(block_type: str) -> str:
    return TYPE_COLORS.get(block_type, "#555555")


def log10_kappa(kappa: float) -> float:
    """log10 of a condition number; infinite ones are drawn at 17 (beyond float64's resolution)."""
    return math.log10(kappa) if math.isfinite(kappa) and kappa > 0 else 17.0


def empty(title: str, message: str):
    fig = figure(8, 2.5)
    ax = fig.add_subplot()
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return fig
