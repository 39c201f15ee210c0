"""Parameter accounting from safetensors headers and ``config.json`` alone: no tensor byte is read.

Per decoder layer: attention (q/k/v/o with biases, head and KV-head counts), MLP (gate/up/down with the
intermediate size) or MoE (experts, router, shared expert), norms, and whether the layer was emptied.
Head counts come from the shapes with the config's ``head_dim`` (so structurally pruned checkpoints, whose
shapes no longer match their config, are counted as they are); ``heads_from`` says which source was used.
"""

from __future__ import annotations

import re
from collections import defaultdict

from streamscope.io.checkpoint import CheckpointIndex
from streamscope.io.names import NameInfo
from streamscope.io.tensor import TensorInfo
from streamscope.schema import SCHEMA_VERSION

ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
_MLP_OF = {"mlp_gate": "gate_proj", "mlp_up": "up_proj", "mlp_down": "down_proj"}
# Non-parameter buffers some checkpoints store.
_BUFFER = re.compile(r"(?:position_ids|masked_bias|inv_freq)$|(?:^|\.)attn\.bias$")
_TYPE_PREFIX = {"llama": "Llama", "qwen2": "Qwen2", "qwen3": "Qwen3", "mistral": "Mistral", "mixtral": "Mixtral",
                "gemma": "Gemma", "gemma2": "Gemma2", "gpt2": "GPT2", "bert": "Bert", "qwen2_moe": "Qwen2Moe",
                "qwen2_5_vl": "Qwen2_5_VL", "phi3": "Phi3"}  # fmt: skip


def is_buffer(t: TensorInfo) -> bool:
    """Stored buffers that are not parameters: position ids, causal masks, rotary tables."""
    return bool(_BUFFER.search(t.name))


def _linear_out_in(t: TensorInfo, conv1d: bool) -> tuple[int, int]:
    """(out_features, in_features) of a projection weight; GPT-2's Conv1D stores (in, out)."""
    if len(t.shape) < 2:
        return t.shape[0] if t.shape else 1, 0
    return (t.shape[1], t.shape[0]) if conv1d else (t.shape[0], t.shape[-1])


#: Config values above this are not believed (a layer count sizes a list): the tensors' own layer indices rule.
MAX_CONFIG_VALUE = 1 << 20
_ENCODER_TYPES = {"bert", "roberta", "xlm-roberta", "distilbert", "electra", "albert", "mpnet", "deberta", "deberta-v2", "camembert"}


def _cfg_int(cfg: dict, *keys: str) -> int | None:
    """The first of ``keys`` holding a positive integer (bools, strings, lists and absurd sizes are ignored)."""
    for key in keys:
        v = cfg.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_CONFIG_VALUE:
            return v
    return None


