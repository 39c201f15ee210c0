"""Spectral analysis of one weight matrix (2-D, or higher-D flattened to rows x the rest), from streamed blocks.

Methods, chosen per matrix (``spectral.method`` in the output):
- ``exact``: ``svdvals`` in float64 of the matrix gathered in memory; small matrices, or when asked.
- ``gram``: the full spectrum from the Gram matrix of the smaller side, accumulated over blocks in float64,
  then ``eigvalsh``. Singular values below about ``sqrt(eps64) * sigma_max`` (``resolution`` in the output)
  are not resolved: the minimum singular value and condition number are then a bound.
- ``randomized``: top-``k`` singular values by randomized subspace iteration (``svd_compressed``); stable
  rank from the exact Frobenius norm. The small end of the spectrum is not computed (condition number,
  effective rank beyond ``k`` and ``alpha`` are reported as unavailable).
``auto`` takes ``exact`` when the smaller side is at most 1024, else ``gram`` when the smaller side is at most
2048 (a Gram spectrum costs rows x cols x side flops in float64: hours on a 70B model), else ``randomized``.
Every method must fit the memory that the budget leaves to analyses (``ctx.memory``, see
``engine.budget``): a method that would not fit, asked for or chosen, gives way to the next cheaper one, and
``method_note`` says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from streamscope.analyses.registry import Analysis
from streamscope.errors import OptionError

if TYPE_CHECKING:
    import torch

    from streamscope.io.tensor import Block, TensorInfo

METHODS = ("auto", "exact", "gram", "randomized", "off")
EXACT_MAX_SIDE = 1024
GRAM_MAX_SIDE = 2048
EPS32 = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class SpectralOptions:
    """``spectral``: the method (``auto``, ``exact``, ``gram``, ``randomized``, ``off``); ``rank``: top singular
    values reported; ``n_oversamples``, ``n_power_iter``, ``seed``: the randomized method's sketch."""

    spectral: str = "auto"
    rank: int = 32
    n_oversamples: int = 20
    n_power_iter: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.spectral not in METHODS:
            raise OptionError(f"--spectral must be one of {', '.join(METHODS)}; got {self.spectral!r}")
        if not 1 <= int(self.rank) <= 4096:
            raise OptionError(f"--rank must be between 1 and 4096; got {self.rank}")
        if self.n_oversamples < 0 or self.n_power_iter < 1:
            raise OptionError("n_oversamples must be >= 0 and n_power_iter >= 1")


def method_bytes(method: str, rows: int, cols: int, k: int = 32, oversamples: int = 20, block_elems: int = 0) -> int:
    """Memory a method holds beyond the block buffers, in bytes (float64 throughout).

    exact: the gathered matrix and LAPACK's copy of it, plus the small side squared for its workspace;
    gram: the Gram matrix and ``eigvalsh``'s copy, plus a float64 copy of one block;
    randomized: the sketches ``W @ Q`` and ``W.T @ Q`` (rows and cols x (k + oversamples)), each about three times.
    """
    small = min(rows, cols)
    if method == "exact":
        return 2 * rows * cols * 8 + 3 * small * small * 8
    if method == "gram":
        return 2 * small * small * 8 + block_elems * 8
    if method == "randomized":
        return 3 * (rows + cols) * (k + oversamples) * 8
    return 0


def choose_method(rows: int, cols: int, method: str, available: int, k: int = 32, oversamples: int = 20,
                  block_elems: int = 0) -> tuple[str, str | None]:  # fmt: skip
    """The method to run and, when it is not the one asked for or ``auto``'s usual pick, why.

    ``available`` is the memory the budget leaves to analyses (bytes).
    """
    small = min(rows, cols)
    if method == "off":
        return "off", None
    if method == "auto":
        wanted = "exact" if small <= EXACT_MAX_SIDE else "gram" if small <= GRAM_MAX_SIDE else "randomized"
    else:
        wanted = method
    order = ("exact", "gram", "randomized")
    for candidate in order[order.index(wanted):]:
        need = method_bytes(candidate, rows, cols, k, oversamples, block_elems)
        if need <= available:
            if candidate == wanted:
                return candidate, None
            first = method_bytes(wanted, rows, cols, k, oversamples, block_elems)
            return candidate, (f"{wanted} needs {first / 2**20:.0f} MiB, over the {available / 2**20:.0f} MiB the memory "
                               f"budget leaves to analyses; used {candidate}")  # fmt: skip
    need = method_bytes("randomized", rows, cols, k, oversamples, block_elems)
    return "off", f"even the randomized method needs {need / 2**20:.0f} MiB, over the {available / 2**20:.0f} MiB left; raise --memory-budget"


