"""Spectral analysis of one weight matrix (2-D, or higher-D flattened to rows x the rest), from streamed blocks.

Methods, chosen per matrix (``spectral.method`` in the output):
- ``gram``: the full spectrum from the Gram matrix of the smaller side, accumulated over blocks, then
  ``eigvalsh``: in float64 up to a smaller side of 2048, in float32 above (several times faster on large
  Gram matrices, benchmarks/README.md). Singular values below about ``sqrt(eps * larger side) *
  sigma_max`` (``resolution`` in the output) are not resolved: the minimum singular value and condition
  number are then a bound; the power-law tail that ``alpha`` fits lies far above it.
- ``exact``: LAPACK's divide-and-conquer SVD (numpy ``gesdd``) in float64 of the matrix gathered in memory;
  resolves the smallest singular values too. Only when asked: it is several times slower than ``gram``, and
  torch's ``svdvals`` is erratic on trained weights (benchmarks/README.md).
- ``randomized``: top-``k`` singular values by randomized block Krylov iteration (``svd_block_krylov``);
  stable rank from the exact Frobenius norm. When the matrix fits the analysis memory as bfloat16 it is
  kept there during the pass, so that the Krylov products (bfloat16, float32 accumulation) read no bytes
  again; the final Rayleigh-Ritz product is float32. The top ``krylov_converge`` values (ten) converge and are
  reported; the Ritz values after them, up to ``rank``, are lower bounds of the true ones
  (``singular_value_lower_bounds``). The small end of the spectrum, and so ``alpha``, is not computed.
Condition numbers are also limited by the stored dtype (``noise_floor`` in the output, see ``noise_floor``):
rounding every weight to bfloat16 moves the small singular values by about ``||W||_F * u / sqrt(min(m, n))``
(u = 2^-8), so a smaller ``min_singular_value`` measures the rounding, not the model. Below that floor
``condition_number`` is ``sigma_max / noise_floor``, a lower bound (``condition_number_resolved`` false,
``condition_number_note`` "not resolved at bf16"), and the health grade does not rest on it.
``auto`` takes ``gram`` when the smaller side is at most 2048, else ``randomized``: a Gram spectrum costs
rows x cols x side flops (hours on a 70B model on CPU), see ``benchmarks/README.md`` for measured costs.
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
from streamscope.optionspec import opt

if TYPE_CHECKING:
    import torch

    from streamscope.io.tensor import Block, TensorInfo

METHODS = ("auto", "exact", "gram", "randomized", "off")
GRAM_MAX_SIDE = 2048
#: Values per float64 copy when a CPU block goes into a float64 Gram matrix (8 MB; the whole block's copy was
#: 94 MB for a 30522 x 384 float32 embedding).
GRAM_CHUNK_ELEMS = 1 << 20
#: Why the randomized method gives no alpha. Fitted to the top 32 eigenvalues alone, alpha was off by 1.0 on
#: a 4096 x 4096 matrix whose fitted tail holds 1462 eigenvalues (benchmarks/README.md): the tail that
#: WeightWatcher fits reaches far below any top-k.
ALPHA_NOTE = "alpha needs the full spectrum: --spectral gram computes it (cost: benchmarks/README.md)"
EPS32 = float(np.finfo(np.float32).eps)
#: Values per float32 block of the final Rayleigh-Ritz product from the bfloat16 copy: 4 MB stays in cache
#: between its conversion and its product, faster than larger blocks (benchmarks/README.md).
EXACT_BLOCK_ELEMS = 1 << 20


#: Unit roundoff (half the spacing of values just above 1) of the stored dtypes, and the name used in notes.
UNIT_ROUNDOFF = {"F64": (2.0**-53, "fp64"), "F32": (2.0**-24, "fp32"), "F16": (2.0**-11, "fp16"), "BF16": (2.0**-8, "bf16"),
                 "F8_E4M3": (2.0**-4, "fp8 e4m3"), "F8_E5M2": (2.0**-3, "fp8 e5m2")}  # fmt: skip


def unit_roundoff(dtype: str) -> tuple[float, str] | None:
    """``(u, name)`` of a stored dtype; GGUF's b-bit block formats (``Q8_0``, ``Q4_K``, ``IQ4_XS``...) round to
    about half a step of ``absmax / 2^(b-1)``, so u ~ 2^-b of the block's largest value. None for integers."""
    if dtype in UNIT_ROUNDOFF:
        return UNIT_ROUNDOFF[dtype]
    digits = dtype.lstrip("I").removeprefix("Q")[:1] if dtype.lstrip("I").startswith("Q") else ""
    return (2.0 ** -int(digits), dtype) if digits.isdigit() else None


