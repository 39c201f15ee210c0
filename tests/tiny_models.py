"""Tiny models of each family, built from configs with transformers and saved sharded (random weights).

``build(family, directory)`` returns the directory; the same seed gives the same weights.
"""

from __future__ import annotations

from pathlib import Path

COMMON = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=64)  # fmt: skip


def configs():
    import transformers as t

    return {
        "llama": lambda: t.LlamaForCausalLM(t.LlamaConfig(**COMMON)),
        "qwen2": lambda: t.Qwen2ForCausalLM(t.Qwen2Config(**COMMON)),
        "qwen3": lambda: t.Qwen3ForCausalLM(t.Qwen3Config(**COMMON, head_dim=8)),
        "mistral": lambda: t.MistralForCausalLM(t.MistralConfig(**COMMON, sliding_window=None)),
        "mixtral": lambda: t.MixtralForCausalLM(t.MixtralConfig(**COMMON, num_local_experts=4, num_experts_per_tok=2)),
        "gemma": lambda: t.GemmaForCausalLM(t.GemmaConfig(**COMMON, head_dim=8)),
        "gemma2": lambda: t.Gemma2ForCausalLM(t.Gemma2Config(**COMMON, head_dim=8, sliding_window=16)),
        "phi3": lambda: t.Phi3ForCausalLM(t.Phi3Config(**COMMON, pad_token_id=0)),
        "gpt2": lambda: t.GPT2LMHeadModel(t.GPT2Config(vocab_size=128, n_embd=32, n_layer=2, n_head=4, n_positions=64)),
        "qwen2_5_vl": lambda: t.Qwen2_5_VLForConditionalGeneration(t.Qwen2_5_VLConfig(
            text_config=dict(**COMMON, rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]}),
            vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=4, out_hidden_size=32, fullatt_block_indexes=[1]))),
    }  # fmt: skip


def build(family: str, directory: Path, seed: int = 0, shard: str = "20KB") -> Path:
    import torch

    directory = Path(directory)
    if (directory / "config.json").exists():
        return directory
    torch.manual_seed(seed)
    model = configs()[family]()
    model.eval()
    model.save_pretrained(directory, max_shard_size=shard)
    return directory