def _config_heads(cfg: dict) -> tuple[int | None, int | None, int | None]:
    """(num_heads, num_kv_heads, head_dim) from a (text) config, any naming."""
    nh = _cfg_int(cfg, "num_attention_heads", "n_head", "num_heads")
    nkv = _cfg_int(cfg, "num_key_value_heads", "num_kv_heads") or nh
    hidden = _cfg_int(cfg, "hidden_size", "n_embd", "d_model")
    hd = _cfg_int(cfg, "head_dim") or (hidden // nh if hidden and nh else None)
    return nh, nkv, hd


def count_params(index: CheckpointIndex, name: str | None = None) -> dict:
    """Parameter accounting of a checkpoint from its headers and config.

    Args:
        index: the checkpoint's index (``CheckpointIndex.from_path``); no tensor data is read.
        name: label for reports (default: the directory name).

    Returns:
        A dict with ``total_params, embedding_params, lm_head_params, tied_embeddings, layer_summary
        {num_layers, total_layer_params}, layers [...]``, ``other_params``, ``towers`` (e.g. ``vision``),
        ``by_dtype {dtype: {params, bytes}}``, ``bytes_on_disk`` and the ``buffers`` left out of the counts.
    """
    cfg, top = index.text_config(), index.config or {}
    model_type = next((v for v in (cfg.get("model_type"), top.get("model_type")) if isinstance(v, str)), "").lower()
    prefix = _TYPE_PREFIX.get(model_type, "".join(p.title() for p in model_type.split("_")) or "")
    conv1d = model_type == "gpt2" or any(".c_attn." in n for n in index.tensors)
    nh_cfg, nkv_cfg, head_dim = _config_heads(cfg)
    layers: dict[int, dict] = defaultdict(lambda: _empty_layer(prefix))
    vision: dict[str, int] = defaultdict(int)
    vision_layers: set[int] = set()
    by_dtype: dict[str, dict[str, int]] = defaultdict(lambda: {"params": 0, "bytes": 0})
    totals = {"total": 0, "embedding": 0, "lm_head": 0, "norms": 0, "other": 0}
    buffers = []
    for t in index:
        info: NameInfo = index.names[t.name]
        if is_buffer(t):
            buffers.append(t.name)
            continue
        n = t.numel
        totals["total"] += n
        by_dtype[t.dtype]["params"] += n
        by_dtype[t.dtype]["bytes"] += t.nbytes
        if info.tower == "vision":
            vision["total"] += n
            vision[info.module if info.module != "other" else "other"] += n
            if info.layer_index is not None:
                vision_layers.add(info.layer_index)
            continue
        if info.layer_index is None:
            key = {"embedding": "embedding", "output": "lm_head", "norm": "norms"}.get(info.block_type, "other")
            totals[key] += n
            continue
        _add_to_layer(layers[info.layer_index], t, info, conv1d)
    num_layers = max([_cfg_int(cfg, "num_hidden_layers", "n_layer") or 0, *(i + 1 for i in layers)])
    out_layers = []
    for i in range(num_layers):
        layer = layers[i] if i in layers else _empty_layer(prefix)
        _finish_layer(layer, i, head_dim, nh_cfg, nkv_cfg, conv1d)
        out_layers.append(layer)
    tie_cfg = cfg.get("tie_word_embeddings", top.get("tie_word_embeddings"))
    architectures = top.get("architectures") if isinstance(top.get("architectures"), list) else []
    has_lm_head = any(isinstance(a, str) and ("CausalLM" in a or "LMHead" in a or "MaskedLM" in a or "ConditionalGeneration" in a)
                      for a in architectures)  # fmt: skip
    # tied: no stored output matrix, and the config says so (explicitly, or by naming a model with an LM head)
    tied = totals["lm_head"] == 0 and totals["embedding"] > 0 and (tie_cfg is True or (tie_cfg is None and has_lm_head))
    encoder = model_type in _ENCODER_TYPES or any(".encoder.layer." in f".{n}" for n in index.tensors)
    result = {
        "schema_version": SCHEMA_VERSION,
        "model_name": name or index.root.name,
        "model_path": str(index.path),
        "model_type": model_type or None,
        "config_found": index.config is not None,
        "total_params": totals["total"],
        "embedding_params": totals["embedding"],
        "lm_head_params": totals["lm_head"],
        "tied_embeddings": tied,
        "layer_kind": "encoder" if encoder else "decoder",
        "layer_summary": {"num_layers": num_layers, "total_layer_params": sum(l["total"] for l in out_layers)},
        "layers": out_layers,
        "other_params": {"norms": totals["norms"], "other": totals["other"]},  # outside the layer stack
        "towers": {"vision": {"total": vision["total"], "num_layers": len(vision_layers), "by_module": {k: v for k, v in vision.items() if k != "total"}}} if vision else {},
        "by_dtype": dict(by_dtype),
        "bytes_on_disk": sum(f.size for f in index.files),
        "buffers": buffers,
        "buffer_elements": sum(index.tensors[n].numel for n in buffers),
    }
    return result


def _empty_layer(prefix: str) -> dict:
    return {
        "attention": {"type": f"{prefix}Attention", "total": 0, **{k: 0 for k in ATTN}},
        "mlp": {"type": f"{prefix}MLP", "total": 0, **{k: 0 for k in MLP}},
        "norm": 0,
        "other": 0,
        "_shapes": {},
        "_experts": defaultdict(int),
        "_moe": {"router": 0, "shared_expert": 0, "expert_intermediate": None},
    }


def _add_to_layer(layer: dict, t: TensorInfo, info: NameInfo, conv1d: bool) -> None:
    n = t.numel
    attn, mlp = layer["attention"], layer["mlp"]
    module = info.module
    if info.block_type == "norm":
        layer["norm"] += n
    elif module in ATTN and info.expert is None:
        attn[module] += n
        if info.role == "weight":
            layer["_shapes"][module] = _linear_out_in(t, conv1d)[0]
    elif module == "qkv_proj":
        layer["_shapes"].setdefault("_qkv", []).append((t, info.role))
    elif "shared_expert" in t.name:
        layer["_moe"]["shared_expert"] += n
    elif info.block_type == "moe_router":
        layer["_moe"]["router"] += n
    elif info.block_type == "moe_expert" or info.expert is not None:
        if len(t.shape) == 3:  # fused experts: (experts, out, in)
            for e in range(t.shape[0]):
                layer["_experts"][e] += n // t.shape[0]
        else:
            layer["_experts"][info.expert if info.expert is not None else 0] += n
        if module in ("mlp_gate", "mlp_up") and len(t.shape) == 2:
            layer["_moe"]["expert_intermediate"] = _linear_out_in(t, conv1d)[0]
    elif module in _MLP_OF:
        mlp[_MLP_OF[module]] += n
        if info.role == "weight":
            out_f, in_f = _linear_out_in(t, conv1d)
            layer["_shapes"]["intermediate"] = in_f if module == "mlp_down" else out_f
    elif module == "mlp_gate_up":
        mlp["gate_proj"] += n // 2
        mlp["up_proj"] += n - n // 2
        if info.role == "weight":
            layer["_shapes"]["intermediate"] = _linear_out_in(t, conv1d)[0] // 2
    else:
        layer["other"] += n


def _finish_layer(layer: dict, i: int, head_dim: int | None, nh_cfg: int | None, nkv_cfg: int | None, conv1d: bool) -> None:
    attn, mlp, shapes = layer["attention"], layer["mlp"], layer.pop("_shapes")
    for t, role in shapes.pop("_qkv", []):  # fused q/k/v: split by head counts when known, else in thirds
        total = _linear_out_in(t, conv1d)[0] if role == "weight" else t.shape[0]
        q_out = nh_cfg * head_dim if nh_cfg and head_dim else total // 3
        kv_out = (total - q_out) // 2
        per_row = t.numel // total if total else 0
        attn["q_proj"] += q_out * per_row
        attn["k_proj"] += kv_out * per_row
        attn["v_proj"] += kv_out * per_row
        if role == "weight":
            shapes["q_proj"], shapes["k_proj"] = q_out, kv_out
    attn["total"] = sum(attn[k] for k in ATTN)
    heads_from = "config"
    nh = nkv = None
    if "q_proj" in shapes and head_dim:
        nh, nkv = shapes["q_proj"] // head_dim, shapes.get("k_proj", shapes["q_proj"]) // head_dim
        heads_from = "config" if (nh, nkv) == (nh_cfg, nkv_cfg) else "shapes (head_dim from config)"
    elif "q_proj" in shapes:
        head_dim = next((d for d in (128, 256, 96, 80, 64, 32, 16) if shapes["q_proj"] % d == 0 and shapes.get("k_proj", 0) % d == 0), 1)
        nh, nkv = shapes["q_proj"] // head_dim, shapes.get("k_proj", shapes["q_proj"]) // head_dim
        heads_from = f"shapes (no config; head_dim {head_dim} assumed)"
    attn.update(num_heads=nh or 0, num_kv_heads=nkv or 0, head_dim=head_dim, heads_from=heads_from)
    experts, moe = layer.pop("_experts"), layer.pop("_moe")
    if experts:
        mlp["type"] = mlp["type"].replace("MLP", "SparseMoeBlock")
        mlp["num_experts"] = len(experts)
        mlp["params_per_expert"] = max(experts.values())
        mlp["experts_total"] = sum(experts.values())
        mlp["router"] = moe["router"]
        mlp["shared_expert"] = moe["shared_expert"]
        mlp["intermediate_size"] = moe["expert_intermediate"] or 0
        mlp["total"] = mlp["experts_total"] + moe["router"] + moe["shared_expert"] + sum(mlp[k] for k in MLP)
    else:
        mlp["total"] = sum(mlp[k] for k in MLP) + moe["router"] + moe["shared_expert"]
        mlp["intermediate_size"] = shapes.get("intermediate", 0)
    if attn["total"] == 0:
        attn["type"] = "ZeroAttention"
    if mlp["total"] == 0:
        mlp["type"] = "ZeroMLP"
    layer["total"] = attn["total"] + mlp["total"] + layer["norm"] + layer["other"]
    layer["is_zero_layer"] = attn["total"] == 0 and mlp["total"] == 0
    ordered = {"layer_idx": i, "total": layer["total"], "attention": attn, "mlp": mlp, "norm": layer["norm"],
               "other": layer["other"], "is_zero_layer": layer["is_zero_layer"]}  # fmt: skip
    layer.clear()
    layer.update(ordered)
