"""The checkpoint summary of ``model.json``: shards, tensor and parameter counts, dtype mix, model type."""

from __future__ import annotations

from collections import Counter

from streamscope.analyses.registry import Analysis


def checkpoint_summary(ctx, options) -> dict:
    index = ctx.index
    dtypes: Counter = Counter()
    for t in index:
        dtypes[t.dtype] += t.numel
    return {
        "shards": [f.path.name for f in index.files],
        "num_tensors": len(index),
        "num_scanned": len(ctx.records),
        "total_params": index.total_params,
        "total_bytes": index.total_bytes,
        "params_by_dtype": dict(dtypes),
        "model_type": (index.config or {}).get("model_type") if isinstance(index.config, dict) else None,
        "tokenizer": index.tokenizer_path.name if index.tokenizer_path else None,
    }


ANALYSIS = Analysis(
    name="checkpoint",
    kind="model",
    help="shards, tensor and parameter counts, dtype mix",
    selectable=False,
    compute=checkpoint_summary,
)
