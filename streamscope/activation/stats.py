"""Mergeable statistics of activations, fed one module call (a batch of samples) at a time.

- ``Magnitude``: top-1/2/3, median, min and mean of |x| (the seed's magnitude statistics). ``reduce_dim``:
  ``None`` takes every value; ``-1`` first takes each token's largest |x| over channels, ``-2`` each
  channel's largest |x| over a sample's tokens (over the call's tokens where a module sees them flattened,
  as Mixtral's experts do), and the statistics run over those.
- ``Distribution``: a count per bfloat16 bit pattern of the values (x truncated toward zero to bf16, 65,536
  bins merged by addition), from which quantiles and histograms follow to bf16 precision (2^-8 relative).
- ``Outliers``: per sample (the collector splits batches), the tokens whose largest |x| exceeds
  ``threshold`` times the median |x| of that sample's output, their positions and the channels they occur in.
- ``ChannelStats``: per input channel of a Linear layer, the largest |x| (SmoothQuant's act scales) and the
  sum of squares with the token count (llama.cpp's importance matrix).
The median of ``Magnitude`` comes from the same pattern counts (|x| truncated to bf16).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

N_PATTERNS = 1 << 16


@lru_cache(maxsize=1)
def pattern_values() -> np.ndarray:
    """The float value of each bfloat16 bit pattern (NaN patterns NaN)."""
    bits = (np.arange(N_PATTERNS, dtype=np.uint32) << 16).view(np.float32)
    with np.errstate(invalid="ignore"):  # NaN patterns stay NaN
        return bits.astype(np.float64)


def pattern_counts(x, size: int = N_PATTERNS, chunk: int = 1 << 20) -> np.ndarray:
    """Counts of ``x``'s values per bfloat16 pattern (truncation of the float32 bits); ``size`` 32768 for
    magnitudes (the sign bit is 0: half the counters).

    ``chunk`` values at a time: the int32 keys of a whole call's activation were one copy of it (a 72B MLP's
    intermediate at 256 tokens: 30 MB)."""
    import torch

    flat = x.detach().reshape(-1)
    counts = np.zeros(size, np.int64)
    for i in range(0, flat.numel(), chunk):
        keys = flat[i : i + chunk].to(torch.float32).view(torch.int32) >> 16  # one int32 copy, masked in place
        counts += torch.bincount(keys.bitwise_and_(0xFFFF), minlength=size).numpy()
    return counts


def quantiles(counts: np.ndarray, qs) -> list[float]:
    """Quantiles of the values counted in ``counts`` (pattern counts), lower edge of the bf16 bin."""
    values = pattern_values()[: counts.size]
    ok = (counts > 0) & np.isfinite(values)
    v, c = values[ok], counts[ok]
    order = np.argsort(v, kind="stable")
    v, cum = v[order], np.cumsum(c[order])
    total = cum[-1] if cum.size else 0
    if not total:
        return [float("nan")] * len(qs)
    return [float(v[min(np.searchsorted(cum, q * (total - 1), side="right"), v.size - 1)]) for q in qs]


class Measured:
    """One module call's values measured by the native kernel (``kernels.native.act32``) in one read for each
    group asked for: ``magnitude`` (the |x| pattern counts, per token maxima, the sum and minimum of |x|) and
    ``channels`` (per channel maxima and sums of squares)."""

    def __init__(self, x):
        import torch

        self.rows2d = x.detach().reshape(-1, x.shape[-1]).to(torch.float32).contiguous()  # (tokens, channels)
        self.count = self.rows2d.numel()
        self.hist = self.rowmax = self.colmax = self.colsq = None

    def ensure(self, magnitude: bool, channels: bool) -> "Measured":
        from streamscope.kernels import native

        magnitude, channels = magnitude and self.hist is None, channels and self.colmax is None
        if not (magnitude or channels):
            return self
        rows, cols = self.rows2d.shape
        hist = rowmax = colmax = colsq = None
        if magnitude:
            hist, rowmax = np.zeros(N_PATTERNS // 2, np.int64), np.empty(rows, np.float32)
        if channels:
            colmax, colsq = np.zeros(cols, np.float32), np.zeros(cols, np.float64)
        total, low, _ = native.act32(self.rows2d.numpy().reshape(-1), rows, cols, hist, rowmax, colmax, colsq)
        if magnitude:
            self.hist, self.rowmax, self.sum_abs, self.min_abs = hist, rowmax, total, low
        if channels:
            self.colmax, self.colsq = colmax, colsq
        return self

    def largest3(self) -> list[float]:
        """The three largest |x|: they lie in the three tokens with the largest maxima."""
        import torch

        rowmax = torch.from_numpy(self.rowmax)
        best = torch.topk(rowmax, min(3, rowmax.numel())).indices
        return torch.topk(self.rows2d[best].abs().reshape(-1), min(3, self.count)).values.tolist()


_last: list = [None, None, None]  # the tensor last measured, its identity, its Measured


def measure(x, magnitude: bool = False, channels: bool = False) -> Measured | None:
    """``Measured`` of a CPU floating tensor, with the groups asked for, when the native kernel is built; else
    None (the torch path runs).

    The same values are measured once: q, k and v projections (gate and up) get one input, and the magnitude,
    act scales and importance matrix probes all read it; a module input is measured for both groups at once
    (the channel probes watch every Linear input). Values are known by address, shape, strides and version
    (a detached view shares its tensor's version counter); the tensor is held until the next one comes, so its
    address cannot be reused meanwhile."""
    from streamscope.kernels import native

    if not native.available() or x.device.type != "cpu" or not x.is_floating_point() or x.numel() == 0 or x.dim() == 0:
        return None
    key = (x.data_ptr(), tuple(x.shape), x.stride(), x.dtype, x._version)
    if _last[1] != key:
        _last[:] = [x, key, Measured(x)]
    return _last[2].ensure(magnitude, channels)


def forget() -> None:
    """Drop the tensor held by ``measure`` (a layer is done)."""
    _last[:] = [None, None, None]


class Magnitude:
    def __init__(self, reduce_dim: int | None = None, inputs: bool = False):
        """``inputs``: the values are module inputs, which the channel probes read too (measured together)."""
        self.reduce_dim, self.inputs = reduce_dim, inputs
        self.top: list[float] = []
        self.min = float("inf")
        self.sums: list[float] = []  # per call (per chunk); summed exactly, so any grouping of calls gives one result
        self.count = 0
        # |x|: patterns without the sign bit. Made at the first sample: the collector makes every module's
        # statistics at the start, and 256 KiB for each module and direction of every layer added up (26 MiB
        # resident for a 20-layer model before its first sample).
        self.counts: np.ndarray | None = None

    CHUNK = 1 << 20  # values whose |x| is taken at a time (a 5632 x 2048 weight whole: 92 MB of temporaries)

    def add(self, x) -> None:
        import torch

        x = x.detach()
        m = measure(x, magnitude=True, channels=self.inputs) if self.reduce_dim is None or (self.reduce_dim == -1 and x.dim() >= 2) else None
        if m is not None:
            if self.reduce_dim == -1:  # each token's largest |x|
                self._add_abs(torch.from_numpy(m.rowmax))
                return
            self.top = sorted(self.top + m.largest3(), reverse=True)[:3]
            self.min = min(self.min, m.min_abs)
            self.sums.append(m.sum_abs)
            self.count += m.count
            self.counts = m.hist.copy() if self.counts is None else self.counts + m.hist
            return
        if self.reduce_dim is not None and x.dim() >= 2:
            d = self.reduce_dim
            self._add_abs(torch.maximum(x.amax(dim=d), x.amin(dim=d).neg_()).to(torch.float32).reshape(-1))
            return
        flat = x.reshape(-1)
        for i in range(0, flat.numel(), self.CHUNK):
            self._add_abs(flat[i : i + self.CHUNK].abs().to(torch.float32))

    def _add_abs(self, flat) -> None:
        import torch

        if flat.numel() == 0:
            return
        self.top = sorted(self.top + largest3(flat), reverse=True)[:3]
        self.min = min(self.min, float(flat.min()))
        self.sums.append(float(flat.sum(dtype=torch.float64)))
        self.count += flat.numel()
        counts = pattern_counts(flat, N_PATTERNS // 2)
        if self.counts is None:
            self.counts = counts
        else:
            self.counts += counts

    def merge(self, other: "Magnitude") -> "Magnitude":
        """The statistics of both sets of values (a resumed run's saved layers, another worker's samples)."""
        self.top = sorted(self.top + other.top, reverse=True)[:3]
        self.min = min(self.min, other.min)
        self.sums += other.sums
        self.count += other.count
        self.counts = _add(self.counts, other.counts)
        return self

    def dump(self) -> dict:
        return {"top": np.array(self.top, np.float64), "min": np.float64(self.min), "sums": np.array(self.sums, np.float64),
                "count": np.int64(self.count), "counts": _or_empty(self.counts)}  # fmt: skip

    @classmethod
    def restore(cls, data: dict, reduce_dim: int | None = None) -> "Magnitude":
        m = cls(reduce_dim)
        m.top, m.min, m.sums, m.count = data["top"].tolist(), float(data["min"]), data["sums"].tolist(), int(data["count"])
        m.counts = _or_none(data["counts"])
        return m

    def result(self) -> dict:
        top = self.top + [float("nan")] * (3 - len(self.top))
        (median,) = quantiles(self.counts, [0.5]) if self.counts is not None else (float("nan"),)
        return {"top1": top[0], "top2": top[1], "top3": top[2], "median": median, "min": self.min if self.count else float("nan"),
                "mean_abs": math.fsum(self.sums) / self.count if self.count else float("nan"), "count": self.count}  # fmt: skip


ROW = 1024  # values per row in ``largest3``


def largest3(flat) -> list[float]:
    """The three largest values of a 1-D tensor (fewer if it holds fewer), descending.

    ``torch.topk`` is far slower than a max on a CPU (benchmarks/README.md): rows of 1024 values are reduced to
    their maxima first. The three largest values lie in the three rows with the largest maxima
    (a fourth row ahead of one of them would hold three larger values), so ``topk`` runs over those rows alone.
    """
    import torch

    n = flat.numel()
    rows = n // ROW
    if rows < 4:
        return torch.topk(flat, min(3, n)).values.tolist()
    head = flat[: rows * ROW].view(rows, ROW)
    best = torch.topk(head.amax(dim=1), 3).indices
    return torch.topk(torch.cat([head[best].reshape(-1), flat[rows * ROW :]]), 3).values.tolist()


class Distribution:
    BOX = (0.0, 0.01, 0.25, 0.5, 0.75, 0.99, 1.0)

    def __init__(self):
        self.counts: np.ndarray | None = None  # made at the first sample, as ``Magnitude.counts``

    def add(self, x) -> None:
        counts = pattern_counts(x)
        if self.counts is None:
            self.counts = counts
        else:
            self.counts += counts

    def merge(self, other: "Distribution") -> "Distribution":
        self.counts = _add(self.counts, other.counts)
        return self

    def dump(self) -> dict:
        return {"counts": _or_empty(self.counts)}

    @classmethod
    def restore(cls, data: dict) -> "Distribution":
        d = cls()
        d.counts = _or_none(data["counts"])
        return d

    def result(self, bins: int = 64) -> dict:
        counts = self.counts if self.counts is not None else np.zeros(N_PATTERNS, np.int64)
        q = quantiles(counts, self.BOX)
        out = dict(zip(("min", "p01", "q1", "median", "q3", "p99", "max"), q))
        lo, hi = q[0], q[-1]
        values = pattern_values()
        ok = (counts > 0) & np.isfinite(values)
        if np.isfinite(lo) and np.isfinite(hi) and hi > lo:
            hist, edges = np.histogram(values[ok], bins=bins, range=(lo, hi), weights=counts[ok])
            out["histogram"] = {"counts": hist.astype(int).tolist(), "edges": edges.tolist()}
        return out


def _add(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if b is None:
        return a
    return b.copy() if a is None else a + b


def _or_empty(a: np.ndarray | None) -> np.ndarray:
    return np.zeros(0, np.int64) if a is None else a


def _or_none(a: np.ndarray) -> np.ndarray | None:
    return None if a.size == 0 else a.astype(np.int64)


class Done:
    """A statistic reduced to its result once its module has seen every sample: its counters (256-512 KiB
    per module and direction, for every watched module of every layer) are freed."""

    def __init__(self, stat):
        self.count = getattr(stat, "count", None)
        self._result = stat.result()

    def add(self, x) -> None:
        raise RuntimeError("activation statistics: a module received samples after its layer was finished")

    def result(self) -> dict:
        return self._result


def _lower_median(flat) -> float:
    """``torch.median`` of a 1-D tensor (the lower middle value), by numpy's selection on the CPU: a partition
    instead of torch's sort, eight times faster for a 256 x 2048 call."""
    if flat.device.type != "cpu":
        return float(flat.median())
    k = (flat.numel() - 1) // 2
    return float(np.partition(flat.numpy(), k)[k])


class Outliers:
    """Outlier tokens of one module's output (the seed: |x| above ``threshold`` x the median |x|)."""

    MAX_POSITIONS = 1000  # positions kept per module; the count covers all

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.count = 0
        self.positions: list[tuple[int, int]] = []
        self.channels: dict[int, int] = {}
        self.max_ratio = 0.0

    def add(self, x, sample: int) -> None:
        import torch

        a = x.detach().abs().to(torch.float32)
        a = a.reshape(-1, a.shape[-1])  # (tokens, channels)
        median = _lower_median(a.reshape(-1))
        if median <= 0:
            median = _lower_median(a[a > 0]) if bool((a > 0).any()) else 0.0
        if median <= 0:
            return
        self.max_ratio = max(self.max_ratio, float(a.max()) / median)
        mask = a > self.threshold * median
        tokens = torch.nonzero(mask.any(dim=1)).reshape(-1).tolist()
        self.count += len(tokens)
        room = self.MAX_POSITIONS - len(self.positions)
        self.positions.extend((sample, t) for t in tokens[: max(room, 0)])
        for c in torch.nonzero(mask.any(dim=0)).reshape(-1).tolist():
            self.channels[c] = self.channels.get(c, 0) + int(mask[:, c].sum())

    def merge(self, other: "Outliers") -> "Outliers":
        """Both runs' outlier tokens; the positions kept are the first ``MAX_POSITIONS`` in sample order, as one
        run over all samples keeps them."""
        self.count += other.count
        self.positions = sorted(self.positions + other.positions)[: self.MAX_POSITIONS]
        for c, n in other.channels.items():
            self.channels[c] = self.channels.get(c, 0) + n
        self.max_ratio = max(self.max_ratio, other.max_ratio)
        return self

    def dump(self) -> dict:
        return {"threshold": np.float64(self.threshold), "count": np.int64(self.count), "positions": np.array(self.positions, np.int64).reshape(-1, 2),
                "channels": np.array(sorted(self.channels.items()), np.int64).reshape(-1, 2), "max_ratio": np.float64(self.max_ratio)}  # fmt: skip

    @classmethod
    def restore(cls, data: dict) -> "Outliers":
        o = cls(float(data["threshold"]))
        o.count, o.max_ratio = int(data["count"]), float(data["max_ratio"])
        o.positions = [tuple(p) for p in data["positions"].tolist()]
        o.channels = {int(c): int(n) for c, n in data["channels"].tolist()}
        return o

    def result(self) -> dict:
        return {"count": self.count, "positions": [list(p) for p in self.positions], "positions_truncated": self.count > len(self.positions),
                "channels": {str(c): n for c, n in sorted(self.channels.items(), key=lambda kv: (-kv[1], kv[0]))}, "max_ratio_to_median": self.max_ratio}  # fmt: skip


class ChannelStats:
    """Per input channel: max |x| and sum of x^2 over every token, and the token count."""

    CHUNK = 1 << 18  # values squared in float64 at a time (2 MiB)

    def __init__(self, absmax: bool = True, sum2: bool = True):
        self.want_max, self.want_sum2 = absmax, sum2  # act_scales needs only the maxima, imatrix only the sums
        self.absmax = None
        self.sum2 = None
        self.tokens = 0

    def add(self, x) -> None:
        import torch

        x = x.detach()
        m = measure(x, channels=True)
        if m is not None:
            if self.want_max:
                amax = torch.from_numpy(m.colmax)
                self.absmax = amax.clone() if self.absmax is None else torch.maximum(self.absmax, amax, out=self.absmax)
            if self.want_sum2:
                sq = torch.from_numpy(m.colsq)
                self.sum2 = sq.clone() if self.sum2 is None else self.sum2.add_(sq)
            self.tokens += m.rows2d.shape[0]
            return
        flat = x.reshape(-1, x.shape[-1])
        if self.want_max:
            amax = torch.maximum(flat.amax(dim=0), flat.amin(dim=0).neg_()).to(torch.float32)  # max |x|, no |x| copy
            self.absmax = amax if self.absmax is None else torch.maximum(self.absmax, amax, out=self.absmax)
        if self.want_sum2:
            sq = torch.zeros(flat.shape[1], dtype=torch.float64, device=flat.device)
            step = max(1, self.CHUNK // max(flat.shape[1], 1))
            for t0 in range(0, flat.shape[0], step):  # float64 copies of a few tokens at a time, not of the call
                sq += flat[t0 : t0 + step].to(torch.float64).square_().sum(dim=0)
            self.sum2 = sq if self.sum2 is None else self.sum2.add_(sq)
        self.tokens += flat.shape[0]

    def update(self, call) -> None:
        """A probe's call of a Linear: its input."""
        if call.x_in is not None and call.x_in.is_floating_point():
            self.add(call.x_in)

    def merge(self, other: "ChannelStats") -> "ChannelStats":
        """Both sets of tokens: maxima of the maxima, sums of the sums (in float64 until ``close``)."""
        import torch

        if other.absmax is not None:
            self.absmax = other.absmax.clone() if self.absmax is None else torch.maximum(self.absmax, other.absmax)
        if other.sum2 is not None:
            self.sum2 = other.sum2.clone() if self.sum2 is None else self.sum2 + other.sum2.to(self.sum2.dtype)
        self.tokens += other.tokens
        return self

    def dump(self) -> dict:
        out = {"tokens": np.int64(self.tokens)}
        for key in ("absmax", "sum2"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key).cpu().numpy()
        return out

    @classmethod
    def restore(cls, data: dict) -> "ChannelStats":
        import torch

        c = cls()
        c.tokens = int(data["tokens"])
        for key in ("absmax", "sum2"):
            if key in data:
                setattr(c, key, torch.from_numpy(np.array(data[key])))
        return c

    def close(self) -> None:
        """Every sample has passed: the sums as float32, as the imatrix file stores them (a third less to hold
        to the end: 0.95 MB per decoder layer of a 72B model becomes 0.63)."""
        import torch

        if self.sum2 is not None:
            self.sum2 = self.sum2.to(torch.float32)
