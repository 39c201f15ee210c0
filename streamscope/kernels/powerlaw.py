"""Power-law fit of an eigenvalue spectrum's tail, as WeightWatcher (0.7) fits it, so that ``alpha`` means
what its users expect.

Eigenvalues (squared singular values) at or below ``1e-5`` are dropped. For every candidate ``xmin`` (each
remaining eigenvalue but the largest), the continuous maximum-likelihood exponent of the tail ``x >= xmin``
is ``alpha = 1 + n / sum(log(x / xmin))`` (Clauset, Shalizi and Newman 2009); the Kolmogorov-Smirnov distance
``D = max |1 - (x / xmin) ** (1 - alpha) - i / n|`` (i = 0 .. n-1 over the sorted tail) is taken where
``alpha > 1`` (else 1), and the ``xmin`` of the smallest ``D`` wins. Spectra of fewer than 20 eigenvalues
use the bias-corrected exponent ``1 + (n - 1) / sum(...)`` over tails of at least 8, chosen by
``D - 0.868 / sqrt(n)``, as WeightWatcher's small-sample fit does.

References:
    A. Clauset, C. R. Shalizi, M. E. J. Newman. Power-law distributions in empirical data. SIAM Review 51, 2009.
    C. H. Martin, M. W. Mahoney. Implicit self-regularization in deep neural networks. JMLR 22, 2021.
"""

from __future__ import annotations

import numpy as np

#: Eigenvalues at or below this are left out of the fit (WeightWatcher's ``EVALS_THRESH``).
EVALS_THRESH = 1e-5
SMALL_N = 20
SMALL_N_MIN_TAIL = 8
#: Candidates whose distances are computed at once: chunks stay in cache, where the whole candidates x values
#: square at once is several times slower (benchmarks/README.md).
_CHUNK_ROWS = 128


def fit_alpha(evals: np.ndarray) -> dict:
    """Fit ``alpha`` to the tail of ``evals``.

    Returns:
        ``{"alpha", "xmin", "ks_distance", "tail_size"}``; NaNs (tail size 0) when fewer than two eigenvalues
        remain above the threshold, or no candidate gives ``alpha > 1``.
    """
    x = np.sort(np.asarray(evals, dtype=np.float64))
    x = x[np.isfinite(x) & (x > EVALS_THRESH)]
    nan = {"alpha": float("nan"), "xmin": float("nan"), "ks_distance": float("nan"), "tail_size": 0}
    n_all = x.size
    if n_all < 2:
        return nan
    logs = np.log(x)
    suffix = np.cumsum(logs[::-1])[::-1]  # suffix[i] = sum(log x[i:])
    i = np.arange(n_all - 1)
    n = (n_all - i).astype(np.float64)
    denom = suffix[:-1] - n * logs[:-1]
    small = n_all < SMALL_N
    with np.errstate(divide="ignore", invalid="ignore"):
        alphas = 1.0 + ((n - 1.0) if small else n) / denom
    valid = np.isfinite(alphas) & (alphas > 1.0) & (denom > (1e-12 if small else 0.0))
    if small:
        valid &= n >= SMALL_N_MIN_TAIL
    with np.errstate(over="ignore", invalid="ignore"):
        ds = np.where(valid, ks_distances(logs, alphas), 1.0)
    score = ds - 0.868 / np.sqrt(n) if small else ds
    score = np.where(valid, score, np.inf)
    if not np.isfinite(score).any():
        return nan
    best = int(np.argmin(score))
    return {"alpha": float(alphas[best]), "xmin": float(x[best]), "ks_distance": float(ds[best]), "tail_size": int(n[best])}


def ks_distances(logs: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Kolmogorov-Smirnov distance of each candidate tail from its fitted power law.

    ``logs``: log of the sorted eigenvalues (n of them); ``alphas``: the exponent fitted to each tail
    ``x[i:]``, i < n - 1. Returns ``D_i = max over j >= i of |1 - exp((logs_j - logs_i)(1 - alpha_i)) - (j - i) / (n - i)|``,
    computed over the triangle j >= i alone, a block of candidates at a time.
    """
    n = logs.size
    out = np.empty(n - 1)
    j = np.arange(n, dtype=np.float64)
    inv = 1.0 / (n - j[:-1])  # 1 / tail size
    for s in range(0, n - 1, _CHUNK_ROWS):
        e = min(n - 1, s + _CHUNK_ROWS)
        t = logs[None, s:] - logs[s:e, None]
        t *= (1.0 - alphas[s:e])[:, None]
        np.exp(t, out=t)  # (x_j / x_i) ** (1 - alpha_i), for columns j >= s
        t += j[None, s:] * inv[s:e, None]  # minus the fitted CDF 1 - t, plus the empirical (j - i) / (n - i)
        t -= (1.0 + j[s:e] * inv[s:e])[:, None]
        np.abs(t, out=t)
        t[:, : e - s][np.tril_indices(e - s, -1)] = 0.0  # j < i: not in candidate i's tail
        out[s:e] = t.max(axis=1)
    return out
