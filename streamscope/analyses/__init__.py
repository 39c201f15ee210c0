"""What users ask for, as functions, registered by name.

``TENSOR_ANALYSES`` turn the accumulator that one streamed pass filled into a dict stored under their name in
``tensors.json``. ``BLOCK_ANALYSES`` also see every block of that same pass: ``start(info, params)`` makes a
state, ``update(state, block, span, scratch)`` folds a ``(rows, cols)`` float block in, and
``finish(state, accumulator, ctx)`` returns the dict (``ctx.row_blocks()`` streams the tensor again where a
method needs more passes, such as randomized SVD's power iterations). Model-level analyses (embedding norms,
norm layers, health) read the records.
"""

from __future__ import annotations

from types import SimpleNamespace

from streamscope.analyses import quantization, spectral
from streamscope.analyses.basic import basic_stats
from streamscope.analyses.sparsity import sparsity

#: name in results -> function of the tensor's accumulator.
TENSOR_ANALYSES = {
    "basic_stats": basic_stats,
    "sparsity": sparsity,
}

BLOCK_ANALYSES = {
    "quantization": SimpleNamespace(start=quantization.start, update=quantization.update, finish=quantization.finish),
    "spectral": SimpleNamespace(start=spectral.start, update=spectral.update, finish=spectral.finish),
}

#: what users type -> result key.
ANALYSIS_ALIASES = {"basic": "basic_stats", "basic_stats": "basic_stats", "sparsity": "sparsity",
                    "quantization": "quantization", "quant": "quantization", "spectral": "spectral"}  # fmt: skip
DEFAULT_ANALYSES = ("basic", "sparsity")
ALL_ANALYSES = ("basic", "sparsity", "quantization", "spectral")
