"""Tensor-name classification: layer index, block type, module and role, from the name alone.

Covers Llama, Qwen2/2.5/3, Qwen2.5-VL, Mistral/Mixtral, Qwen-MoE, Gemma, GPT-2, BERT and GGUF (llama.cpp) naming.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BLOCK_TYPES = (
    "embedding", "q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj",
    "mlp_gate", "mlp_up", "mlp_down", "mlp_gate_up", "moe_expert", "moe_router",
    "norm", "output", "bias", "other",
)  # fmt: skip

_LAYER = re.compile(r"(?:^|\.)(?:layers|layer|h|blocks|block|blk|decoder\.layers|encoder\.layer)\.(\d+)\.")
_FUSED_PARAMS = {"gate_up_proj", "gate_proj", "up_proj", "down_proj"}
_EXPERT = re.compile(r"\.experts\.(\d+)\.")

# (pattern searched in the module path, module name); first match wins.
_MODULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p, re.IGNORECASE if m == "norm" else 0), m)
    for p, m in [
        (r"(?:^|\.)(?:embed_tokens|wte|word_embeddings|tok_embeddings|embed_in|shared|token_embd)$", "embedding"),
        (r"(?:^|\.)ffn_(?:gate|up|down)_exps$", "moe_expert"),  # GGUF names from here to the next comment
        (r"(?:^|\.)ffn_gate_inp$", "moe_router"),
        (r"(?:^|\.)attn_q$", "q_proj"),
        (r"(?:^|\.)attn_k$", "k_proj"),
        (r"(?:^|\.)attn_v$", "v_proj"),
        (r"(?:^|\.)attn_qkv$", "qkv_proj"),
        (r"(?:^|\.)attn_output$", "o_proj"),
        (r"(?:^|\.)ffn_gate$", "mlp_gate"),
        (r"(?:^|\.)ffn_up$", "mlp_up"),
        (r"(?:^|\.)ffn_down$", "mlp_down"),  # end of GGUF names
        (r"(?:^|\.)(?:wpe|position_embeddings|token_type_embeddings|embed_positions)$", "embedding"),
        (r"(?:^|\.)(?:lm_head|embed_out)$|^output$", "output"),
        (r"(?:^|\.)(?:[a-z_]*norm|ln(?:_[a-z0-9]+)?)$", "norm"),
        (r"(?:^|\.)(?:block_sparse_moe|mlp|moe|feed_forward)\.gate$|\.router$|\.shared_expert_gate$", "moe_router"),
        (r"(?:^|\.)(?:q_proj|query|wq)$", "q_proj"),
        (r"(?:^|\.)(?:k_proj|key|wk)$", "k_proj"),
        (r"(?:^|\.)(?:v_proj|value|wv)$", "v_proj"),
        (r"(?:^|\.)(?:c_attn|qkv_proj|qkv|query_key_value|W_pack|Wqkv)$", "qkv_proj"),
        (r"(?:^|\.)(?:o_proj|out_proj|wo)$|attention\.output\.dense$|attn\.(?:c_proj|proj)$|self_attention\.dense$", "o_proj"),
        (r"(?:^|\.)gate_up_proj$", "mlp_gate_up"),
        (r"(?:^|\.)(?:gate_proj|w1)$", "mlp_gate"),
        (r"(?:^|\.)(?:up_proj|w3|c_fc|fc1|fc_in|dense_h_to_4h)$|intermediate\.dense$", "mlp_up"),
        (r"(?:^|\.)(?:down_proj|w2|fc2|fc_out|dense_4h_to_h)$|mlp\.c_proj$|layer\.\d+\.output\.dense$", "mlp_down"),
    ]
]


@dataclass(frozen=True)
class NameInfo:
    """What a tensor name says about the tensor."""

    layer_index: int | None  # decoder/encoder layer number, None outside the layer stack
    block_type: str  # one of BLOCK_TYPES
    module: str  # the module kind (block type of the owning module, e.g. "q_proj" for a q_proj bias)
    role: str  # "weight", "bias" or another parameter suffix
    expert: int | None = None  # expert number inside an MoE layer
    tower: str = "language"  # "language" or "vision"


def classify(name: str) -> NameInfo:
    """Classify a tensor name.

    Example:
        >>> classify("model.layers.3.self_attn.q_proj.bias")
        NameInfo(layer_index=3, block_type='bias', module='q_proj', role='bias', expert=None, tower='language')
    """
    path, _, role = name.rpartition(".")
    if not path or role in _FUSED_PARAMS:
        path, role = name, "weight"  # fused expert tensors are bare parameters: mlp.experts.gate_up_proj
    tower = "vision" if re.search(r"(?:^|\.)(?:visual|vision_tower|vision_model|vision)\.", name) else "language"
    m = _LAYER.search(name)
    layer = int(m.group(1)) if m else None
    e = _EXPERT.search(name)
    expert = int(e.group(1)) if e else None
    module = "other"
    for pattern, kind in _MODULES:
        if pattern.search(path):
            module = kind
            break
    if expert is not None or ".experts." in name and module.startswith("mlp"):
        block_type = "moe_expert"
    elif role == "bias" and module not in ("norm", "embedding", "other"):
        block_type = "bias"
    else:
        block_type = module
    if module == "embedding" and tower == "vision":
        block_type = module = "other"
    return NameInfo(layer, block_type, module, role, expert, tower)


def compile_select(select: str | None) -> re.Pattern[str] | None:
    """Compile a ``--select`` regex (matched with ``re.search``) with an error that names it."""
    if not select:
        return None
    try:
        return re.compile(select)
    except re.error as e:
        from streamscope.errors import OptionError

        raise OptionError(f"--select {select!r} is not a valid regular expression: {e}") from e
