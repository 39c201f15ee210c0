"""Quantization simulation: quantize, dequantize, and accumulate the error, per block or per bit pattern.

Every scheme reduces to three sums that merge across blocks by addition: ``sum(x*x)``, ``sum(x*q)``,
``sum(q*q)`` plus ``sum((x-q)^2)`` and ``sum(|x-q|)``, from which MSE, MAE, SQNR and cosine similarity follow.

Schemes:
- ``int8``: symmetric per-tensor, scale = absmax / 127 (needs the tensor's absmax: taken from the pattern
  histogram, or from the tensor kept in memory, or a second pass).
- ``int8_channel``: symmetric per output channel (row), scale = row absmax / 127.
- ``int4_g128``: symmetric groups of 128 consecutive values along each row, levels -7..7, scale = group
  absmax / 7. Where 128 does not divide the row length the last group of each row is shorter (a 576-long row:
  four groups of 128 and one of 64), as GGUF's and GPTQ-style packers group a row: never one group per row.
- ``int4_g128_asym``: asymmetric groups of 128 (the same grouping), levels 0..15 with a zero point.
- ``fp8_e4m3``: per-tensor scale absmax / 448, cast to float8 e4m3 (round to nearest even) and back.

``fake_quantize`` gives the dequantized tensor of any scheme, the values these sums are taken over.
"""

from __future__ import annotations

import math

import numpy as np
import torch

SCHEMES = ("int8", "int8_channel", "int4_g128", "int4_g128_asym", "fp8_e4m3")
PER_TENSOR = ("int8", "fp8_e4m3")
GROUP = 128
FP8_MAX = 448.0


class ErrorSums:
    """Mergeable sums of one scheme's quantization error."""

    __slots__ = ("n", "xx", "xq", "qq", "ee", "ae")

    def __init__(self) -> None:
        self.n = 0
        self.xx = self.xq = self.qq = self.ee = self.ae = 0.0

    def add(self, n: int, xx: float, xq: float, qq: float, ee: float, ae: float) -> None:
        self.n += n
        self.xx += xx
        self.xq += xq
        self.qq += qq
        self.ee += ee
        self.ae += ae

    def result(self) -> dict:
        """``mse, mae, sqnr_db, cosine_similarity``."""
        n = self.n
        norms = math.sqrt(self.xx) * math.sqrt(self.qq)  # the product of the sums could underflow to 0
        cos = self.xq / norms if norms > 0 else (1.0 if self.ee == 0 else 0.0)
        if self.ee > 0 and self.xx > 0:
            sqnr = 10 * (math.log10(self.xx) - math.log10(self.ee))  # a ratio could under- or overflow
        else:
            sqnr = math.inf if self.ee == 0 else -math.inf
        return {"mse": self.ee / n if n else float("nan"), "mae": self.ae / n if n else float("nan"), "sqnr_db": sqnr, "cosine_similarity": cos}


def dequantize_int(x: torch.Tensor, scale: torch.Tensor | float, qmin: int, qmax: int, zero: torch.Tensor | float = 0.0, out: torch.Tensor | None = None) -> torch.Tensor:
    """``(clamp(round(x / scale) + zero, qmin, qmax) - zero) * scale``, written into ``out``.

    ``scale`` of 0 (an all-zero channel or group) must be passed as 1: those values quantize to 0 exactly.
    """
    out = torch.div(x, scale, out=out)
    out.round_()
    if not isinstance(zero, float) or zero != 0.0:
        out.add_(zero)
    out.clamp_(qmin, qmax)
    if not isinstance(zero, float) or zero != 0.0:
        out.sub_(zero)
    return out.mul_(scale)


_SEGMENT = 4096  # float32 partial sums over at most this many terms, then float64 across segments


def _segment_sum(a: torch.Tensor) -> float:
    """``sum(a)`` with float32 sums of ``_SEGMENT`` consecutive terms added in float64 (rel. error ~1e-7)."""
    flat = a.reshape(-1)
    n = flat.numel()
    full = n - n % _SEGMENT
    total = float(flat[:full].view(-1, _SEGMENT).sum(dim=1).double().sum()) if full else 0.0
    return total + (float(flat[full:].double().sum()) if full < n else 0.0)


