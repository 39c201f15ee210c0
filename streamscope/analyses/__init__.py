"""What users ask for, as functions. Per-tensor analyses are registered by name in ``TENSOR_ANALYSES``.

Each per-tensor analysis turns the accumulator that one streamed pass filled into a dict stored under its
name in ``tensors.json``; model-level analyses (embedding norms, norm layers) read those records.
"""

from __future__ import annotations

from streamscope.analyses.basic import basic_stats
from streamscope.analyses.sparsity import sparsity

#: name in results -> function of the tensor's accumulator.
TENSOR_ANALYSES = {
    "basic_stats": basic_stats,
    "sparsity": sparsity,
}

#: what users type -> result key.
ANALYSIS_ALIASES = {"basic": "basic_stats", "basic_stats": "basic_stats", "sparsity": "sparsity"}
DEFAULT_ANALYSES = ("basic", "sparsity")
