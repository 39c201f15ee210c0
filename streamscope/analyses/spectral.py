"""Spectral analysis of one weight matrix (2-D, or higher-D flattened to rows x the rest), from streamed blocks.

Methods, chosen per matrix (``spectral.method`` in the output):
- ``exact``: ``svdvals`` in float64 of the matrix gathered in memory; small matrices, or when asked.
- ``gram``: the full spectrum from the Gram matrix of the smaller side, accumulated over blocks in float64,
  then ``eigvalsh``. Singular values below about ``sqrt(eps64) * sigma_max`` (``resolution`` in the output)
  are not resolved: the minimum singular value and condition number are then a bound.
- ``randomized``: top-``k`` singular values by randomized subspace iteration (``svd_compressed``); stable
  rank from the exact Frobenius norm. The small end of the spectrum is not computed (condition number,
  effective rank beyond ``k`` and ``alpha`` are reported as unavailable).
``auto`` takes ``exact`` when the smaller side is at most 1024, else ``gram`` when the Gram matrix fits in a
third of the memory budget and the smaller side is at most 2048 (a Gram spectrum costs
rows x cols x side flops in float64: hours on a 70B model), else ``randomized``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from streamscope.io.reader import Block
from streamscope.io.safetensors import TensorInfo
from streamscope.kernels.blockstats import TensorAccumulator
from streamscope.kernels.linalg import svd_compressed
from streamscope.kernels.powerlaw import fit_alpha

METHODS = ("auto", "exact", "gram", "randomized", "off")
EXACT_MAX_SIDE = 1024
GRAM_MAX_SIDE = 2048
EPS32 = float(np.finfo(np.float32).eps)


def choose_method(rows: int, cols: int, method: str, budget: int) -> str:
    small = min(rows, cols)
    if method != "auto":
        return method
    if small <= EXACT_MAX_SIDE:
        return "exact"
    if small <= GRAM_MAX_SIDE and small * small * 8 <= budget // 3:
        return "gram"
    return "randomized"


class SpectralState:
    def __init__(self, info: TensorInfo, params: dict):
        self.rows, self.cols = info.rows, info.cols
        self.active = len(info.shape) >= 2 and min(self.rows, self.cols) >= 2 and params.get("spectral", "auto") != "off"
        self.k = int(params.get("rank", 32))
        self.seed = int(params.get("seed", 0))
        self.method = choose_method(self.rows, self.cols, params.get("spectral", "auto"), int(params.get("memory_budget", 1 << 30))) if self.active else "off"
        self.dense: list[torch.Tensor] = []
        self.gram: torch.Tensor | None = None
        self.frob = 0.0
        if self.method == "gram" and self.cols <= self.rows:
            self.gram = torch.zeros(self.cols, self.cols, dtype=torch.float64)


def start(info: TensorInfo, params: dict) -> SpectralState:
    return SpectralState(info, params)


def update(state: SpectralState, x: torch.Tensor, block: Block, scratch) -> None:
    if not state.active:
        return
    if state.method == "exact":
        state.dense.append(x.detach().to("cpu", torch.float64, copy=True))
    elif state.gram is not None:
        b = x.to(torch.float64)
        state.gram = state.gram.to(b.device)
        state.gram.addmm_(b.T, b)  # (cols, cols) += block.T @ block


def finish(state: SpectralState, acc: TensorAccumulator, ctx) -> dict | None:
    if not state.active:
        return None
    s = acc.summary()
    frob2 = s["sumsq"]
    if not math.isfinite(frob2) or s["nan"] or s["inf"]:
        return {"method": state.method, "error": "tensor holds NaN or Inf values; spectrum not computed"}
    k = min(state.k, state.rows, state.cols)
    total_rank = min(state.rows, state.cols)
    resolution = 0.0
    if state.method == "exact":
        sv = torch.linalg.svdvals(torch.cat(state.dense).reshape(state.rows, state.cols)).numpy()
        state.dense.clear()
        iterations = None
    elif state.method == "gram":
        g = state.gram if state.gram is not None else _row_gram(ctx, state.rows)
        ev = torch.linalg.eigvalsh(g).flip(0).clamp_min(0).cpu().numpy()
        sv = np.sqrt(ev)
        # eigenvalues carry an absolute error of about eps64 * ||G|| = eps64 * sigma_max^2
        resolution = math.sqrt(np.finfo(np.float64).eps * max(state.rows, state.cols)) * float(sv[0]) if sv.size else 0.0
        iterations = None
    else:
        values, iterations = svd_compressed(ctx.row_blocks, (state.rows, state.cols), k, n_oversamples=int(ctx.params.get("n_oversamples", 20)),
                                            n_power_iter=int(ctx.params.get("n_power_iter", 10)), seed=state.seed, device=ctx.device)  # fmt: skip
        sv = values.numpy()
    full = state.method in ("exact", "gram")
    smax = float(sv[0]) if sv.size else 0.0
    out = {
        "method": state.method,
        "max_singular_value": smax,
        "stable_rank": frob2 / smax**2 if smax > 0 else 0.0,
        "total_rank": total_rank,
        "top_singular_values": [float(v) for v in sv[:k]],
        "log_spectral_norm": math.log10(smax**2) if smax > 0 else float("nan"),
    }
    out["stable_rank_utilization"] = out["stable_rank"] / total_rank if total_rank else 0.0
    if full:
        smin = float(sv[-1]) if sv.size else 0.0
        bound = resolution > 0 and smin < resolution
        out["min_singular_value"] = smin
        out["condition_number"] = smax / max(smin, resolution) if (smin > 0 or bound) else math.inf
        out["condition_number_is_lower_bound"] = bool(bound)
        out["singular_value_ratio"] = smin / smax if smax else 0.0
        out["effective_rank"] = int((sv > 0.01 * smax).sum())
        out["approximate_rank"] = int((sv > smax * max(state.rows, state.cols) * EPS32).sum())
        if resolution:
            out["resolution"] = resolution
        fit = fit_alpha(sv**2)
        out["alpha"] = fit["alpha"]
        out["alpha_weighted"] = fit["alpha"] * out["log_spectral_norm"] if fit["tail_size"] else float("nan")
        out["alpha_xmin"], out["alpha_ks_distance"], out["alpha_tail_size"] = fit["xmin"], fit["ks_distance"], fit["tail_size"]
    else:
        kth = float(sv[-1]) if sv.size else 0.0
        out.update(min_singular_value=None, condition_number=None, singular_value_ratio=None, alpha=None, alpha_weighted=None,
                   approximate_rank=None, iterations=iterations,
                   effective_rank=None if kth > 0.01 * smax else int((sv > 0.01 * smax).sum()),  # known only if the top k reach below 1%
                   effective_rank_lower_bound=int((sv > 0.01 * smax).sum()))  # fmt: skip
    ctx.arrays["singular_values"] = np.asarray(sv, dtype=np.float64)
    return out


def _row_gram(ctx, rows: int) -> torch.Tensor:
    """``W @ W.T`` (rows x rows) for a wide matrix, accumulated over column slabs in one more pass."""
    g = torch.zeros(rows, rows, dtype=torch.float64, device=ctx.device)
    for slab in ctx.column_slabs():
        b = slab.to(ctx.device, torch.float64)  # (rows, slab cols)
        g.addmm_(b, b.T)
    return g