def _dot(a: torch.Tensor, b: torch.Tensor, tmp: torch.Tensor) -> float:
    return _segment_sum(torch.mul(a, b, out=tmp.view(a.shape)))


def _sums(x: torch.Tensor, q: torch.Tensor, err: torch.Tensor, tmp: torch.Tensor, xx: float) -> tuple[float, float, float, float, float]:
    err = torch.sub(x, q, out=err.view(x.shape))
    ee = _dot(err, err, tmp)
    xq, qq = _dot(x, q, tmp), _dot(q, q, tmp)
    return xx, xq, qq, ee, _segment_sum(err.abs_())


def block_schemes_native(x: torch.Tensor, schemes: tuple[str, ...], sums: dict[str, ErrorSums]) -> bool:
    """``block_schemes`` in one read of a CPU block by the C kernel: float32 values, or bfloat16 patterns as
    int16 (widened to float32 inside), with the same float32 operations per element, about 20x faster than the
    torch passes. Returns False, adding nothing, when the block holds NaN or Inf (its sum of squares is not
    finite); the caller then takes the torch path on a cleaned copy."""
    from streamscope.kernels import native

    out = native.quant_sums(x.numpy().view(np.uint16) if x.dtype == torch.int16 else x.numpy(), GROUP)
    if not math.isfinite(out[0]):
        return False
    for i, scheme in enumerate(native.QUANT_SCHEMES):
        if scheme in schemes:
            sums[scheme].add(x.numel(), out[0], *out[1 + 4 * i : 5 + 4 * i])
    return True


