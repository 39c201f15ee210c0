"""Layer-local error: each Linear's real inputs through its weight and through each fake-quantized weight.

For a Linear ``y = x Wᵀ (+ b)`` and a scheme's ``Ŵ``, with ``E = W - Ŵ`` (the bias cancels):
``Σ (y - ŷ)² = Σ ‖x Eᵀ‖²`` over every calibration token, taken from the kept inputs or, exactly, from their
Gram matrix as ``Σ (E G) ∘ E``; ``Σ y²`` is summed from the module's own outputs as they pass. Output SQNR is
``10 log10(Σ y² / Σ (y - ŷ)²)``, relative MSE ``Σ (y - ŷ)² / Σ y²``; the weight's own SQNR is kept beside them
(what a weight-only screening sees). One quantized weight exists at a time.
"""

from __future__ import annotations

import math

import torch

from streamscope.activation.sensitivity.hooks import Group, weight_matrix
from streamscope.kernels.fakequant import applicable, fake_quantize


def db(signal: float, noise: float) -> float:
    """``10 log10(signal / noise)``; +inf without noise."""
    if noise <= 0:
        return math.inf
    if signal <= 0:
        return -math.inf
    return 10 * (math.log10(signal) - math.log10(noise))


def error_energy(group: Group, e: torch.Tensor) -> float:
    """``Σ ‖x Eᵀ‖²`` over the group's every token."""
    if group.gram is not None:  # float32 products (the Gram matrix was summed in float64), summed in float64
        return float(torch.sum((e @ group.gram32()).mul_(e), dtype=torch.float64))
    return math.fsum(energy(x @ e.t()) for x in group.inputs)


def energy(y: torch.Tensor) -> float:
    """``Σ y²`` of a float32 tensor: one BLAS dot (float32 partial sums, relative error about 1e-6)."""
    flat = y.reshape(-1)
    return float(torch.dot(flat, flat))


def layer_errors(capture, schemes: tuple[str, ...]) -> dict:
    """``{module: {scheme: {"sqnr_db", "rel_mse", "weight_sqnr_db"} or None}}`` for the layer in memory."""
    out = {}
    for group in capture.groups.values():
        for name in group.modules:
            w = weight_matrix(capture.linears[name])
            ww = energy(w)
            yy = capture.yy.get(name, 0.0)
            per = {}
            for scheme in schemes:
                if applicable(scheme, tuple(w.shape)) is not None:
                    per[scheme] = None
                    continue
                e = w - fake_quantize(w, scheme)
                ee = error_energy(group, e)
                per[scheme] = {"sqnr_db": db(yy, ee), "rel_mse": ee / yy if yy > 0 else None,
                               "weight_sqnr_db": db(ww, energy(e))}  # fmt: skip
                del e
            out[name] = per
    return out
