"""SmoothQuant, measured: W8A8 with and without smoothing, per alpha, for every Linear a norm feeds.

Smoothing divides the activations' input channel j by ``s_j = max|X_j|^α / max|W_j|^(1-α)`` (folded into
the norm) and multiplies the weights' column j by it. One ``s`` serves every Linear the norm feeds, so
``max|W_j|`` is taken over all of them (q, k and v together), as SmoothQuant does; ``max|X_j|`` over every
calibration token. W8A8 is simulated as deployed: int8 activations per token (dynamic, ``absmax / 127``),
int8 weights per output channel. The error is measured against the float output on the kept inputs (every
token unless the memory limit cut them short; the run says how many).
"""

from __future__ import annotations

import torch

from streamscope.activation.sensitivity.hooks import Group, weight_matrix
from streamscope.activation.sensitivity.local import db, energy
from streamscope.kernels.fakequant import fake_quantize

ALPHAS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
FLOOR = 1e-5  # SmoothQuant's clamp of both maxima, so an all-zero channel does not divide by zero


def per_token_int8(x: torch.Tensor) -> torch.Tensor:
    """Dynamic per-token int8 round trip of (tokens, channels)."""
    scale = x.abs().amax(dim=1, keepdim=True).div_(127)
    scale[scale == 0] = 1.0
    return torch.round(x / scale).clamp_(-127, 127).mul_(scale)


def w8a8_error(group: Group, ys: list[torch.Tensor], w: torch.Tensor, s: torch.Tensor | None) -> tuple[float, float]:
    """``(Σ y², Σ (y - ŷ)²)`` over the group's kept inputs (``ys``: their float outputs ``x Wᵀ``) with smoothing
    factors ``s`` (None: none)."""
    wq = fake_quantize(w if s is None else w * s, "int8_channel")
    yy = ee = 0.0
    for x, y in zip(group.inputs, ys):
        xq = per_token_int8(x if s is None else x / s)
        yy += energy(y)
        ee += energy((xq @ wq.t()).sub_(y))
    return yy, ee


def layer_smoothing(capture, alphas: tuple[float, ...] = ALPHAS) -> dict:
    """``{module: {"best_alpha", "w8a8_sqnr_db": {"none": x, "0.3": ...}, "gain_db", "norm", "tokens"}}``."""
    out = {}
    for group in capture.groups.values():
        if group.norm is None or group.amax is None or not group.inputs:
            continue
        weights = {name: weight_matrix(capture.linears[name]) for name in group.modules}
        wmax = torch.stack([w.abs().amax(dim=0) for w in weights.values()]).amax(dim=0).clamp(min=FLOOR)
        amax = group.amax.clamp(min=FLOOR)
        for name, w in weights.items():
            ys = [x @ w.t() for x in group.inputs]  # the float outputs, once for every alpha
            curve = {"none": db(*w8a8_error(group, ys, w, None))}
            for a in alphas:
                s = (amax.pow(a) / wmax.pow(1 - a)).clamp(min=FLOOR)
                curve[f"{a:g}"] = db(*w8a8_error(group, ys, w, s))
            del ys
            best = max((k for k in curve if k != "none"), key=lambda k: curve[k])
            out[name] = {"best_alpha": float(best), "w8a8_sqnr_db": curve, "gain_db": curve[best] - curve["none"],
                         "norm": group.norm, "tokens": group.kept_tokens}  # fmt: skip
    return out