def _groups(t: torch.Tensor) -> list[torch.Tensor]:
    """Views of a (rows, cols) tensor's groups of ``GROUP`` along each row: (rows, cols // GROUP, GROUP) for the
    whole groups, (rows, 1, cols % GROUP) for the shorter last group where there is one."""
    rows, cols = t.shape
    body = cols - cols % GROUP
    views = [t[:, :body].view(rows, body // GROUP, GROUP)] if body else []
    if body < cols:
        views.append(t[:, body:].view(rows, 1, cols - body))
    return views


def _channel_dequantize(x: torch.Tensor, q: torch.Tensor) -> None:
    """INT8 per output channel (row) of a (rows, cols) float block into ``q``."""
    lo, hi = torch.aminmax(x, dim=1, keepdim=True)
    scale = torch.maximum(lo.abs_(), hi.abs_()).div_(127)  # (rows, 1)
    scale[scale == 0] = 1.0
    dequantize_int(x, scale, -127, 127, out=q)


def _group_dequantize(x: torch.Tensor, q: torch.Tensor, scheme: str) -> None:
    """INT4 groups of a (rows, cols) float block into ``q``: symmetric (``int4_g128``) or asymmetric."""
    for xg, qg in zip(_groups(x), _groups(q)):  # (rows, groups, group length)
        lo, hi = torch.aminmax(xg, dim=2, keepdim=True)
        if scheme == "int4_g128":
            scale = torch.maximum(lo.abs(), hi.abs()).div_(7)
            scale[scale == 0] = 1.0
            dequantize_int(xg, scale, -7, 7, out=qg)
        else:
            scale = (hi - lo).div_(15)
            scale[scale == 0] = 1.0
            dequantize_int(xg, scale, 0, 15, zero=torch.round(-lo / scale), out=qg)


def block_schemes(x: torch.Tensor, schemes: tuple[str, ...], sums: dict[str, ErrorSums], q: torch.Tensor, err: torch.Tensor, tmp: torch.Tensor) -> None:
    """Fold one (rows, cols) float32 block into the error sums of the per-channel and group schemes.

    ``q``, ``err`` and ``tmp`` are scratch buffers of ``x.numel()`` elements.
    """
    rows, cols = x.shape
    n = x.numel()
    q = q.view(rows, cols)
    xx = _dot(x, x, tmp)
    if "int8_channel" in schemes:
        _channel_dequantize(x, q)
        sums["int8_channel"].add(n, *_sums(x, q, err, tmp, xx))
    for scheme in ("int4_g128", "int4_g128_asym"):
        if scheme in schemes:
            _group_dequantize(x, q, scheme)
            sums[scheme].add(n, *_sums(x, q, err, tmp, xx))


def fake_quantize(w: torch.Tensor, scheme: str) -> torch.Tensor:
    """The dequantized weight of one scheme, the values the scan's error sums are taken over.

    Args:
        w: a weight of any float dtype and device; 2-D or more is taken as rows x the rest (as the scan reads
            it), a vector as one row.
        scheme: one of ``SCHEMES``. Per-tensor schemes (``int8``, ``fp8_e4m3``) take the absmax of the whole
            tensor and are computed in float64, as the scan computes them; per-channel and group schemes in
            float32 (groups of 128 along each row, the last one shorter where 128 does not divide the row).

    Returns:
        A float32 tensor of ``w``'s shape and device. NaN and Inf stay where they were; the scales are taken
        as the scan takes them (per-tensor: over the finite values; per-channel and group: those values as 0).

    Example:
        >>> q = fake_quantize(torch.randn(576, 576), "int4_g128")
        >>> q.shape
        torch.Size([576, 576])
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown quantization scheme {scheme!r}; choose from {', '.join(SCHEMES)}")
    finite = torch.isfinite(w)
    clean = torch.where(finite, w, torch.zeros((), dtype=w.dtype, device=w.device))
    if scheme in PER_TENSOR:
        v = clean.to(torch.float64)
        absmax = float(v.abs().max()) if v.numel() else 0.0
        q = per_tensor_dequantized(v, scheme, absmax).to(torch.float32)
    else:
        x = clean.to(torch.float32).reshape(w.shape[0] if w.dim() >= 2 else 1, -1).contiguous()  # (rows, cols)
        q = torch.empty_like(x)
        if scheme == "int8_channel":
            _channel_dequantize(x, q)
        else:
            _group_dequantize(x, q, scheme)
        q = q.view(w.shape)
    return torch.where(finite, q, w.to(torch.float32))


def per_tensor_dequantized(values: torch.Tensor, scheme: str, absmax: float) -> torch.Tensor:
    """Per-tensor ``int8`` or ``fp8_e4m3`` round trip of ``values`` (any shape), in the values' dtype."""
    if absmax == 0 or not math.isfinite(absmax):
        return torch.zeros_like(values) if absmax == 0 else values.clone()
    if scheme == "int8":
        return dequantize_int(values, absmax / 127, -127, 127, out=torch.empty_like(values))
    scale = absmax / FP8_MAX
    scaled = (values / scale).clamp_(-FP8_MAX, FP8_MAX)
    return scaled.to(torch.float32).to(torch.float8_e4m3fn).to(values.dtype).mul_(scale)


def per_tensor_from_histogram(values: np.ndarray, counts: np.ndarray, scheme: str, absmax: float) -> ErrorSums:
    """Exact per-tensor error sums from a histogram of exact values (``values[i]`` occurs ``counts[i]`` times)."""
    keep = (counts > 0) & np.isfinite(values)
    v = torch.from_numpy(values[keep].astype(np.float64))
    c = torch.from_numpy(counts[keep].astype(np.float64))
    q = per_tensor_dequantized(v, scheme, absmax)
    e = v - q
    sums = ErrorSums()
    sums.add(int(c.sum()), float((c * v * v).sum()), float((c * v * q).sum()), float((c * q * q).sum()), float((c * e * e).sum()), float((c * e.abs()).sum()))
    return sums


def per_tensor_from_values(x: torch.Tensor, scheme: str, absmax: float, sums: ErrorSums | None = None) -> ErrorSums:
    """Per-tensor error sums of in-memory values (finite only), accumulated in float64."""
    sums = sums or ErrorSums()
    v = x.reshape(-1).to(torch.float64)
    v = v[torch.isfinite(v)]
    q = per_tensor_dequantized(v, scheme, absmax)
    e = v - q
    sums.add(v.numel(), float(v @ v), float(v @ q), float(q @ q), float(e @ e), float(e.abs().sum()))
    return sums
