"""Statistics from bit-pattern histograms.

A bf16 or fp16 tensor takes at most 65,536 distinct values, an 8-bit tensor at most 256. A count per bit
pattern is therefore a complete summary for every statistic that does not depend on element order: moments,
extremes, counts under thresholds, exact quantiles, even the error of an element-wise quantizer. Counts of
blocks merge by addition, so a tensor of any size is summarised exactly in one pass, in float64.

For float32 and wider types the histogram keys are the top 16 bits of the float32 value (bf16 truncated
towards zero), so each key stands for an interval of relative width at most 2**-7: quantiles from such a
histogram carry that error bound, and exact quantities come from other accumulators.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

#: dtypes whose pattern histogram holds the exact values (safetensors dtype name -> number of patterns).
EXACT_PATTERNS = {"BF16": 65536, "F16": 65536, "I16": 65536, "U16": 65536, "F8_E4M3": 256, "F8_E5M2": 256, "F8_E8M0": 256,
                  "I8": 256, "U8": 256, "BOOL": 256}  # fmt: skip
TRUNCATED = "BF16_TRUNCATED"  # key kind for float32 and wider: bf16 truncation of the float32 value
#: Relative width of a truncated key's interval: 7 explicit mantissa bits.
TRUNCATION_RELATIVE_WIDTH = 2.0**-7


@lru_cache(maxsize=None)
def pattern_values(kind: str) -> np.ndarray:
    """float64 value of every bit pattern of ``kind`` (NaN for NaN patterns), indexed by the unsigned pattern."""
    if kind in ("BF16", TRUNCATED):
        bits = np.arange(65536, dtype=np.uint32) << 16
        with np.errstate(invalid="ignore"):
            return bits.view(np.float32).astype(np.float64)
    if kind == "F16":
        return np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float64)
    if kind == "I16":
        return np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.float64)
    if kind == "U16":
        return np.arange(65536, dtype=np.float64)
    if kind in ("F8_E4M3", "F8_E5M2", "F8_E8M0"):
        dt = {"F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "F8_E8M0": getattr(torch, "float8_e8m0fnu", None)}[kind]
        return torch.arange(256, dtype=torch.uint8).view(dt).to(torch.float32).to(torch.float64).numpy()
    if kind == "I8":
        return np.arange(256, dtype=np.uint8).view(np.int8).astype(np.float64)
    if kind == "U8":
        return np.arange(256, dtype=np.float64)
    if kind == "BOOL":
        return (np.arange(256) != 0).astype(np.float64)
    raise KeyError(kind)


@lru_cache(maxsize=None)
def truncated_upper() -> np.ndarray:
    """Far end (away from zero) of the interval of float32 values that truncate to each bf16 key."""
    keys = np.arange(65536, dtype=np.uint32)
    nxt = ((keys & 0x8000) | ((keys & 0x7FFF) + 1)) << 16
    with np.errstate(invalid="ignore", over="ignore"):
        upper = nxt.astype(np.uint32).view(np.float32).astype(np.float64)
    return upper


def summarize(kind: str, counts: np.ndarray) -> dict:
    """Moments, extremes and counts from a pattern histogram (exact for exact kinds).

    Returns a dict with ``n, nan, inf, finite, mean, var (ddof=1), min, max, sum_abs, sumsq, zeros``.
    """
    present = np.flatnonzero(counts)  # the patterns that occur: a few thousand of 65,536 in a typical tensor
    v, counts = pattern_values(kind)[present], counts[present]
    c = counts.astype(np.float64)
    nan = np.isnan(v)
    inf = np.isinf(v)
    fin = ~(nan | inf)
    cf, vf = c[fin], v[fin]
    n_fin = cf.sum()
    out = {
        "n": int(counts.sum()),
        "nan": int(counts[nan].sum()),
        "inf": int(counts[inf].sum()),
        "finite": int(n_fin),
        "zeros": int(counts[v == 0].sum()),
    }
    if n_fin == 0:
        out.update(mean=float("nan"), var=float("nan"), min=float("nan"), max=float("nan"), sum_abs=0.0, sumsq=0.0)
        return out
    mean = float((cf * vf).sum() / n_fin)
    m2 = float((cf * (vf - mean) ** 2).sum())
    out.update(
        mean=mean,
        var=m2 / (n_fin - 1) if n_fin > 1 else float("nan"),
        min=float(vf.min()),
        max=float(vf.max()),
        sum_abs=float((cf * np.abs(vf)).sum()),
        sumsq=float((cf * vf * vf).sum()),
    )
    return out


def count_abs_below(kind: str, counts: np.ndarray, threshold: float) -> int:
    """Elements with ``|x| < threshold`` (``x == 0`` for threshold 0), exact for exact kinds."""
    v = np.abs(pattern_values(kind))
    mask = v == 0 if threshold == 0 else v < threshold
    return int(counts[mask & ~np.isnan(v)].sum())


def _sorted_intervals(kind: str, counts: np.ndarray, absolute: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lo, hi, count) of the non-empty finite keys, sorted by value; lo == hi for exact kinds."""
    v = pattern_values(kind)
    lo = hi = v
    if kind == TRUNCATED:
        up = truncated_upper()
        lo, hi = np.minimum(v, up), np.maximum(v, up)  # negative keys cover (up, v]
    if absolute:
        a, b = np.abs(lo), np.abs(hi)
        lo, hi = np.minimum(a, b), np.maximum(a, b)
    keep = (counts > 0) & np.isfinite(v)
    lo, hi, c = lo[keep], hi[keep], counts[keep]
    order = np.argsort(lo, kind="stable")
    return lo[order], hi[order], c[order]