def noise_floor(frob: float, rows: int, cols: int, u: float) -> float:
    """The size of the singular values that rounding to a dtype of unit roundoff ``u`` adds to a matrix.

    Rounding moves each weight by up to ``u |w_ij|``: a perturbation E with ``||E||_F <= u ||W||_F`` whose
    entries are, for trained weights, nearly independent. Such a noise matrix spreads its energy over all
    ``min(m, n)`` singular values, each about ``||E||_F / sqrt(min(m, n))`` (the largest about twice that, by
    the Marchenko-Pastur edge), and by Weyl's inequality every singular value of W moves by up to ``||E||_2``.
    So ``u ||W||_F / sqrt(min(m, n))`` (taking the bound u, not the RMS u/sqrt(3), against that factor 2) is
    the scale below which a singular value of the stored matrix tells nothing about the weights before
    rounding: two roundings of one model (bf16 safetensors and its GGUF) give different sigma_min there.
    """
    return u * frob / math.sqrt(min(rows, cols)) if min(rows, cols) > 0 else 0.0


@dataclass(frozen=True)
class SpectralOptions:
    """The spectrum's method and the randomized method's knobs. The top ``krylov_converge`` values are reported
    converged; the rest up to ``rank`` are reported as lower bounds."""

    spectral: str = opt("auto", f"{', '.join(METHODS)}; a method other than off adds the spectral analysis.",
                        metavar="METHOD", shown="auto when spectral runs, else off")  # fmt: skip
    rank: int = opt(32, "Top singular values reported.", metavar="N")
    krylov_block: int = opt(16, "Randomized method: columns added per Krylov step.", metavar="N", advanced=True)
    krylov_depth: int = opt(12, "Randomized method: most Krylov steps.", metavar="N", advanced=True)
    krylov_tol: float = opt(1e-3, "Randomized method: stop when the top values change less than this (relative).", metavar="X", advanced=True)
    krylov_converge: int = opt(10, "Randomized method: how many top values must converge.", metavar="N", advanced=True)
    seed: int = opt(0, "Seed of the randomized method's sketch.", metavar="N", advanced=True)

    def __post_init__(self) -> None:
        if self.spectral not in METHODS:
            raise OptionError(f"--spectral must be one of {', '.join(METHODS)}; got {self.spectral!r}")
        if not 1 <= int(self.rank) <= 4096:
            raise OptionError(f"--rank must be between 1 and 4096; got {self.rank}")
        if min(self.krylov_block, self.krylov_depth, self.krylov_converge) < 1 or not self.krylov_tol > 0:
            raise OptionError("--krylov-block, --krylov-depth and --krylov-converge must be >= 1 and --krylov-tol > 0")

    @property
    def krylov_columns(self) -> int:
        return max(self.krylov_block * self.krylov_depth, self.rank + self.krylov_block)


def method_bytes(method: str, rows: int, cols: int, columns: int = 192, block_elems: int = 0) -> int:
    """Memory a method holds beyond the block buffers, in bytes.

    exact: the gathered matrix in float64 and LAPACK's copy of it, plus the small side squared for its workspace;
    gram: the Gram matrix and ``eigvalsh``'s copy (float64, float32 above ``GRAM_MAX_SIDE``), plus a float64
    copy of up to ``GRAM_CHUNK_ELEMS`` values (of a block, never more than the matrix);
    randomized: the Krylov basis (small side x ``columns``, float32, twice) and the final product (large
    side x ``columns``, float32 and its float64 copy). The bfloat16 copy of the matrix comes on top, when it fits.
    """
    small, large = min(rows, cols), max(rows, cols)
    if method == "exact":
        return 2 * rows * cols * 8 + 3 * small * small * 8
    if method == "gram":
        return 2 * small * small * (8 if small <= GRAM_MAX_SIDE else 4) + min(block_elems, GRAM_CHUNK_ELEMS, rows * cols) * 8
    if method == "randomized":
        return 2 * small * columns * 4 + large * columns * 12
    return 0


