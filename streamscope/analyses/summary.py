"""The checkpoint summary of ``model.json`` (its ``checkpoint`` key): shards, tensor and parameter counts, dtype mix,
model type. Headers only; ``io.checkpoint`` is where the index itself is built."""

from __future__ import annotations

from collections import Counter

from streamscope.analyses.registry import Analysis


def checkpoint_summary(ctx, options) -> dict:
    """Counts from the headers. ``total_params`` leaves out stored buffers (position ids, masks, rotary tables),
    as ``params`` does; ``buffer_elements`` counts them apart."""
    from streamscope.analyses.params import is_buffer

    index = ctx.index
    dtypes: Counter = Counter()
    for t in index:
        dtypes[t.dtype] += t.numel
    buffers = [t for t in index if is_buffer(t)]
    return {
        "shards": [f.path.name for f in index.files],
        "num_tensors": len(index),
        "num_scanned": len(ctx.records),
        "total_params": index.total_params - sum(t.numel for t in buffers),
        "buffers": [t.name for t in buffers],
        "buffer_elements": sum(t.numel for t in buffers),
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
