"""What users ask for, as functions, registered by name in one registry (see ``registry``).

To add an analysis: write one file here that defines it and ends with an ``Analysis(...)``, then add one
``register(...)`` line below. Its name then appears in ``--analyses`` help and ``all``, its options become
keyword options of ``streamscope.scan`` and enter the resume fingerprint.

Order matters: a tensor analysis sees the record fields of the analyses registered before it (health reads
spectral and quantization).
"""

from __future__ import annotations

from streamscope.analyses import basic, embedding, health, histogram, norms, quantization, sparsity, spectral, summary, weightwatcher
from streamscope.analyses.registry import Analysis, Registry

REGISTRY = Registry()
register = REGISTRY.register

# per tensor (selectable)
register(basic.ANALYSIS)
register(sparsity.ANALYSIS)
register(quantization.ANALYSIS)
register(spectral.ANALYSIS)
# per tensor, on every scan
register(histogram.ANALYSIS)
register(embedding.ANALYSIS)
register(health.ANALYSIS)
# per model
register(summary.ANALYSIS)
register(embedding.MODEL_ANALYSIS)
register(norms.ANALYSIS)
register(health.MODEL_ANALYSIS)
register(weightwatcher.MODEL_ANALYSIS)

__all__ = ["REGISTRY", "Analysis", "Registry", "register"]