def choose_method(rows: int, cols: int, method: str, available: int, columns: int = 192,
                  block_elems: int = 0) -> tuple[str, str | None]:  # fmt: skip
    """The method to run and, when it is not the one asked for or ``auto``'s usual pick, why.

    ``available`` is the memory the budget leaves to analyses (bytes).
    """
    small = min(rows, cols)
    if method == "off":
        return "off", None
    if method == "auto":
        wanted = "gram" if small <= GRAM_MAX_SIDE else "randomized"
    else:
        wanted = method
    order = ("exact", "gram", "randomized")
    for candidate in order[order.index(wanted):]:
        need = method_bytes(candidate, rows, cols, columns, block_elems)
        if need <= available:
            if candidate == wanted:
                return candidate, None
            first = method_bytes(wanted, rows, cols, columns, block_elems)
            return candidate, (f"{wanted} needs {first / 2**20:.0f} MiB, over the {available / 2**20:.0f} MiB the memory "
                               f"budget leaves to analyses; used {candidate}")  # fmt: skip
    need = method_bytes("randomized", rows, cols, columns, block_elems)
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
            self.method, self.note = choose_method(self.rows, self.cols, options.spectral, available,
                                                   options.krylov_columns, block_elems)  # fmt: skip
        self.dense: list[torch.Tensor] = []
        self.gram: torch.Tensor | None = None
        self.low: torch.Tensor | None = None  # the matrix as bfloat16, for the Krylov products
        self.low_exact = info.dtype == "BF16"  # the bfloat16 copy is the matrix itself
        import torch

        self.gram_dtype = torch.float64 if min(self.rows, self.cols) <= GRAM_MAX_SIDE else torch.float32
        # Small float64 Gram matrices on CPU go through numpy's BLAS and LAPACK, faster than torch's for both
        # the product and eigvalsh at these sizes (benchmarks/README.md).
        self.numpy_gram = self.gram_dtype == torch.float64
        left = available - method_bytes(self.method, self.rows, self.cols, options.krylov_columns, block_elems)
        # A wide matrix's Gram W @ W.T needs every row at once: a float64 copy kept during the pass when it fits
        # (one product at the end), else one more pass over column slabs.
        self.wide_copy: np.ndarray | None = None
        self.wide_fits = self.method == "gram" and self.numpy_gram and self.rows < self.cols and self.rows * self.cols * 8 <= left
        if self.method == "randomized" and self.rows * self.cols * 2 <= left:
            self.low = torch.empty(self.rows, self.cols, dtype=torch.bfloat16)
        self.sketch: torch.Tensor | None = None  # the first Krylov product, made during the pass
        self.omega: torch.Tensor | None = None
        if self.low is not None:
            from streamscope.kernels.linalg import krylov_start

            block = max(1, min(options.krylov_block, self.rows, self.cols))
            self.omega = krylov_start(max(self.rows, self.cols), block, options.seed).to(torch.bfloat16)
            self.sketch = torch.zeros(min(self.rows, self.cols), block, dtype=torch.float32)


def start(ctx, options: SpectralOptions) -> SpectralState:
    import torch

    state = SpectralState(ctx.info, options, ctx.memory.analysis_bytes, ctx.memory.block_elems)
    # Buffers reused across tensors: fresh pages fault slowly, a visible share of a small Gram matrix's time
    # (benchmarks/README.md).
    buffer = ctx.buffer
    if state.low is not None:
        state.low = buffer("spectral_low", state.rows * state.cols, torch.bfloat16).view(state.rows, state.cols)
    if state.method == "gram" and state.cols <= state.rows:
        state.gram = buffer("spectral_gram", state.cols * state.cols, state.gram_dtype).view(state.cols, state.cols).zero_()
    if state.wide_fits and ctx.device.type == "cpu":
        state.wide_copy = buffer("spectral_wide", state.rows * state.cols, torch.float64).view(state.rows, state.cols).numpy()
    return state


