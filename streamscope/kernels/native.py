"""ctypes front of the optional C block kernel (``_native.c``), split over threads.

``available()`` is False when the extension was not built (no C compiler at install time); callers then use
the numpy/torch path, which gives identical results (``--no-native`` asks for that path on purpose), except
that float32 sums there are rounded in float32 per block where ``stats32`` keeps float64.
"""

from __future__ import annotations

import ctypes
import os
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from functools import lru_cache

import numpy as np

#: ``ss_abi_version()`` of the C source this front expects; a library built from other source is not used.
ABI_VERSION = 2
#: Magnitude masks of the sign-magnitude pattern kinds the kernel handles.
MASKS = {"BF16": 0x7FFF, "F16": 0x7FFF, "F8_E4M3": 0x7F, "F8_E5M2": 0x7F}
_FLAT_ROW = 1 << 16  # vectors are cut into rows of this length (no row/column maxima wanted)


@lru_cache(maxsize=1)
def _lib():
    try:
        from streamscope.kernels import _native
    except ImportError:
        return None
    lib = ctypes.CDLL(_native.__file__)
    version = getattr(lib, "ss_abi_version", None)
    if version is None or version() != ABI_VERSION:
        import warnings

        warnings.warn(f"{_native.__file__} was built from other source than this streamscope; using the torch path "
                      "(rebuild it: python setup.py build_ext --inplace)", RuntimeWarning, stacklevel=2)  # fmt: skip
        return None
    i64, vp = ctypes.c_int64, ctypes.c_void_p
    for fn, mask in ((lib.ss_scan16, ctypes.c_uint16), (lib.ss_scan8, ctypes.c_uint8)):
        fn.argtypes = [vp, i64, i64, vp, vp, vp, mask, vp, vp, ctypes.c_int, vp]
        fn.restype = ctypes.c_int
    lib.ss_quant_rows.argtypes = [vp, i64, i64, i64, vp, vp, vp]
    lib.ss_quant_rows.restype = None
    lib.ss_quant_rows_bf16.argtypes = [vp, i64, i64, i64, vp, vp, vp, vp]
    lib.ss_quant_rows_bf16.restype = None
    lib.ss_light_bf16.argtypes = [vp, i64, i64, vp, vp]
    lib.ss_light_bf16.restype = None
    lib.ss_stats32.argtypes = [vp, i64, i64, vp, vp, vp, vp, vp, vp]
    lib.ss_stats32.restype = ctypes.c_int
    lib.ss_act32.argtypes = [vp, i64, i64, vp, vp, vp, vp, vp]
    lib.ss_act32.restype = ctypes.c_int
    return lib


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1)), thread_name_prefix="streamscope-native")


def available() -> bool:
    return _lib() is not None


_limit: int | None = None


def threads() -> int:
    return min(_pool()._max_workers, _limit or 1 << 30)


@contextmanager
def limit_threads(n: int):
    """Split each call over at most ``n`` threads while the block runs (jobs side by side take one each)."""
    global _limit
    before, _limit = _limit, max(1, int(n))
    try:
        yield
    finally:
        _limit = before


@lru_cache(maxsize=None)
def _values(kind: str) -> np.ndarray:
    from streamscope.kernels.patterns import pattern_values

    with np.errstate(invalid="ignore"):  # NaN patterns stay NaN
        return np.ascontiguousarray(pattern_values(kind), dtype=np.float32)


