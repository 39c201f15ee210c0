"""Name classification across model families."""

from __future__ import annotations

import pytest

from streamscope.io.names import classify

CASES = [
    # Llama / Mistral / Qwen2
    ("model.embed_tokens.weight", None, "embedding"),
    ("model.layers.3.self_attn.q_proj.weight", 3, "q_proj"),
    ("model.layers.3.self_attn.k_proj.weight", 3, "k_proj"),
    ("model.layers.3.self_attn.v_proj.weight", 3, "v_proj"),
    ("model.layers.3.self_attn.o_proj.weight", 3, "o_proj"),
    ("model.layers.3.self_attn.q_proj.bias", 3, "bias"),
    ("model.layers.3.mlp.gate_proj.weight", 3, "mlp_gate"),
    ("model.layers.3.mlp.up_proj.weight", 3, "mlp_up"),
    ("model.layers.3.mlp.down_proj.weight", 3, "mlp_down"),
    ("model.layers.3.input_layernorm.weight", 3, "norm"),
    ("model.layers.3.post_attention_layernorm.weight", 3, "norm"),
    ("model.norm.weight", None, "norm"),
    ("lm_head.weight", None, "output"),
    # Gemma / Qwen3
    ("model.layers.0.pre_feedforward_layernorm.weight", 0, "norm"),
    ("model.layers.0.self_attn.q_norm.weight", 0, "norm"),
    # Mixtral and Qwen-MoE
    ("model.layers.1.block_sparse_moe.gate.weight", 1, "moe_router"),
    ("model.layers.1.block_sparse_moe.experts.7.w1.weight", 1, "moe_expert"),
    ("model.layers.1.block_sparse_moe.experts.7.w2.weight", 1, "moe_expert"),
    ("model.layers.1.mlp.gate.weight", 1, "moe_router"),
    ("model.layers.1.mlp.experts.3.down_proj.weight", 1, "moe_expert"),
    ("model.layers.1.mlp.experts.gate_up_proj", 1, "moe_expert"),
    ("model.layers.1.mlp.shared_expert_gate.weight", 1, "moe_router"),
    # GPT-2
    ("transformer.wte.weight", None, "embedding"),
    ("transformer.wpe.weight", None, "embedding"),
    ("transformer.h.4.attn.c_attn.weight", 4, "qkv_proj"),
    ("transformer.h.4.attn.c_proj.weight", 4, "o_proj"),
    ("transformer.h.4.mlp.c_fc.weight", 4, "mlp_up"),
    ("transformer.h.4.mlp.c_proj.weight", 4, "mlp_down"),
    ("transformer.h.4.ln_1.weight", 4, "norm"),
    ("transformer.ln_f.bias", None, "norm"),
    # BERT
    ("embeddings.word_embeddings.weight", None, "embedding"),
    ("embeddings.LayerNorm.weight", None, "norm"),
    ("encoder.layer.2.attention.self.query.weight", 2, "q_proj"),
    ("encoder.layer.2.attention.self.key.bias", 2, "bias"),
    ("encoder.layer.2.attention.output.dense.weight", 2, "o_proj"),
    ("encoder.layer.2.intermediate.dense.weight", 2, "mlp_up"),
    ("encoder.layer.2.output.dense.weight", 2, "mlp_down"),
    ("encoder.layer.2.output.LayerNorm.weight", 2, "norm"),
    # Qwen2.5-VL
    ("model.language_model.layers.5.mlp.up_proj.weight", 5, "mlp_up"),
    ("visual.blocks.2.attn.qkv.weight", 2, "qkv_proj"),
    ("visual.blocks.2.attn.proj.weight", 2, "o_proj"),
    ("visual.merger.ln_q.weight", None, "norm"),
]


@pytest.mark.parametrize("name, layer, block_type", CASES)
def test_classify(name, layer, block_type):
    info = classify(name)
    assert (info.layer_index, info.block_type) == (layer, block_type)


def test_roles_towers_and_experts():
    assert classify("model.layers.3.self_attn.q_proj.bias").module == "q_proj"
    assert classify("visual.blocks.2.attn.qkv.weight").tower == "vision"
    assert classify("model.layers.1.block_sparse_moe.experts.7.w1.weight").expert == 7
    assert classify("model.layers.1.block_sparse_moe.experts.7.w1.weight").module == "mlp_gate"
