"""Quantization risk of one tensor: IQR outliers, INT8 simulation with the WeightScope fields, and the
blockwise schemes (per-channel INT8, group-128 INT4 symmetric and asymmetric, FP8 E4M3), from streamed blocks.

INT4 groups are 128 consecutive values along a row; where 128 does not divide the row length the last group of
each row is shorter (``group_size`` and ``last_group_size`` in the output say which), as GGUF's and GPTQ-style
packers group such rows: a 576-long row is four groups of 128 and one of 64, never a single group of 576.

Per-channel and group schemes are folded in block by block during the tensor's one pass (on CPU by the native
kernel, which takes bfloat16 blocks as stored and widens them a row at a time). Per-tensor schemes
need the tensor's absmax first: for bf16/fp16/8-bit tensors they are computed exactly from the bit-pattern
histogram after the pass (no second read); for float32 and wider from the tensor itself when it fits in one
block, else from a second pass over its (page-cached) bytes.
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
    from streamscope.kernels.blockstats import TensorAccumulator

#: Every scheme the quantization kernel simulates (``kernels.quant.SCHEMES``; a test keeps the two equal).
SCHEMES = ("int8", "int8_channel", "int4_g128", "int4_g128_asym", "fp8_e4m3")
#: The INT4 group length (``kernels.quant.GROUP``).
GROUP = 128


@dataclass(frozen=True)
class QuantOptions:
    """The schemes simulated besides the per-tensor INT8 of the WeightScope fields."""

    quant_schemes: tuple[str, ...] = opt(SCHEMES, "Quantization schemes simulated, comma-separated.", metavar="SCHEMES")

    def __post_init__(self) -> None:
        schemes = self.quant_schemes
        if isinstance(schemes, str):
            schemes = tuple(q.strip() for q in schemes.split(",") if q.strip())
        object.__setattr__(self, "quant_schemes", tuple(schemes))
        bad = [q for q in self.quant_schemes if q not in SCHEMES]
        if bad:
            raise OptionError(f"--quant-schemes: unknown scheme {bad[0]!r}; choose from {', '.join(SCHEMES)}")


class QuantState:
    def __init__(self, info: TensorInfo, options: QuantOptions, native: bool = False):
        from streamscope.kernels.quant import ErrorSums

        self.schemes = options.quant_schemes
        self.matrix = info.is_matrix and info.numel > 0
        self.sums = {s: ErrorSums() for s in self.schemes}
        self.native = native
        # bfloat16 blocks go to the kernel as stored: it widens them a row at a time, and the statistics pass
        # need not write the block as float32 for this analysis (faster, the same sums: benchmarks/README.md)
        self.from_stored = native and info.dtype == "BF16" and self.matrix


def start(ctx, options: QuantOptions) -> QuantState:
    from streamscope.kernels import native

    use_native = ctx.native and ctx.device.type == "cpu" and native.available()
    return QuantState(ctx.info, options, use_native)


def update(state: QuantState, x: torch.Tensor | None, block: Block, scratch, stored: torch.Tensor | None = None) -> None:
    """Fold a (rows, cols) float block into the per-channel and group schemes; ``x`` is None when the block
    goes to the kernel as stored (``from_stored``)."""
    if not state.matrix:
        return
    import torch

    from streamscope.kernels.quant import block_schemes, block_schemes_native

    if state.from_stored:
        rows = block.row_stop - block.row_start
        patterns = stored.view(torch.int16).view(rows, -1)
        if block_schemes_native(patterns, state.schemes, state.sums):
            return
        x = patterns.view(torch.bfloat16).float() if x is None else x  # NaN or Inf inside: the torch path below
    elif state.native and x.dtype == torch.float32 and block_schemes_native(x.contiguous(), state.schemes, state.sums):
        return
    if not (x.dtype == torch.float32 and math.isfinite(float(x.sum()))):
        # float64 working precision, or NaN/Inf present: simulate on a finite float32 copy
        x = torch.nan_to_num(x.to(torch.float32), nan=0.0, posinf=0.0, neginf=0.0)
    n = x.numel()
    block_schemes(x, state.schemes, state.sums, scratch("quant_q", n), scratch("quant_err", n), scratch("quant_tmp", n))


def finish(state: QuantState, ctx) -> dict:
    """The WeightScope fields (INT8 per-tensor + IQR outliers) and ``schemes`` with every simulated scheme."""
    from streamscope.kernels import patterns
    from streamscope.kernels.quant import ErrorSums, per_tensor_from_histogram, per_tensor_from_values

    acc = ctx.acc
    s = acc.summary()
    absmax = max(abs(s["min"]), abs(s["max"])) if s["finite"] else float("nan")
    per_tensor = [x for x in ("int8", "fp8_e4m3") if x in state.schemes or x == "int8"]
    sums: dict[str, ErrorSums] = {}
    if acc.exact:
        values = patterns.pattern_values(acc.kind)
        for scheme in per_tensor:
            sums[scheme] = per_tensor_from_histogram(values, acc.hist, scheme, absmax)
    elif acc.kept is not None:
        for scheme in per_tensor:
            sums[scheme] = per_tensor_from_values(acc.kept, scheme, absmax)
    else:  # second pass over the tensor's bytes, now that the absmax is known
        sums = {scheme: ErrorSums() for scheme in per_tensor}
        for _, _, x in ctx.row_blocks():
            for scheme in per_tensor:
                per_tensor_from_values(x, scheme, absmax, sums[scheme])
    int8 = sums["int8"].result()
    out = {
        "bits": 8,
        "abs_max": absmax,
        "quantization_scale": absmax / 127 if math.isfinite(absmax) else float("nan"),
        "quantization_mse": int8["mse"],
        "quantization_mae": int8["mae"],
        "cosine_similarity": int8["cosine_similarity"],
        "sqnr_db": int8["sqnr_db"],
        "dynamic_range": absmax / (s["sum_abs"] / s["finite"]) if s["finite"] and s["sum_abs"] else float("nan"),
        **iqr_outliers(acc),
    }
    schemes = {}
    for scheme in state.schemes:
        if scheme in sums:
            schemes[scheme] = sums[scheme].result()
        elif state.matrix:
            schemes[scheme] = state.sums[scheme].result()
    if state.matrix and ("int4_g128" in state.schemes or "int4_g128_asym" in state.schemes):
        # groups of 128 along each row, the last one shorter where 128 does not divide the row (never per row)
        cols = acc.info.cols
        schemes["group_size"] = min(GROUP, cols)
        schemes["last_group_size"] = cols % GROUP or min(GROUP, cols)
    out["schemes"] = schemes
    return out


def iqr_outliers(acc: TensorAccumulator) -> dict:
    """Tukey's fences: outliers beyond 1.5 IQR of the quartiles, extreme outliers beyond 3 IQR.

    Exact for exact-pattern dtypes and for tensors kept in memory. For float32 streamed in several blocks the
    quartiles come from truncated keys; a key whose interval straddles a fence is counted by its midpoint, and
    ``outlier_count_uncertainty`` bounds the error of each count.
    """
    import torch

    (q1, q3), exact = acc.quantiles([0.25, 0.75])
    iqr = q3 - q1
    fences = {"outlier": (q1 - 1.5 * iqr, q3 + 1.5 * iqr), "extreme_outlier": (q1 - 3 * iqr, q3 + 3 * iqr)}
    n = acc.summary()["finite"]
    out = {"q1": float(q1), "q3": float(q3)}
    uncertainty = 0
    for key, (lo, hi) in fences.items():
        if acc.exact or acc.kept is None:
            count, unsure = _count_outside_hist(acc, lo, hi)
            uncertainty = max(uncertainty, unsure)
        else:
            v = acc.kept.reshape(-1).double()
            v = v[torch.isfinite(v)]
            count = int(((v < lo) | (v > hi)).sum())
        out[f"{key}_count"] = count
        out[f"{key}_percentage"] = 100.0 * count / n if n else 0.0
    out["outlier_count_uncertainty"] = uncertainty
    out["outliers_exact"] = exact and uncertainty == 0
    return out


def _count_outside_hist(acc: TensorAccumulator, lo: float, hi: float) -> tuple[int, int]:
    from streamscope.kernels import patterns

    v = patterns.pattern_values(acc.kind)
    keep = (acc.hist > 0) & np.isfinite(v)
    if acc.exact:
        c = acc.hist[keep]
        x = v[keep]
        return int(c[(x < lo) | (x > hi)].sum()), 0
    up = patterns.truncated_upper()
    a, b = np.minimum(v, up)[keep], np.maximum(v, up)[keep]
    c = acc.hist[keep]
    mid = (a + b) / 2
    straddle = ((a < lo) & (b > lo)) | ((a < hi) & (b > hi))
    return int(c[(mid < lo) | (mid > hi)].sum()), int(c[straddle].sum())


ANALYSIS = Analysis(
    name="quantization",
    kind="block",
    aliases=("quant",),
    help="INT8 simulation, IQR outliers, and per-channel INT8, INT4 g128 (sym/asym), FP8 E4M3 errors",
    options=QuantOptions,
    stored=True,
    float_blocks=lambda state: state.matrix and not state.from_stored,
    start=start,
    update=update,
    finish=finish,
    compute_bound=True,
)