def scan_patterns(
    keys: np.ndarray,
    rows: int,
    cols: int,
    kind: str,
    hist: np.ndarray,
    rowmax: np.ndarray | None,
    colmax: np.ndarray | None,
    rowsq: np.ndarray | None = None,
    vals: np.ndarray | None = None,
) -> None:
    """Add ``keys`` (uint16 or uint8 patterns, ``rows*cols`` of them) to ``hist``; fill pattern maxima.

    ``rowmax`` (length ``rows``) receives each row's largest magnitude pattern; ``colmax`` (length ``cols``) is
    raised to each column's; ``rowsq`` (float64, length ``rows``) receives each row's sum of squares;
    ``vals`` (float32, ``rows*cols``) receives the values. All may be None (vectors need no row arrays).
    """
    lib = _lib()
    fn = lib.ss_scan16 if keys.dtype == np.uint16 else lib.ss_scan8
    mask = MASKS[kind]
    values = _values(kind)
    if rowmax is None and colmax is None and rowsq is None and rows == 1:
        full = keys.size // _FLAT_ROW
        cut = full * _FLAT_ROW
        parts = [(slice(0, cut), full, _FLAT_ROW)] if full else []
        if keys.size % _FLAT_ROW:
            parts.append((slice(cut, keys.size), 1, keys.size % _FLAT_ROW))
        for part, r, c in parts:
            _run(fn, keys[part], r, c, hist, None, None, None, mask, values, int(kind == "BF16"), None if vals is None else vals[part])
        return
    _run(fn, keys, rows, cols, hist, rowmax, colmax, rowsq, mask, values, int(kind == "BF16"), vals)


def light_bf16(keys: np.ndarray, rows: int, cols: int, rowsq: np.ndarray | None = None) -> tuple[float, int, int]:
    """Sum of squares of the finite values and the NaN and Inf counts of ``rows*cols`` bfloat16 patterns (uint16),
    in one read, rows split over threads; fills ``rowsq`` (float64, one per row) when given.

    The statistics pass of scans whose analyses read no histogram, faster than the pattern scan
    (benchmarks/README.md).
    """
    lib = _lib()
    keys = keys.reshape(-1)
    if rowsq is None and rows == 1 and cols > _FLAT_ROW:  # a long vector: rows of _FLAT_ROW, so threads can share it
        full = cols // _FLAT_ROW
        parts = [light_bf16(keys[: full * _FLAT_ROW], full, _FLAT_ROW)]
        if cols % _FLAT_ROW:
            parts.append(light_bf16(keys[full * _FLAT_ROW :], 1, cols % _FLAT_ROW))
        return sum(p[0] for p in parts), sum(p[1] for p in parts), sum(p[2] for p in parts)
    n_threads = min(threads(), rows)
    bounds = np.linspace(0, rows, n_threads + 1).astype(np.int64)
    outs = np.zeros((n_threads, 3), np.float64)

    def work(i: int) -> None:
        r0, r1 = int(bounds[i]), int(bounds[i + 1])
        rs = rowsq[r0:r1].ctypes.data if rowsq is not None else None
        lib.ss_light_bf16(keys[r0 * cols : r1 * cols].ctypes.data, r1 - r0, cols, rs, outs[i].ctypes.data)

    _on_threads(work, n_threads)
    total = outs.sum(axis=0)
    return float(total[0]), int(total[1]), int(total[2])


#: Order of ``stats32``' per-thread output.
STATS32_FIELDS = ("n", "nan", "inf", "zeros", "below0", "below1", "below2", "sum_abs", "mean", "m2", "min", "max")


