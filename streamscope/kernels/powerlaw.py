"""Power-law fit of an eigenvalue spectrum's tail (Clauset, Shalizi and Newman 2009), as WeightWatcher does.

For each candidate ``xmin`` (every eigenvalue), the continuous maximum-likelihood exponent of the tail
``x >= xmin`` is ``alpha = 1 + n / sum(log(x / xmin))``; the chosen ``xmin`` minimises the Kolmogorov-Smirnov
distance between the tail's empirical CDF and the fitted ``1 - (x / xmin) ** (1 - alpha)``.

References:
    A. Clauset, C. R. Shalizi, M. E. J. Newman. Power-law distributions in empirical data. SIAM Review 51, 2009.
    C. H. Martin, M. W. Mahoney. Implicit self-regularization in deep neural networks. JMLR 22, 2021.
"""

from __future__ import annotations

import numpy as np

MIN_TAIL = 10


def fit_alpha(evals: np.ndarray, min_tail: int = MIN_TAIL) -> dict:
    """Fit ``alpha`` to the tail of ``evals`` (positive values; others are dropped).

    Returns:
        ``{"alpha", "xmin", "ks_distance", "tail_size"}``; NaNs when fewer than ``min_tail`` values remain.
    """
    x = np.sort(np.asarray(evals, dtype=np.float64))
    x = x[x > 0]
    nan = {"alpha": float("nan"), "xmin": float("nan"), "ks_distance": float("nan"), "tail_size": 0}
    if x.size < min_tail:
        return nan
    logs = np.log(x)
    suffix = np.cumsum(logs[::-1])[::-1]  # suffix[i] = sum(log x[i:])
    best = None
    for i in range(x.size - min_tail + 1):
        if i and x[i] == x[i - 1]:
            continue  # same xmin as before
        n = x.size - i
        denom = suffix[i] - n * logs[i]
        if denom <= 0:
            continue
        alpha = 1.0 + n / denom
        tail = x[i:]
        with np.errstate(over="ignore", divide="ignore"):  # (tail / xmin) ** (1 - alpha) -> 0 for huge ratios: right
            fitted = 1.0 - (tail / x[i]) ** (1.0 - alpha)
        empirical_hi = np.arange(1, n + 1) / n
        empirical_lo = np.arange(0, n) / n
        d = max(np.max(np.abs(empirical_hi - fitted)), np.max(np.abs(fitted - empirical_lo)))
        if best is None or d < best[0]:
            best = (d, alpha, x[i], n)
    if best is None:
        return nan
    return {"alpha": float(best[1]), "xmin": float(best[2]), "ks_distance": float(best[0]), "tail_size": int(best[3])}
