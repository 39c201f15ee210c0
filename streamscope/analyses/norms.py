"""Normalization layers: kind, statistics, and which of them touch the embeddings."""

from __future__ import annotations

from streamscope.analyses.registry import Analysis
from streamscope.io.names import NameInfo

_FIRST_INPUT_NORM = ("input_layernorm", "ln_1", "attention_norm", "norm1", "pre_attention_layernorm")


def norm_layers(records: dict[str, dict], names: dict[str, NameInfo], all_names: set[str]) -> dict:
    """Every norm weight and bias with its kind, shape and statistics.

    ``kind`` is ``LayerNorm`` when the module has a bias in the checkpoint, else ``RMSNorm``. Embedding-related
    norms are the first layer's input norm, a norm right after the embeddings (``embeddings.LayerNorm``) and
    the final norm that feeds the output embedding.

    Returns:
        ``{"layers": [...], "embedding_related": [...], "count": n}``.
    """
    layers, related = [], []
    first_layer = min((i.layer_index for i in names.values() if i.layer_index is not None and i.tower == "language"), default=None)
    for name, rec in records.items():
        info = names[name]
        if info.block_type != "norm" or "basic_stats" not in rec:
            continue
        module = name.rsplit(".", 1)[0]
        b = rec["basic_stats"]
        entry = {
            "name": name,
            "kind": "LayerNorm" if f"{module}.bias" in all_names else "RMSNorm",
            "param": info.role,
            "shape": rec["info"]["shape"],
            "layer_index": info.layer_index,
            "mean": b["mean"],
            "std": b["std"],
            "min": b["min"],
            "max": b["max"],
            "numel": b["numel"],
        }
        reason = _embedding_reason(module, info, first_layer)
        if reason:
            entry["embedding_related"] = reason
            related.append(entry)
        layers.append(entry)
    return {"count": len(layers), "layers": layers, "embedding_related": related}


def _embedding_reason(module: str, info: NameInfo, first_layer: int | None) -> str | None:
    if info.tower != "language":
        return None
    leaf = module.rsplit(".", 1)[-1]
    if info.layer_index is None:
        if "emb" in module.lower():
            return "post-embedding norm"
        return "final norm (feeds the output embedding)"
    if info.layer_index == first_layer and leaf in _FIRST_INPUT_NORM:
        return "first layer input norm (normalizes the embeddings)"
    return None


ANALYSIS = Analysis(
    name="norm_layers",
    kind="model",
    help="every norm weight and bias with kind and statistics; the embedding-related ones marked",
    selectable=False,
    compute=lambda ctx, options: norm_layers(ctx.records, ctx.index.names, set(ctx.index.tensors)),
)