def stats32(
    x: np.ndarray,
    rows: int,
    cols: int,
    hist: np.ndarray,
    thresholds: tuple[float, float, float],
    rowmax: np.ndarray | None = None,
    colmax: np.ndarray | None = None,
    rowsq: np.ndarray | None = None,
) -> np.ndarray:
    """Statistics of a float32 block (``rows*cols`` values) in one read, rows split over threads.

    Adds the top-16-bit patterns to ``hist``; fills ``rowmax`` (float32, per row |v| max), raises ``colmax``
    (float32), fills ``rowsq`` (float64). Returns one row of ``STATS32_FIELDS`` per thread part, for the
    caller to merge (counts add; mean and M2 by Chan's update; see ``_native.c``).
    """
    lib = _lib()
    if rowmax is None and colmax is None and rowsq is None and rows == 1 and cols > _FLAT_ROW:
        full = cols // _FLAT_ROW
        outs = [stats32(x[: full * _FLAT_ROW], full, _FLAT_ROW, hist, thresholds)]
        if cols % _FLAT_ROW:
            outs.append(stats32(x[full * _FLAT_ROW :], 1, cols % _FLAT_ROW, hist, thresholds))
        return np.concatenate(outs)
    n_threads = min(threads(), rows)
    bounds = np.linspace(0, rows, n_threads + 1).astype(np.int64)
    t = np.asarray(thresholds, np.float32)
    hists = [hist] + [np.zeros_like(hist) for _ in range(n_threads - 1)]
    colmaxes = [colmax] + [np.zeros_like(colmax) for _ in range(n_threads - 1)] if colmax is not None else [None] * n_threads
    outs = np.zeros((n_threads, len(STATS32_FIELDS)), np.float64)
    ptr = lambda a: a.ctypes.data if a is not None else None  # noqa: E731

    def work(i: int) -> int:
        r0, r1 = int(bounds[i]), int(bounds[i + 1])
        rm = rowmax[r0:r1] if rowmax is not None else None
        rs = rowsq[r0:r1] if rowsq is not None else None
        return lib.ss_stats32(ptr(x[r0 * cols : r1 * cols]), r1 - r0, cols, ptr(hists[i]), ptr(t), ptr(rm), ptr(colmaxes[i]), ptr(rs), ptr(outs[i]))

    if any(_on_threads(work, n_threads)):
        raise MemoryError("the native block kernel could not allocate its counters")
    for h in hists[1:]:
        hist += h
    if colmax is not None:
        for c in colmaxes[1:]:  # np.maximum keeps NaN, as the kernel does
            np.maximum(colmax, c, out=colmax)
    return outs


#: Values per thread of ``act32``: below this a second thread costs more than it saves (benchmarks/README.md).
ACT32_PER_THREAD = 1 << 22


