"""What WeightWatcher users read: its per-layer ``warning``, norm metrics and the model summary of its
``get_summary()``, from the full spectra the spectral analysis computes.

Per matrix (in ``spectral``), with ``evals`` the eigenvalues of W^T W (squared singular values), as WeightWatcher
defines them (``apply_norm_metrics`` and ``fit_powerlaw`` of its ``weightwatcher.py``):
- ``N``, ``M``: the larger and the smaller side of the matrix.
- ``log_norm`` = log10(sum evals) = log10 ||W||_F^2; ``log_spectral_norm`` = log10(max evals) = log10 sigma_max^2.
- ``alpha``: the power-law exponent of the tail ``evals >= xmin`` (``kernels.powerlaw``), fitted on
  ``alpha_tail_size`` eigenvalues (WeightWatcher's ``num_pl_spikes``).
- ``alpha_weighted`` = alpha * log_spectral_norm; ``log_alpha_norm`` = log10(sum evals^alpha).
- ``stable_rank`` = sum evals / max evals.
- ``warning``: ``"over-trained"`` when alpha < 2, ``"under-trained"`` when alpha > 6, else ``""``
  (WeightWatcher's ``OVER_TRAINED_THRESH`` and ``UNDER_TRAINED_THRESH``).

The model summary (``model.json["weightwatcher"]``) is the mean of each of these over the matrices that
WeightWatcher would analyse: a full spectrum with M >= 10 (its ``min_evals``); metrics that are undefined for a
matrix (alpha with no tail) are left out of that metric's mean, as pandas' ``mean`` does. WeightWatcher's
``mp_softrank`` needs its Marchenko-Pastur fit, which streamscope does not run: it is listed as not computed.
"""

from __future__ import annotations

import math

import numpy as np

from streamscope.analyses.registry import Analysis

OVER_TRAINED_THRESH, UNDER_TRAINED_THRESH = 2.0, 6.0
#: WeightWatcher's ``DEFAULT_MIN_EVALS``: smaller matrices are not analysed.
MIN_EVALS = 10
SUMMARY_METRICS = ("log_norm", "alpha", "alpha_weighted", "log_alpha_norm", "log_spectral_norm", "stable_rank")
DEFINITIONS = {
    "log_norm": "mean of log10 ||W||_F^2 (log10 of the sum of the eigenvalues of W^T W)",
    "alpha": "mean power-law exponent of the eigenvalue tail; 2-6 is the well-trained range",
    "alpha_weighted": "mean of alpha * log10 sigma_max^2",
    "log_alpha_norm": "mean of log10 of the sum of eigenvalues^alpha",
    "log_spectral_norm": "mean of log10 sigma_max^2",
    "stable_rank": "mean of ||W||_F^2 / sigma_max^2",
}
NOT_COMPUTED = {"mp_softrank": "needs WeightWatcher's Marchenko-Pastur fit, which streamscope does not run"}


def warning(alpha: float | None) -> str | None:
    """WeightWatcher's per-layer warning; None where there is no alpha."""
    if alpha is None or not math.isfinite(alpha):
        return None
    return "over-trained" if alpha < OVER_TRAINED_THRESH else "under-trained" if alpha > UNDER_TRAINED_THRESH else ""


def layer_metrics(sv: np.ndarray, alpha: float) -> dict:
    """``log_norm`` and ``log_alpha_norm`` of a full spectrum of singular values ``sv`` (descending)."""
    evals = np.square(np.asarray(sv, dtype=np.float64))
    total = float(evals.sum())
    out = {"log_norm": math.log10(total) if total > 0 else float("nan"), "log_alpha_norm": float("nan")}
    if math.isfinite(alpha) and sv.size and sv[0] > 0:
        # sum evals^alpha = max^alpha * sum (evals / max)^alpha, so that a large alpha cannot overflow
        scaled = float(np.sum((evals / evals[0]) ** alpha))
        out["log_alpha_norm"] = alpha * math.log10(evals[0]) + math.log10(scaled)
    return out


def summary(records: dict[str, dict]) -> dict | None:
    """WeightWatcher's ``get_summary()`` over the matrices it would analyse, with counts of its warnings."""
    layers = [r["spectral"] for r in records.values()
              if (r.get("spectral") or {}).get("alpha_tail_size") is not None and (r["spectral"].get("M") or 0) >= MIN_EVALS]  # fmt: skip
    if not layers:
        return None
    out: dict = {"matrices": len(layers)}
    for metric in SUMMARY_METRICS:
        values = [s.get(metric) for s in layers]
        values = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
        out[metric] = float(np.mean(values)) if values else None
    warnings = [s.get("warning") for s in layers]
    tails = [s["alpha_tail_size"] for s in layers if s.get("alpha_tail_size")]
    out.update(over_trained=warnings.count("over-trained"), under_trained=warnings.count("under-trained"),
               alpha_fitted=len(tails), median_tail_size=float(np.median(tails)) if tails else None,
               smallest_tail_size=min(tails) if tails else None, definitions=DEFINITIONS, not_computed=NOT_COMPUTED)  # fmt: skip
    return out


MODEL_ANALYSIS = Analysis(
    name="weightwatcher",
    kind="model",
    help="WeightWatcher's summary (mean alpha, alpha_weighted, log norms) and its warnings, from full spectra",
    selectable=False,
    compute=lambda ctx, options: summary(ctx.records),
)