def update(state: SpectralState, x: torch.Tensor | None, block: Block, scratch, stored: torch.Tensor | None = None) -> None:
    """Fold a block in; ``x`` is None when ``float_blocks`` said the bfloat16 copy alone is wanted."""
    if state.method == "exact":
        import torch

        state.dense.append(x.detach().to("cpu", torch.float64, copy=True))
    elif state.low is not None:
        import torch

        r0, r1 = block.row_start, block.row_stop
        rows = state.low[r0:r1]
        if stored is not None and stored.dtype == torch.bfloat16:  # a plain copy: float32 -> bfloat16 is 10x slower
            rows.view(-1).copy_(stored)
        else:
            rows.copy_(x)
        if state.rows <= state.cols:  # the Krylov space on the row side: W @ Omega, block by block
            state.sketch[r0:r1] = (rows @ state.omega).float()
        else:  # on the column side: W.T @ Omega, as (Omega.T @ W).T (the faster bf16 GEMM)
            state.sketch += (state.omega[r0:r1].T @ rows).T.float()
    elif state.wide_copy is not None:
        state.wide_copy[block.row_start : block.row_stop] = x.numpy()
    elif state.gram is not None:
        import torch

        if state.numpy_gram and x.device.type == "cpu":
            g = state.gram.numpy()
            step = max(1, GRAM_CHUNK_ELEMS // max(x.shape[1], 1))  # float64 copies of a few rows at a time, not the block
            with np.errstate(over="ignore", invalid="ignore"):  # extreme values: finish() reports the tensor's Inf/NaN
                for r in range(0, x.shape[0], step):
                    b = x[r : r + step].numpy().astype(np.float64)
                    g += b.T @ b  # (cols, cols) += rows.T @ rows
            return
        b = x.to(state.gram_dtype)
        state.gram = state.gram.to(b.device)
        state.gram.addmm_(b.T, b)


def finish(state: SpectralState, ctx) -> dict | None:
    if not state.active:
        return None
    import torch

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
        sv = np.linalg.svd(torch.cat(state.dense).reshape(state.rows, state.cols).numpy(), compute_uv=False)
        state.dense.clear()
        iterations = None
    elif state.method == "gram":
        if state.gram is not None:
            g = state.gram
        elif state.wide_copy is not None:  # W @ W.T in one product (numpy takes BLAS's syrk for it)
            g = torch.from_numpy(state.wide_copy @ state.wide_copy.T)
            state.wide_copy = None
        else:
            g = _row_gram(ctx, state.rows, state.gram_dtype)
        if g.device.type == "cpu":
            ev = np.linalg.eigvalsh(g.numpy())[::-1].astype(np.float64).clip(min=0)
        else:
            ev = torch.linalg.eigvalsh(g).flip(0).clamp_min(0).cpu().double().numpy()
        sv = np.sqrt(ev)
        # eigenvalues carry an absolute error of about eps * ||G|| = eps * sigma_max^2
        eps = float(torch.finfo(state.gram_dtype).eps)
        resolution = math.sqrt(eps * max(state.rows, state.cols)) * float(sv[0]) if sv.size else 0.0
        iterations = None
    else:
        sv, iterations = _krylov(state, ctx, k)
    full = state.method in ("exact", "gram")
    smax = float(sv[0]) if sv.size else 0.0
    out = {
        "method": state.method,
        "max_singular_value": smax,
        "stable_rank": _stable_rank(frob2, smax, sv if state.method in ("exact", "gram") else None),
        "total_rank": total_rank,
        "top_singular_values": [float(v) for v in sv[: k if full else min(k, state.options.krylov_converge)]],
        "log_spectral_norm": 2 * math.log10(smax) if smax > 0 else float("nan"),
        "N": max(state.rows, state.cols),  # WeightWatcher's names: the larger and the smaller side
        "M": min(state.rows, state.cols),
    }
    out["stable_rank_utilization"] = out["stable_rank"] / total_rank if total_rank else 0.0
    if state.note:
        out["method_requested"], out["method_note"] = state.options.spectral, state.note
    if full:
        out.update(_full_spectrum_fields(sv, resolution, math.sqrt(frob2), state.rows, state.cols, ctx.info.dtype,
                                         out["log_spectral_norm"]))  # fmt: skip
    else:
        kth = float(sv[-1]) if sv.size else 0.0
        out["singular_value_lower_bounds"] = [float(v) for v in sv[len(out["top_singular_values"]) :]]
        out.update(min_singular_value=None, condition_number=None, singular_value_ratio=None, approximate_rank=None,
                   alpha=None, alpha_weighted=None, alpha_note=ALPHA_NOTE, warning=None, iterations=iterations,
                   effective_rank=None if kth > 0.01 * smax else int((sv > 0.01 * smax).sum()),  # known only if the top k reach below 1%
                   effective_rank_lower_bound=int((sv > 0.01 * smax).sum()))  # fmt: skip
    ctx.arrays["singular_values"] = np.asarray(sv, dtype=np.float64)
    return out


def _full_spectrum_fields(sv: np.ndarray, resolution: float, frob: float, rows: int, cols: int, dtype: str,
                          log_spectral_norm: float) -> dict:  # fmt: skip
    """The fields only a full spectrum gives: sigma_min and the condition number (a lower bound below the
    method's resolution or the stored dtype's rounding noise), ranks, alpha and WeightWatcher's metrics."""
    from streamscope.analyses import weightwatcher
    from streamscope.kernels.powerlaw import fit_alpha

    smax = float(sv[0]) if sv.size else 0.0
    smin = float(sv[-1]) if sv.size else 0.0
    rounding = unit_roundoff(dtype)
    floor = noise_floor(frob, rows, cols, rounding[0]) if rounding else 0.0
    limit = max(resolution, floor)
    bound = limit > 0 and smin < limit
    out = {"min_singular_value": smin, "condition_number": smax / max(smin, limit) if (smin > 0 or bound) else math.inf,
           "condition_number_is_lower_bound": bool(bound), "condition_number_resolved": not (floor > 0 and smin < floor)}  # fmt: skip
    if rounding:
        out["noise_floor"] = floor
    if not out["condition_number_resolved"]:
        out["condition_number_note"] = (f"not resolved at {rounding[1]}: sigma_min {smin:.3g} is below the rounding "
                                        f"noise {floor:.3g} of the stored dtype; kappa >= {out['condition_number']:.3g}")  # fmt: skip
    out["singular_value_ratio"] = smin / smax if smax else 0.0
    out["effective_rank"] = int((sv > 0.01 * smax).sum())
    out["approximate_rank"] = int((sv > smax * max(rows, cols) * EPS32).sum())
    if resolution:
        out["resolution"] = resolution
    fit = fit_alpha(sv**2)
    out["alpha"] = fit["alpha"]
    out["alpha_weighted"] = fit["alpha"] * log_spectral_norm if fit["tail_size"] else float("nan")
    out["alpha_xmin"], out["alpha_ks_distance"], out["alpha_tail_size"] = fit["xmin"], fit["ks_distance"], fit["tail_size"]
    out["warning"] = weightwatcher.warning(fit["alpha"])
    out.update(weightwatcher.layer_metrics(sv, fit["alpha"]))
    return out


def _stable_rank(frob2: float, smax: float, full: np.ndarray | None) -> float:
    """``||W||_F^2 / sigma_max^2``; from the whole spectrum when there is one (its squares could underflow)."""
    if smax <= 0 or not math.isfinite(smax):
        return 0.0 if smax == 0 else float("nan")
    if full is not None:
        return float(np.sum(np.square(full / smax)))
    return frob2 / (smax * smax) if smax * smax > 0 else float("nan")


def _krylov(state: SpectralState, ctx, k: int) -> tuple[np.ndarray, int]:
    """Top-``k`` singular values by block Krylov: products on the bfloat16 copy when one was kept, else
    one pass over the (page-cached) blocks per product; the final product in float32."""
    from streamscope.kernels.linalg import StreamedOperator, svd_block_krylov

    o = state.options
    shape = (state.rows, state.cols)
    streamed = StreamedOperator.from_blocks(ctx.row_blocks, shape)
    if state.low is None:
        op = exact = streamed
    else:
        op = StreamedOperator.from_matrix(state.low)
        rows = _float_rows(state.low, min(ctx.memory.block_elems, EXACT_BLOCK_ELEMS))
        exact = StreamedOperator.from_blocks(rows, shape) if state.low_exact else streamed
    values, depth = svd_block_krylov(op, k, block=o.krylov_block, max_depth=o.krylov_depth, tol=o.krylov_tol,
                                     seed=o.seed, converge_k=o.krylov_converge, exact=exact, sketch=state.sketch)  # fmt: skip
    state.low = state.sketch = state.omega = None
    return values.numpy(), depth


def _float_rows(low: torch.Tensor, block_elems: int):
    """Row blocks of a bfloat16 matrix as float32, each at most ``block_elems`` values."""
    import torch

    step = max(1, block_elems // max(low.shape[1], 1))
    buf = torch.empty(min(step, low.shape[0]), low.shape[1], dtype=torch.float32)

    def blocks():
        for r0 in range(0, low.shape[0], step):
            r1 = min(low.shape[0], r0 + step)
            out = buf[: r1 - r0]
            out.copy_(low[r0:r1])
            yield r0, r1, out

    return blocks


def _row_gram(ctx, rows: int, dtype) -> torch.Tensor:
    """``W @ W.T`` (rows x rows) for a wide matrix, accumulated over column slabs in one more pass."""
    import torch

    g = torch.zeros(rows, rows, dtype=dtype, device=ctx.device)
    for slab in ctx.column_slabs():
        b = slab.to(ctx.device, dtype)  # (rows, slab cols)
        g.addmm_(b, b.T)
    return g


ANALYSIS = Analysis(
    name="spectral",
    kind="block",
    help="singular values (exact, Gram or randomized), condition number, stable/effective rank, power-law alpha",
    options=SpectralOptions,
    writes=("singular_values",),
    histogram=False,
    stored=True,
    float_blocks=lambda state: not (state.low is not None and state.low_exact),
    start=start,
    update=update,
    finish=finish,
    compute_bound=True,
)
