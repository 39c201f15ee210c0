"""Every figure of the report: one file each, listed once below.

A figure is a ``draw(results) -> matplotlib Figure`` function (``results`` is ``streamscope.Results``; no I/O of
its own). To add one: write ``<file_name>.py`` here with its ``draw`` and add one ``Figure(...)`` line to
``FIGURES``; the HTML report shows it in its section. An activation probe's figures come with the probe
(``activation.probes``): ``probe_figures``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from streamscope.report.figures import (
    activation_distribution, activation_heatmap, activation_magnitude, activation_outliers, alpha_histogram, condition_heatmap,
    embedding_clusters, embedding_norms, health_dashboard, layer_details, layer_trends, norm_layers, quantization_risk,
    quantization_schemes, rank_efficiency, sensitivity_divergence, sensitivity_plan, sensitivity_screening, sensitivity_smoothquant,
)  # fmt: skip
from streamscope.plotstyle import plain_text, save


@dataclass(frozen=True)
class Figure:
    file: str  # the seed's file name where it has one
    section: str  # summary, weights, embeddings, activations, sensitivity
    title: str
    draw: Callable


FIGURES = [
    Figure("health_dashboard.png", "summary", "Model health dashboard", health_dashboard.draw),
    Figure("condition_heatmap.png", "weights", "Condition number per matrix", condition_heatmap.draw),
    Figure("quantization_risk.png", "weights", "Quantization risk", quantization_risk.draw),
    Figure("quantization_schemes.png", "weights", "Quantization schemes per layer", quantization_schemes.draw),
    Figure("rank_efficiency.png", "weights", "Rank efficiency", rank_efficiency.draw),
    Figure("layer_trends.png", "weights", "Per-layer trends", layer_trends.draw),
    Figure("alpha_histogram.png", "weights", "Power-law alpha", alpha_histogram.draw),
    Figure("embedding_norms.png", "embeddings", "Embedding row norms", embedding_norms.draw),
    Figure("norm_layers.png", "embeddings", "Norm layers", norm_layers.draw),
    Figure("embedding_elbow.png", "embeddings", "Embedding clusters: elbow and silhouette", embedding_clusters.elbow),
    Figure("embedding_clusters.png", "embeddings", "Embedding clusters on the two leading principal axes", embedding_clusters.projection),
    Figure("magnitude_input.png", "activations", "Magnitude of module inputs", activation_magnitude.draw_input),
    Figure("magnitude_output.png", "activations", "Magnitude of module outputs", activation_magnitude.draw_output),
    Figure("magnitude_weight.png", "activations", "Magnitude of weights", activation_magnitude.draw_weight),
    Figure("outlier_layer_wise.png", "activations", "Outlier tokens per layer", activation_outliers.layer_wise),
    Figure("outlier_position.png", "activations", "Outlier token positions", activation_outliers.position),
    Figure("outlier_token.png", "activations", "Outlier tokens", activation_outliers.token),
    Figure("heatmap_3d.png", "activations", "3D heatmap of |x|", activation_heatmap.draw),
    Figure("distribution.png", "activations", "Activation distributions", activation_distribution.draw),
    Figure("sensitivity_screening.png", "sensitivity", "Weight-only SQNR against measured output SQNR", sensitivity_screening.draw),
    Figure("sensitivity_smoothquant.png", "sensitivity", "SmoothQuant: W8A8 SQNR per alpha", sensitivity_smoothquant.draw),
    Figure("sensitivity_divergence.png", "sensitivity", "Quantized streams per decoder layer", sensitivity_divergence.draw),
    Figure("sensitivity_plan.png", "sensitivity", "Mixed-precision plan", sensitivity_plan.draw),
]


@dataclass(frozen=True)
class Rendered:
    path: Path  # relative to the figures directory
    section: str
    title: str


def probe_figures() -> list[Figure]:
    """The figures that activation probes bring with them (``Probe.figures``), in the activations section."""
    from streamscope.activation.probes import PROBES

    return [Figure(file, "activations", title, draw) for p in PROBES for file, title, draw in p.figures]


def render(results, out: Path, details: str | int = 10, on_figure: Callable[[], None] | None = None) -> list[Rendered]:
    """Draw every figure into ``out`` (``figures/``), then the detail figures of the chosen tensors."""
    done = []
    for f in FIGURES + (probe_figures() if results.activations else []):
        if not results.tensors and f.section == "weights" or (not results.tensors and f.file == "health_dashboard.png"):
            continue  # an embedding study or an activation run alone: no weight figures
        if f.section == "embeddings" and not results.tensors and not results.embeddings:
            continue
        with plain_text():  # names and tokens are never math text
            fig = f.draw(results)
        if fig is not None:
            save(fig, out / f.file, dpi=_activation_dpi(results) if f.section == "activations" else None)
            done.append(Rendered(Path(f.file), f.section, f.title))
        if on_figure:
            on_figure()
    for name in layer_details.chosen(results, details):
        stem = layer_details.file_stem(name)
        for kind, draw in (("distribution", layer_details.distribution), ("singular_values", layer_details.singular_values)):
            with plain_text():
                fig = draw(results, name)
            if fig is not None:
                rel = Path("layer_details") / f"{stem}_{kind}.png"
                save(fig, out / rel)
                done.append(Rendered(rel, "details", f"{name}: {kind.replace('_', ' ')}"))
        if on_figure:
            on_figure()
    return done


def _activation_dpi(results) -> int | None:
    """The resolution an activation run asked for (``visualization.dpi``)."""
    return ((results.activations or {}).get("config") or {}).get("visualization", {}).get("dpi")
