"""One-pass, mergeable statistics of a tensor streamed in blocks (chunk -> combine -> aggregate).

``BlockKernel.update`` is the chunk step: it folds one block into a ``TensorAccumulator``; ``merge`` is the
combine step (Chan et al.'s pairwise update for mean and M2); ``TensorAccumulator.summary`` aggregates.

Exactness: for bf16, fp16, 8-bit and 16-bit integer tensors every scalar statistic comes from the bit-pattern
histogram (see ``patterns``), in float64, exactly. For float32 and wider, mean and M2 are accumulated per block
in the working precision with a compensated two-pass mean, then combined in float64; float32 blocks on CPU go
through the native kernel instead (``native.stats32``: one pass, per-row sums in float64).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from streamscope.io.tensor import Block, TensorInfo
from streamscope.kernels import native, patterns

SPARSITY_THRESHOLDS = (0.0, 1e-6, 1e-4, 1e-2)
#: A row or column is dead when every |w| in it is below this.
DEAD_THRESHOLD = 1e-6
_BINCOUNT_CHUNK = 1 << 20  # numpy's bincount makes an intp copy of its input: keep that copy small


def working_dtype(info: TensorInfo) -> torch.dtype:
    """float64 where float32 would round the stored values (F64, 32- and 64-bit integers), else float32."""
    return torch.float64 if info.dtype in ("F64", "I32", "I64", "U32", "U64") else torch.float32


def pattern_kind(info: TensorInfo) -> str:
    return info.dtype if info.dtype in patterns.EXACT_PATTERNS else patterns.TRUNCATED


@dataclass
class TensorAccumulator:
    """Running statistics of one tensor."""

    info: TensorInfo
    kind: str
    hist: np.ndarray
    row_stats: bool = False
    row_norms: bool = False
    keep_block: bool = False
    # float accumulators, used for non-exact kinds
    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    sum_abs: float = 0.0
    nan: int = 0
    inf: int = 0
    zeros: int = 0
    below: dict[float, int] = field(default_factory=dict)
    row_absmax: np.ndarray | None = None  # (rows,)
    col_absmax: np.ndarray | None = None  # (cols,)
    row_sumsq: np.ndarray | None = None  # (rows,)
    kept: torch.Tensor | None = None  # the whole tensor when it fits in one block (exact quantiles)
    #: no histogram: only n, nan, inf and the sum of squares are kept (``BlockKernel._light``)
    light: bool = False
    sumsq: float = 0.0
    _summary: dict | None = None

    @classmethod
    def start(cls, info: TensorInfo, row_norms: bool = False, max_row_bytes: int = 1 << 62, row_maxima: bool = True,
              histogram: bool = True) -> "TensorAccumulator":  # fmt: skip
        """Accumulators for one tensor. Per-row and per-column arrays (8 bytes per row and column, three of them)
        are kept only for non-empty matrices whose arrays fit ``max_row_bytes``: a declared dimension alone
        never sizes an allocation. ``row_maxima``: whether the row and column |w| maxima are wanted.
        ``histogram=False``: no analysis reads the histogram or what comes from it; bfloat16 tensors then keep
        only the counts and the sum of squares (``summary`` gives n, nan, inf, finite and sumsq)."""
        kind = pattern_kind(info)
        light = not histogram and kind == "BF16" and not row_maxima
        size = 0 if light else patterns.EXACT_PATTERNS.get(kind, 65536)
        fits = info.is_matrix and info.numel > 0 and 3 * 8 * (info.rows + info.cols) <= max_row_bytes
        acc = cls(info, kind, np.zeros(size, np.int64), fits and row_maxima, row_norms and fits, light=light)
        acc.below = {t: 0 for t in SPARSITY_THRESHOLDS}
        if acc.row_stats:
            acc.row_absmax = np.zeros(info.rows, np.float64)
            acc.col_absmax = np.zeros(info.cols, np.float64)
        if acc.row_norms:
            acc.row_sumsq = np.zeros(info.rows, np.float64)
        return acc

    @property
    def exact(self) -> bool:
        return self.kind != patterns.TRUNCATED

    def summary(self) -> dict:
        """Scalars of the whole tensor: n, nan, inf, finite, zeros, mean, var, min, max, sum_abs, sumsq.

        Call once all blocks are in: the result is cached.
        """
        if self._summary is None:
            self._summary = self._summarize()
        return self._summary

    def _summarize(self) -> dict:
        if self.light:
            return {"n": self.n + self.nan + self.inf, "nan": self.nan, "inf": self.inf, "finite": self.n, "sumsq": self.sumsq}
        if self.exact:
            return patterns.summarize(self.kind, self.hist)
        finite = self.n
        return {
            "n": finite + self.nan + self.inf,
            "nan": self.nan,
            "inf": self.inf,
            "finite": finite,
            "zeros": self.zeros,
            "mean": self.mean if finite else float("nan"),
            "var": self.m2 / (finite - 1) if finite > 1 else float("nan"),
            "min": self.min if finite else float("nan"),
            "max": self.max if finite else float("nan"),
            "sum_abs": self.sum_abs,
            "sumsq": self.m2 + finite * self.mean * self.mean,  # x * x overflows to inf; x**2 would raise
        }

    def _histogram_kept(self) -> None:
        if self.light:
            raise RuntimeError("the statistics pass kept no histogram: an analysis that reads it must say histogram=True")

    def abs_below(self, threshold: float) -> int:
        self._histogram_kept()
        if self.exact:
            return patterns.count_abs_below(self.kind, self.hist, threshold)
        return self.below[threshold]

    def quantiles(self, qs, absolute: bool = False) -> tuple[np.ndarray, bool]:
        """Quantiles of values or |values| and whether they are exact."""
        self._histogram_kept()
        if self.exact or self.kept is None:
            return patterns.quantiles(self.kind, self.hist, qs, absolute), self.exact
        return patterns.exact_quantiles(self.kept, qs, absolute), True


class BlockKernel:
    """Reusable working buffers on one device, and the chunk step of the statistics."""

    def __init__(self, max_elems: int, device: torch.device | str = "cpu", use_native: bool = True):
        self.device = torch.device(device)
        self.use_native = use_native and self.device.type == "cpu" and native.available()
        self.max_elems = max_elems
        self._buffers: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    def buffer(self, key: str, n: int, dtype: torch.dtype) -> torch.Tensor:
        """A reused buffer of at least ``n`` elements (grown on demand, never shrunk)."""
        buf = self._buffers.get((key, dtype))
        if buf is None or buf.numel() < n:
            buf = torch.empty(max(n, 1), dtype=dtype, device=self.device)
            self._buffers[(key, dtype)] = buf
        return buf[:n]

    def work(self, n: int, dtype: torch.dtype) -> torch.Tensor:
        """The one scratch buffer of the statistics step, for values used and dropped in turn (histogram keys,
        |x|, centred values): one block-sized buffer instead of three (94 MB less for a 47 MB float32
        block)."""
        return self.buffer("work", n, dtype)

    def convert(self, raw: torch.Tensor, info: TensorInfo) -> torch.Tensor:
        """The block's values in the working dtype, in a reused buffer on the device."""
        x = self.buffer("x", raw.numel(), working_dtype(info))
        if self.device.type == "cpu":
            x.copy_(raw)
        else:
            staged = self.buffer("stage", raw.numel(), raw.dtype)
            staged.copy_(raw, non_blocking=True)
            x.copy_(staged)
        return x

    def update(self, acc: TensorAccumulator, raw: torch.Tensor, block: Block, values: bool = False) -> torch.Tensor | None:
        """Fold one block (``raw``: the stored dtype, host memory) into ``acc``.

        Returns the block converted to the working dtype when this step needed it or ``values`` asks for it
        (else None), so callers that want the converted block too do not convert it again.
        """
        info = acc.info
        rows = block.row_stop - block.row_start if acc.row_stats or acc.row_norms else 1
        if acc.light:
            self._light(acc, raw, block, rows)
            return self.convert(raw, info) if values else None
        x = None
        native_done = self.use_native and acc.kind in native.MASKS
        if native_done:
            x = self.buffer("x", raw.numel(), torch.float32) if values else None  # written by the same pass
            self._native(acc, raw, block, rows, x)
        elif self.use_native and raw.dtype == torch.float32 and not acc.exact:
            self._native32(acc, raw, block, rows)
            if acc.keep_block:
                acc.kept = raw.clone()
            return self.convert(raw, info) if values else None
        else:
            needs_values = not acc.exact or acc.row_stats or acc.row_norms  # exact-pattern vectors need only the keys
            x = self.convert(raw, info) if needs_values else None
            self._histogram(acc, raw, x)
            if acc.row_stats:
                a2 = torch.abs(x, out=self.work(x.numel(), x.dtype)).view(rows, info.cols)  # (rows, cols)
                acc.row_absmax[block.row_start : block.row_stop] = a2.amax(dim=1).double().cpu().numpy()
                np.maximum(acc.col_absmax, a2.amax(dim=0).double().cpu().numpy(), out=acc.col_absmax)
        if not acc.exact:
            self._moments(acc, x)
            if acc.keep_block:
                acc.kept = x.detach().to("cpu", copy=True)
        if acc.row_norms and not native_done:
            x = self.convert(raw, info) if x is None else x
            norms = torch.linalg.vector_norm(x.view(rows, info.cols), dim=1).double()  # (rows,)
            acc.row_sumsq[block.row_start : block.row_stop] = (norms * norms).cpu().numpy()
        return x

    def _native(self, acc: TensorAccumulator, raw: torch.Tensor, block: Block, rows: int, x: torch.Tensor | None) -> None:
        keys = raw.view(torch.int16).numpy().view(np.uint16) if raw.element_size() == 2 else raw.view(torch.uint8).numpy()
        rowmax = colmax = None
        if acc.row_stats:
            rowmax = np.empty(rows, keys.dtype)
            colmax = np.zeros(acc.info.cols, keys.dtype)
        rowsq = acc.row_sumsq[block.row_start : block.row_stop] if acc.row_norms else None
        vals = x.numpy() if x is not None else None
        native.scan_patterns(keys, rows, keys.size // rows, acc.kind, acc.hist, rowmax, colmax, rowsq, vals)
        if acc.row_stats:
            magnitude = np.abs(patterns.pattern_values(acc.kind))
            acc.row_absmax[block.row_start : block.row_stop] = magnitude[rowmax]
            np.maximum(acc.col_absmax, magnitude[colmax], out=acc.col_absmax)

    def _light(self, acc: TensorAccumulator, raw: torch.Tensor, block: Block, rows: int) -> None:
        """Counts and the sum of squares of a bfloat16 block, without the histogram (``native.light_bf16``, or
        torch where the native kernel is missing)."""
        rowsq = acc.row_sumsq[block.row_start : block.row_stop] if acc.row_norms else None
        if self.use_native:
            keys = raw.view(torch.int16).numpy().view(np.uint16)
            sumsq, nan, inf = native.light_bf16(keys, rows, keys.size // rows, rowsq)
        else:
            x = self.convert(raw, acc.info)
            finite = torch.isfinite(x)
            nan, inf = int(torch.isnan(x).sum()), int(torch.isinf(x).sum())
            if rowsq is not None:  # as the full torch path below computes them
                norms = torch.linalg.vector_norm(x.view(rows, -1), dim=1).double()
                rowsq[:] = (norms * norms).cpu().numpy()
            f = (x[finite] if nan or inf else x).double()
            sumsq = float(torch.dot(f, f)) if f.numel() else 0.0
        acc.nan, acc.inf, acc.sumsq = acc.nan + nan, acc.inf + inf, acc.sumsq + sumsq
        acc.n += raw.numel() - nan - inf

    def _native32(self, acc: TensorAccumulator, raw: torch.Tensor, block: Block, rows: int) -> None:
        """Every statistic of a float32 block in one native pass (``native.stats32``); the same results as the
        torch path below up to the rounding of its float32 sums (the kernel sums in float64)."""
        rowmax = np.empty(rows, np.float32) if acc.row_stats else None
        colmax = np.zeros(acc.info.cols, np.float32) if acc.row_stats else None
        rowsq = acc.row_sumsq[block.row_start : block.row_stop] if acc.row_norms else None
        values = raw.numpy()
        parts = native.stats32(values, rows, values.size // rows, acc.hist, SPARSITY_THRESHOLDS[1:], rowmax, colmax, rowsq)
        for n, nan, inf, zeros, b0, b1, b2, sum_abs, mean, m2, lo, hi in parts:
            acc.nan, acc.inf, acc.zeros = acc.nan + int(nan), acc.inf + int(inf), acc.zeros + int(zeros)
            acc.sum_abs += sum_abs
            for t, count in zip(SPARSITY_THRESHOLDS, (zeros, b0, b1, b2)):
                acc.below[t] += int(count)
            if n:
                merge(acc, int(n), mean, m2)
                acc.min, acc.max = min(acc.min, lo), max(acc.max, hi)
        if acc.row_stats:
            acc.row_absmax[block.row_start : block.row_stop] = rowmax
            np.maximum(acc.col_absmax, colmax, out=acc.col_absmax)

    def _histogram(self, acc: TensorAccumulator, raw: torch.Tensor, x: torch.Tensor | None) -> None:
        size = acc.hist.size
        if acc.exact and raw.element_size() == 1:
            keys = raw.view(torch.uint8)
        elif acc.exact:
            keys = raw.view(torch.int16)
        else:
            x32 = x if x.dtype == torch.float32 else self.buffer("x32", x.numel(), torch.float32).copy_(x)
            keys = self.work(x.numel(), torch.float32).view(torch.int32)
            torch.bitwise_right_shift(x32.view(torch.int32), 16, out=keys)
            keys.bitwise_and_(0xFFFF)
        if self.device.type == "cpu" and keys.device.type == "cpu":
            k = keys.numpy()
            if k.dtype == np.int16:
                k = k.view(np.uint16)
            for s in range(0, k.size, _BINCOUNT_CHUNK):
                acc.hist += np.bincount(k[s : s + _BINCOUNT_CHUNK], minlength=size)
        else:
            k = keys.to(self.device, non_blocking=True)
            if k.dtype != torch.int32:
                k32 = self.buffer("keys", k.numel(), torch.int32)
                k32.copy_(k)
                k = k32.bitwise_and_(size - 1)
            acc.hist += torch.bincount(k, minlength=size).cpu().numpy()

    def _centered(self, x: torch.Tensor, total: float, n: int) -> tuple[float, float]:
        """Mean (compensated two-pass) and M2 of a block; M2 is inf when the squares overflow even float64."""
        d = self.work(n, x.dtype)
        mean = total / n
        torch.sub(x, mean, out=d)
        mean += float(d.sum()) / n
        torch.sub(x, mean, out=d)
        return mean, float(torch.dot(d, d))

    def _moments(self, acc: TensorAccumulator, x: torch.Tensor) -> None:
        total = float(x.sum())
        if not math.isfinite(total):  # NaN or Inf present, or a float32 sum that overflowed
            bad_nan = int(torch.isnan(x).sum())
            bad_inf = int(torch.isinf(x).sum())
            acc.nan += bad_nan
            acc.inf += bad_inf
            if bad_nan or bad_inf:
                x = x[torch.isfinite(x)]
            total = float(x.sum(dtype=torch.float64))
        n = x.numel()
        if n == 0:
            return
        lo, hi = torch.aminmax(x)
        mean, m2 = self._centered(x, total, n)
        if not math.isfinite(m2) and x.dtype != torch.float64:  # values near the float32 limit: centre in float64
            mean, m2 = self._centered(x.double(), total, n)
        a = self.work(n, x.dtype)  # the centred values are no longer needed
        torch.abs(x, out=a)
        sum_abs = float(a.sum())
        acc.sum_abs += sum_abs if math.isfinite(sum_abs) else float(a.sum(dtype=torch.float64))
        acc.zeros += n - int(torch.count_nonzero(x))
        flags = self.buffer("flags", n, torch.bool)
        for t in SPARSITY_THRESHOLDS:
            if t == 0:
                acc.below[t] = acc.zeros
            else:
                torch.lt(a, t, out=flags)
                acc.below[t] += int(torch.count_nonzero(flags))
        merge(acc, n, mean, m2)
        acc.min = min(acc.min, float(lo))
        acc.max = max(acc.max, float(hi))


def merge(acc: TensorAccumulator, n: int, mean: float, m2: float) -> None:
    """Chan, Golub and LeVeque's pairwise update of (count, mean, M2)."""
    if acc.n == 0:  # the first block: nothing to merge (and inf * 0 would make NaN of an overflowed M2)
        acc.n, acc.mean, acc.m2 = n, mean, m2
        return
    total = acc.n + n
    delta = mean - acc.mean
    acc.mean += delta * n / total
    acc.m2 += m2 + delta * delta * acc.n * n / total
    acc.n = total