class SpectralState:
    def __init__(self, info: TensorInfo, options: SpectralOptions, available: int, block_elems: int):
        self.rows, self.cols = info.rows, info.cols
        self.options = options
        self.active = info.is_matrix and min(self.rows, self.cols) >= 2 and options.spectral != "off"
        self.k = int(options.rank)
        self.note = None
        self.method = "off"
        if self.active:
            self.method, self.note = choose_method(self.rows, self.cols, options.spectral, available, self.k,
                                                   options.n_oversamples, block_elems)  # fmt: skip
        self.dense: list[torch.Tensor] = []
        self.gram: torch.Tensor | None = None
        if self.method == "gram" and self.cols <= self.rows:
            import torch

            self.gram = torch.zeros(self.cols, self.cols, dtype=torch.float64)


def start(ctx, options: SpectralOptions) -> SpectralState:
    return SpectralState(ctx.info, options, ctx.memory.analysis_bytes, ctx.memory.block_elems)


def update(state: SpectralState, x: torch.Tensor, block: Block, scratch) -> None:
    if state.method == "exact":
        import torch

        state.dense.append(x.detach().to("cpu", torch.float64, copy=True))
    elif state.gram is not None:
        import torch

        b = x.to(torch.float64)
        state.gram = state.gram.to(b.device)
        state.gram.addmm_(b.T, b)  # (cols, cols) += block.T @ block


def finish(state: SpectralState, ctx) -> dict | None:
    if not state.active:
        return None
    import torch

    from streamscope.kernels.linalg import svd_compressed
    from streamscope.kernels.powerlaw import fit_alpha

    if state.method == "off":
        return {"method": "off", "method_note": state.note}
    s = ctx.acc.summary()
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
        o = state.options
        values, iterations = svd_compressed(ctx.row_blocks, (state.rows, state.cols), k, n_oversamples=o.n_oversamples,
                                            n_power_iter=o.n_power_iter, seed=o.seed, device=ctx.device)  # fmt: skip
        sv = values.numpy()
    full = state.method in ("exact", "gram")
    smax = float(sv[0]) if sv.size else 0.0
    out = {
        "method": state.method,
        "max_singular_value": smax,
        "stable_rank": _stable_rank(frob2, smax, sv if state.method in ("exact", "gram") else None),
        "total_rank": total_rank,
        "top_singular_values": [float(v) for v in sv[:k]],
        "log_spectral_norm": 2 * math.log10(smax) if smax > 0 else float("nan"),
    }
    out["stable_rank_utilization"] = out["stable_rank"] / total_rank if total_rank else 0.0
    if state.note:
        out["method_requested"], out["method_note"] = state.options.spectral, state.note
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


def _stable_rank(frob2: float, smax: float, full: np.ndarray | None) -> float:
    """``||W||_F^2 / sigma_max^2``; from the whole spectrum when there is one (its squares could underflow)."""
    if smax <= 0 or not math.isfinite(smax):
        return 0.0 if smax == 0 else float("nan")
    if full is not None:
        return float(np.sum(np.square(full / smax)))
    return frob2 / (smax * smax) if smax * smax > 0 else float("nan")


def _row_gram(ctx, rows: int) -> torch.Tensor:
    """``W @ W.T`` (rows x rows) for a wide matrix, accumulated over column slabs in one more pass."""
    import torch

    g = torch.zeros(rows, rows, dtype=torch.float64, device=ctx.device)
    for slab in ctx.column_slabs():
        b = slab.to(ctx.device, torch.float64)  # (rows, slab cols)
        g.addmm_(b, b.T)
    return g


ANALYSIS = Analysis(
    name="spectral",
    kind="block",
    help="singular values (exact, Gram or randomized), condition number, stable/effective rank, power-law alpha",
    options=SpectralOptions,
    writes=("singular_values",),
    start=start,
    update=update,
    finish=finish,
)