def quantiles(kind: str, counts: np.ndarray, qs, absolute: bool = False) -> np.ndarray:
    """Quantiles (``qs`` in [0, 1]) of the finite values (or of their ``|values|``), numpy's 'linear' method.

    Exact for exact kinds. For truncated keys the order statistics are placed inside their key's interval by
    rank (uniform spread), so each lies within ``2**-7`` relative of the true one.
    """
    lo, hi, c = _sorted_intervals(kind, counts, absolute)
    qs = np.atleast_1d(np.asarray(qs, dtype=np.float64))
    n = int(c.sum())
    if n == 0:
        return np.full(qs.shape, np.nan)
    cum = np.cumsum(c)
    pos = qs * (n - 1)
    k_lo = np.floor(pos).astype(np.int64)
    k_hi = np.minimum(k_lo + 1, n - 1)

    def order_stat(k: np.ndarray) -> np.ndarray:
        i = np.searchsorted(cum, k, side="right")  # key holding the k-th smallest (0-based)
        if kind != TRUNCATED:
            return lo[i]
        before = np.where(i > 0, cum[np.maximum(i - 1, 0)], 0)
        frac = (k - before + 0.5) / c[i]
        return lo[i] + (hi[i] - lo[i]) * frac

    a, b = order_stat(k_lo), order_stat(k_hi)
    return a + (b - a) * (pos - k_lo)


def exact_quantiles(values: torch.Tensor, qs, absolute: bool = False) -> np.ndarray:
    """Quantiles of an in-memory tensor, numpy 'linear' method, by partial sort (no full sort)."""
    x = values.reshape(-1).to(torch.float64).numpy()
    x = x[np.isfinite(x)]
    if absolute:
        x = np.abs(x)
    qs = np.atleast_1d(np.asarray(qs, dtype=np.float64))
    if x.size == 0:
        return np.full(qs.shape, np.nan)
    pos = qs * (x.size - 1)
    k_lo = np.floor(pos).astype(np.int64)
    k_hi = np.minimum(k_lo + 1, x.size - 1)
    part = np.partition(x, np.unique(np.concatenate([k_lo, k_hi])))
    a, b = part[k_lo], part[k_hi]
    return a + (b - a) * (pos - k_lo)


def rebin(kind: str, counts: np.ndarray, bins: int, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """A fixed-bin value histogram over ``[lo, hi]`` from pattern counts, for plots."""
    present = np.flatnonzero(counts)
    v = pattern_values(kind)[present]
    if kind == TRUNCATED:
        with np.errstate(over="ignore", invalid="ignore"):
            mid = (v + truncated_upper()[present]) / 2
        v = np.where(np.isfinite(mid), mid, v)  # the top keys' intervals reach past the largest float
    keep = np.isfinite(v)
    counts = counts[present]
    if not (np.isfinite(lo) and np.isfinite(hi)):
        lo, hi = (float(v[keep].min()), float(v[keep].max())) if keep.any() else (-1.0, 1.0)
    pad = max(0.5, abs(lo) * 1e-3, abs(hi) * 1e-3)
    if hi - lo < pad * 1e-9:  # one value (or a span float64 cannot cut into bins): widen around it
        lo, hi = lo - pad, hi + pad
    # bins in units of the largest magnitude, so that hi - lo cannot overflow (+-3.4e38) or lose its bins (2**60)
    scale = max(abs(lo), abs(hi))
    with np.errstate(over="ignore", invalid="ignore"):
        h, edges = np.histogram(np.clip(v[keep] / scale, lo / scale, hi / scale), bins=bins, range=(lo / scale, hi / scale),
                                weights=counts[keep])  # fmt: skip
    return h.astype(np.int64), edges * scale