def act32(x: np.ndarray, rows: int, cols: int, hist: np.ndarray | None = None, rowmax: np.ndarray | None = None,
          colmax: np.ndarray | None = None, colsq: np.ndarray | None = None) -> tuple[float, float, int]:  # fmt: skip
    """Activation statistics of a float32 block of ``rows`` tokens x ``cols`` channels in one read (see
    ``ss_act32``): adds the |x| patterns to ``hist`` (int64, 32768), fills ``rowmax`` (float32, per token max
    |x|), raises ``colmax`` (float32) and adds to ``colsq`` (float64, sum of x^2 per channel). Returns the sum
    of |x| and the smallest |x| over finite values, and their count."""
    lib = _lib()
    n_threads = min(threads(), rows, max(1, rows * cols // ACT32_PER_THREAD))
    bounds = np.linspace(0, rows, n_threads + 1).astype(np.int64)
    extra = lambda a: [a] + [np.zeros_like(a) for _ in range(n_threads - 1)] if a is not None else [None] * n_threads  # noqa: E731
    hists, colmaxes, colsqs = extra(hist), extra(colmax), extra(colsq)
    outs = np.zeros((n_threads, 3), np.float64)
    ptr = lambda a: a.ctypes.data if a is not None else None  # noqa: E731

    def work(i: int) -> int:
        r0, r1 = int(bounds[i]), int(bounds[i + 1])
        rm = rowmax[r0:r1] if rowmax is not None else None
        return lib.ss_act32(ptr(x[r0 * cols : r1 * cols]), r1 - r0, cols, ptr(hists[i]), ptr(rm), ptr(colmaxes[i]), ptr(colsqs[i]), ptr(outs[i]))

    if any(_on_threads(work, n_threads)):
        raise MemoryError("the native activation kernel could not allocate its counters")
    for i in range(1, n_threads):
        if hist is not None:
            hist += hists[i]
        if colmax is not None:
            np.maximum(colmax, colmaxes[i], out=colmax)  # NaN kept, as the kernel keeps it
        if colsq is not None:
            colsq += colsqs[i]
    return float(outs[:, 0].sum()), float(outs[:, 1].min()), int(outs[:, 2].sum())


#: Order of ``quant_sums``' output: ``xx``, then ``(xq, qq, ee, ae)`` for each of these schemes.
QUANT_SCHEMES = ("int8_channel", "int4_g128", "int4_g128_asym")


def quant_sums(x: np.ndarray, group: int) -> np.ndarray:
    """Error sums of the per-channel INT8 and group INT4 schemes (groups of ``group`` values along each row, the
    last one shorter where ``group`` does not divide ``cols``) over a finite ``(rows, cols)`` block: float32
    values, or uint16 bfloat16 patterns (widened a row at a time inside the kernel, so the block is read once at
    two bytes a value: as fast as from float32 values, where widening the block first costs a second pass;
    benchmarks/README.md).

    Returns 13 float64 sums (see ``QUANT_SCHEMES``); rows are split over the kernel's threads.
    """
    lib = _lib()
    rows, cols = x.shape
    bf16 = x.dtype == np.uint16
    x = np.ascontiguousarray(x, dtype=np.uint16 if bf16 else np.float32)
    n_threads = min(threads(), rows)
    bounds = np.linspace(0, rows, n_threads + 1).astype(np.int64)
    outs = np.zeros((n_threads, 13), np.float64)
    scratch = np.empty((n_threads, 2, -(-cols // group)), np.float32)  # a shorter last group where group does not divide cols
    row = np.empty((n_threads, cols), np.float32) if bf16 else None

    def work(i: int) -> None:
        r0, r1 = int(bounds[i]), int(bounds[i + 1])
        args = (x[r0:r1].ctypes.data, r1 - r0, cols, group, outs[i].ctypes.data, scratch[i, 0].ctypes.data, scratch[i, 1].ctypes.data)
        if bf16:
            lib.ss_quant_rows_bf16(*args, row[i].ctypes.data)
        else:
            lib.ss_quant_rows(*args)

    _on_threads(work, n_threads)
    return outs.sum(axis=0)


def _on_threads(work, n: int) -> list:
    if n == 1:
        return [work(0)]
    futures = [_pool().submit(work, i) for i in range(n)]
    try:
        return [f.result() for f in futures]
    finally:  # an interrupt must not free the block while a worker still reads it
        _wait_all(futures)


def _wait_all(futures) -> None:
    while True:
        try:
            wait(futures)
            return
        except KeyboardInterrupt:
            continue


def _run(fn, keys, rows, cols, hist, rowmax, colmax, rowsq, mask, values, bf16, vals) -> None:
    n_threads = min(threads(), rows)
    bounds = np.linspace(0, rows, n_threads + 1).astype(np.int64)
    hists = [hist] + [np.zeros_like(hist) for _ in range(n_threads - 1)]
    colmaxes = [colmax] + [np.zeros_like(colmax) for _ in range(n_threads - 1)] if colmax is not None else [None] * n_threads
    ptr = lambda a: a.ctypes.data if a is not None else None  # noqa: E731

    def work(i: int) -> int:
        r0, r1 = int(bounds[i]), int(bounds[i + 1])
        sub = keys[r0 * cols : r1 * cols]
        rm = rowmax[r0:r1] if rowmax is not None else None
        rs = rowsq[r0:r1] if rowsq is not None else None
        vs = vals[r0 * cols : r1 * cols] if vals is not None else None
        return fn(ptr(sub), r1 - r0, cols, ptr(hists[i]), ptr(rm), ptr(colmaxes[i]), mask, ptr(values), ptr(rs), bf16, ptr(vs))

    codes = _on_threads(work, n_threads)
    if any(codes):
        raise MemoryError("the native block kernel could not allocate its counters")
    for h in hists[1:]:
        hist += h
    if colmax is not None:
        for c in colmaxes[1:]:
            np.maximum(colmax, c, out=colmax)
