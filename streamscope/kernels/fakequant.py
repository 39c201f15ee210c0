"""Fake quantization of a whole weight matrix: the dequantized values a quantized model computes with.

The scan's schemes (``int8``, ``int8_channel``, ``int4_g128``, ``int4_g128_asym``, ``fp8_e4m3``) follow the
definitions of ``kernels.quant``; llama.cpp's block formats ``q8_0``, ``q4_0`` and ``mxfp4`` are the ``gguf``
package's reference quantizers (blocks of 32 along each row), so they round exactly as ``llama-quantize``
does. ``bits_per_weight`` counts the stored scales too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

#: The scan's schemes (``kernels.quant.SCHEMES``, kept equal by a test; spelled out so the command line
#: can name them without importing torch).
SCAN = ("int8", "int8_channel", "int4_g128", "int4_g128_asym", "fp8_e4m3")
#: llama.cpp block formats, each with the GGML type name ``llama-quantize`` takes.
GGML = {"q8_0": "Q8_0", "q4_0": "Q4_0", "mxfp4": "MXFP4"}
SCHEMES = SCAN + tuple(GGML)
BLOCK = 32  # the GGML formats' block length along a row
GROUP = 128  # ``kernels.quant.GROUP``


def bits_per_weight(scheme: str, cols: int) -> float:
    """Stored bits per weight of a (rows, cols) matrix: values plus scales (fp16 scales, fp32 per-tensor)."""
    if scheme in ("int8", "fp8_e4m3"):
        return 8.0
    if scheme == "int8_channel":
        return 8.0 + 16.0 / cols
    groups = -(-cols // GROUP)
    if scheme == "int4_g128":
        return 4.0 + 16.0 * groups / cols
    if scheme == "int4_g128_asym":
        return 4.0 + 32.0 * groups / cols
    return {"q8_0": 8.5, "q4_0": 4.5, "mxfp4": 4.25, "float16": 16.0, "bfloat16": 16.0, "float32": 32.0}[scheme]


def applicable(scheme: str, shape: tuple[int, ...]) -> str | None:
    """None, or why ``scheme`` cannot store a matrix of ``shape`` (llama.cpp's blocks need whole rows of 32)."""
    if scheme in GGML and shape[-1] % BLOCK:
        return f"rows of {shape[-1]} values are not whole blocks of {BLOCK}"
    return None


def fake_quantize(w: "torch.Tensor", scheme: str) -> "torch.Tensor":
    """The float32 values ``w`` (rows, cols) takes after quantizing with ``scheme`` and dequantizing.

    The scan's schemes are ``kernels.quant``'s, computed in float32 throughout for speed (the scan takes its
    per-tensor sums in float64: a value can differ only where ``x / scale`` lies within float32 rounding of a
    rounding tie); a matrix holding NaN or Inf goes through ``quant.fake_quantize``, which keeps them.
    """
    import torch

    from streamscope.kernels import quant

    if scheme not in SCHEMES:
        raise ValueError(f"unknown quantization scheme {scheme!r}; known: {', '.join(SCHEMES)}")
    w = w.detach().to(torch.float32)
    if scheme == "mxfp4":
        return _mxfp4(w)
    if scheme in GGML:
        import gguf

        kind = getattr(gguf.GGMLQuantizationType, GGML[scheme])
        arr = np.ascontiguousarray(w.cpu().numpy().reshape(-1, w.shape[-1]))
        return torch.from_numpy(gguf.quants.dequantize(gguf.quants.quantize(arr, kind), kind).reshape(w.shape)).to(w.device)
    if not bool(torch.isfinite(w).all()):
        return quant.fake_quantize(w, scheme)
    x = w.reshape(w.shape[0] if w.dim() >= 2 else 1, -1)
    if scheme in quant.PER_TENSOR:
        absmax = float(x.abs().max()) if x.numel() else 0.0
        return quant.per_tensor_dequantized(x, scheme, absmax).reshape(w.shape)
    q = torch.empty_like(x)
    if scheme == "int8_channel":
        quant._channel_dequantize(x, q)
    else:
        quant._group_dequantize(x, q, scheme)
    return q.reshape(w.shape)


#: FP4 (E2M1) magnitudes, doubled as llama.cpp stores them, and the midpoints between neighbours.
_E2M1 = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0)
_MIDPOINTS = (0.5, 1.5, 2.5, 3.5, 5.0, 7.0, 10.0)


def _mxfp4(w: "torch.Tensor") -> "torch.Tensor":
    """MXFP4 as the ``gguf`` package's reference quantizer rounds it, vectorized: per block of 32 a shared
    power-of-two scale (its exponent from numpy's ``log2`` of the block's max |x|, as the reference takes it),
    each value to the nearest E2M1 level, a tie to the smaller magnitude (the reference's first minimum)."""
    import torch

    x = w.detach().to(torch.float32).reshape(-1, BLOCK)
    amax = x.abs().amax(dim=1).cpu().numpy()
    with np.errstate(divide="ignore"):
        e = np.where(amax > 0, np.floor(np.log2(amax)) - 2 + 127, 0).astype(np.uint8)
    bits = np.where(e < 2, np.uint32(0x00200000) << e.astype(np.uint32), (e.astype(np.uint32) - np.uint32(1)) << np.uint32(23))
    d = torch.from_numpy(bits.view(np.float32).copy()).to(x.device).unsqueeze(1)
    y = x / d
    level = torch.bucketize(y.abs(), torch.tensor(_MIDPOINTS, device=x.device), right=False)
    q = torch.tensor(_E2M1, device=x.device)[level].copysign_(y)
    q[y == 0] = 0.0
    return (q * d).reshape(w.shape)
