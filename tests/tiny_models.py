"""Tiny models of each family, built from configs with transformers and saved sharded (random weights).

``build(family, directory)`` returns the directory; the same seed gives the same weights.
``build_hub(family, directory)`` adds what a hub repo of that family holds beside the weights: a real tokenizer
trained with ``tokenizers`` on ``TEXT`` (the family's kind: byte-level BPE for GPT-2, Llama 3 and Qwen, a
SentencePiece-style BPE with ``▁`` for Mistral, Phi-3 and Gemma), saved through transformers with the
tokenizer class, special tokens and chat template the family's hub repos name, and ``generation_config.json``.
Same text, same seed: same files.
"""

from __future__ import annotations

import json
from pathlib import Path

COMMON = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=64)  # fmt: skip


def configs(**ids):
    """family -> model builder; ``ids`` (``vocab_size``, ``bos_token_id``, ``eos_token_id``, ``pad_token_id``)
    override ``COMMON``'s vocabulary of 128 tokens and the configs' default special-token ids."""
    import transformers as t

    c = {**COMMON, **ids}
    gpt2 = {"vocab_size": c["vocab_size"], **{k: v for k, v in ids.items() if k != "vocab_size"}}
    return {
        "llama": lambda: t.LlamaForCausalLM(t.LlamaConfig(**c)),
        "qwen2": lambda: t.Qwen2ForCausalLM(t.Qwen2Config(**c)),
        "qwen3": lambda: t.Qwen3ForCausalLM(t.Qwen3Config(**c, head_dim=8)),
        "mistral": lambda: t.MistralForCausalLM(t.MistralConfig(**c, sliding_window=None)),
        "mixtral": lambda: t.MixtralForCausalLM(t.MixtralConfig(**c, num_local_experts=4, num_experts_per_tok=2)),
        "qwen2_moe": lambda: t.Qwen2MoeForCausalLM(t.Qwen2MoeConfig(**c, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=16,
                                                                   shared_expert_intermediate_size=32)),
        "qwen3_moe": lambda: t.Qwen3MoeForCausalLM(t.Qwen3MoeConfig(**c, head_dim=8, num_experts=8, num_experts_per_tok=2,
                                                                   moe_intermediate_size=16, norm_topk_prob=True)),
        "deepseek_v3": lambda: _deepseek_v3(t, c),
        "gemma": lambda: t.GemmaForCausalLM(t.GemmaConfig(**c, head_dim=8)),
        "gemma2": lambda: t.Gemma2ForCausalLM(t.Gemma2Config(**c, head_dim=8, sliding_window=16)),
        "phi3": lambda: t.Phi3ForCausalLM(t.Phi3Config(**{"pad_token_id": 0, **c})),  # its default pad id is past 128
        "gpt2": lambda: t.GPT2LMHeadModel(t.GPT2Config(**gpt2, n_embd=32, n_layer=2, n_head=4, n_positions=64)),
        "qwen2_5_vl": lambda: t.Qwen2_5_VLForConditionalGeneration(t.Qwen2_5_VLConfig(
            text_config=dict(**c, rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]}),
            vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=4, out_hidden_size=32, fullatt_block_indexes=[1]),
            **{k: v for k, v in ids.items() if k != "vocab_size"})),
    }  # fmt: skip


def _deepseek_v3(t, c):
    """DeepSeek-V3 in small: a dense first layer, then MoE layers of 8 routed experts in 4 groups (tokens go to
    the best 2 groups, then the best 2 experts of those, on sigmoid scores plus the score-correction bias) and
    one shared expert; multi-head latent attention. The bias is random (the saved model's is trained, not zero)."""
    import torch

    cfg = t.DeepseekV3Config(**{**c, "num_hidden_layers": 3}, first_k_dense_replace=1, n_routed_experts=8, n_group=4, topk_group=2,
                             num_experts_per_tok=2, n_shared_experts=1, moe_intermediate_size=16, q_lora_rank=16, kv_lora_rank=16,
                             qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=8, head_dim=4)  # fmt: skip
    model = t.DeepseekV3ForCausalLM(cfg)
    with torch.no_grad():
        for layer in model.model.layers[1:]:
            layer.mlp.gate.e_score_correction_bias.normal_(0.0, 0.05)
    return model


def build(family: str, directory: Path, seed: int = 0, shard: str = "20KB", **ids) -> Path:
    import torch

    directory = Path(directory)
    if (directory / "config.json").exists():
        return directory
    torch.manual_seed(seed)
    model = configs(**ids)[family]()
    model.eval()
    model.save_pretrained(directory, max_shard_size=shard)
    return directory


#: Calibration and training text: plain English, with a `` brutal`` frequent enough to be one token and ``$$``.
TEXT = """\
The winter that year was brutal. Snow fell on the village for nine days, and the river froze from bank to bank.
The old miller said he had never seen a winter so brutal, and he had seen seventy of them. Prices at the market
rose every week: a sack of flour cost $$ that nobody had, and the baker wrote the price on a slate by the door.

In the spring the roads were mud, and the carts could not reach the town. The children of the village walked to
the school on the hill, and the teacher read to them from a book about the sea. She said the sea was brutal in
winter too, and that the sailors who came home were the lucky ones. The children wrote the word brutal on their
slates, and the teacher drew a ship with three sails.

By the summer the fields were green again. The farmers worked from the first light to the last, and the market
was full of bread, cheese, apples and fish. The miller said the brutal winter was the price of a good summer,
and the baker laughed and wiped the $$ from his slate. In the evening the people of the village sat by the river
and talked about the weather, the prices, the school and the sea, as people do in every village in the world.

The next winter was mild. The snow came late and left early, and the river never froze. Nobody called it brutal,
and nobody remembered the price of flour. The teacher read the book about the sea again, and the children drew
ships on their slates, and the miller counted the sacks of flour in his mill and said that the world was kind.
"""

_BOS = "{{ bos_token }}"
_CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
           "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
_LLAMA3 = (_BOS + "{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
           "message['content'] + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
           "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
_MISTRAL = (_BOS + "{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
            "{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}")
_GEMMA = (_BOS + "{% for message in messages %}{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role'])"
          " + '\\n' + message['content'] + '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}")
_DEEPSEEK = (_BOS + "{% for message in messages %}{% if message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}"
             "{% else %}{{ '<｜Assistant｜>' + message['content'] + eos_token }}{% endif %}{% endfor %}"
             "{% if add_generation_prompt %}{{ '<｜Assistant｜>' }}{% endif %}")
_PHI3 = ("{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}{% endfor %}"
         "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}")

_QWEN = dict(cls="Qwen2Tokenizer", kind="byte_level", special=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
             tokens=dict(eos_token="<|im_end|>", pad_token="<|endoftext|>"), chat=_CHATML)
_LLAMA2 = dict(cls="LlamaTokenizer", kind="sentencepiece", special=["<unk>", "<s>", "</s>"],
               tokens=dict(unk_token="<unk>", bos_token="<s>", eos_token="</s>"), chat=_MISTRAL)
_GEMMA_T = dict(cls="GemmaTokenizer", kind="sentencepiece", special=["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"],
                tokens=dict(pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>", mask_token="<mask>"), chat=_GEMMA)
#: What the hub repos of each family hold: the tokenizer class named in tokenizer_config.json (transformers 5
#: rebuilds that class's pre-tokenizer and decoder, so ours are trained with the same), the special tokens, the
#: chat template (GPT-2's repo has none), and the layout of the files: "v4" (most repos: the template inside
#: tokenizer_config.json, a special_tokens_map.json) or "v5" (what transformers 5 writes: chat_template.jinja).
HUB = {
    "llama": dict(cls="PreTrainedTokenizerFast", kind="byte_level", special=["<|begin_of_text|>", "<|end_of_text|>",
                  "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
                  tokens=dict(bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>"), chat=_LLAMA3, layout="v4"),
    "qwen2": dict(_QWEN, layout="v4", files=("vocab.json", "merges.txt")),
    "qwen3": dict(_QWEN, layout="v5"),
    "qwen2_5_vl": dict(_QWEN, layout="v4"),
    "mistral": dict(_LLAMA2, layout="v4"),
    "mixtral": dict(_LLAMA2, layout="v4"),
    "qwen2_moe": dict(_QWEN, layout="v4"),
    "qwen3_moe": dict(_QWEN, layout="v5"),
    "deepseek_v3": dict(cls="PreTrainedTokenizerFast", kind="byte_level", special=["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>",
                        "<｜User｜>", "<｜Assistant｜>"], tokens=dict(bos_token="<｜begin▁of▁sentence｜>", eos_token="<｜end▁of▁sentence｜>"),
                        chat=_DEEPSEEK, layout="v4"),
    "phi3": dict(_LLAMA2, special=["<unk>", "<s>", "</s>", "<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>"],
                 tokens=dict(unk_token="<unk>", bos_token="<s>", eos_token="<|endoftext|>", pad_token="<|endoftext|>"), chat=_PHI3, layout="v4"),
    "gemma": dict(_GEMMA_T, layout="v4"),
    "gemma2": dict(_GEMMA_T, layout="v5"),
    "gpt2": dict(cls="GPT2Tokenizer", kind="byte_level", special=["<|endoftext|>"],
                 tokens=dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"), chat=None, layout="v4",
                 files=("vocab.json", "merges.txt")),
}  # fmt: skip


def tokenizer(family: str, vocab_size: int = 400, text: str = TEXT):
    """The family's tokenizer trained on ``text``: a ``transformers`` tokenizer built with
    ``PreTrainedTokenizerFast(tokenizer_object=...)`` around a ``tokenizers`` BPE whose normalizer,
    pre-tokenizer and decoder are those of the family's tokenizer class."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    spec = HUB[family]
    proto = getattr(transformers, "Qwen2Tokenizer" if spec["cls"] == "PreTrainedTokenizerFast" else spec["cls"])()._tokenizer
    byte_level = spec["kind"] == "byte_level"
    tok = Tokenizer(models.BPE(byte_fallback=not byte_level, unk_token=None if byte_level else "<unk>", fuse_unk=not byte_level))
    tok.normalizer = proto.normalizer
    # SentencePiece learns pieces within words (``▁the``, a newline on its own); the class's own pre-tokenizer
    # may keep the text whole
    tok.pre_tokenizer = proto.pre_tokenizer if byte_level else pre_tokenizers.Sequence(
        [pre_tokenizers.Split("\n", "isolated"), pre_tokenizers.Metaspace(prepend_scheme="first", split=True)])
    alphabet = pre_tokenizers.ByteLevel.alphabet() if byte_level else []
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=spec["special"], initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator([text], trainer)
    tok.pre_tokenizer, tok.decoder = proto.pre_tokenizer, proto.decoder
    if family in ("llama", "deepseek_v3"):  # Llama 3 and DeepSeek-V3 put their BOS in front through the post-processor
        bos = spec["tokens"]["bos_token"]
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                           special_tokens=[(bos, tok.token_to_id(bos))])  # fmt: skip
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, **spec["tokens"])
    if spec["chat"]:
        fast.chat_template = spec["chat"]
    return fast


def build_hub(family: str, directory: Path, seed: int = 0, shard: str = "20KB", vocab_size: int = 400) -> Path:
    """A directory laid out as the family's hub repos are: the tiny model of ``build`` (its vocabulary rounded up
    to a multiple of 64 over the tokenizer's, as real models pad it), ``generation_config.json``,
    ``tokenizer.json``, ``tokenizer_config.json`` and the chat template; returns the directory."""
    directory = Path(directory)
    if (directory / "config.json").exists():
        return directory
    spec = HUB[family]
    tok = tokenizer(family, vocab_size)
    named = tok.special_tokens_map
    ids = {f"{k}_id": tok.convert_tokens_to_ids(named[k]) if k in named else None for k in ("bos_token", "eos_token")}
    if family in ("gemma", "gemma2", "phi3"):  # the configs of those repos name a pad token (its row starts at zero)
        ids["pad_token_id"] = tok.pad_token_id
    build(family, directory, seed, shard, vocab_size=-(-len(tok) // 64) * 64, **ids)
    tok.save_pretrained(directory)
    config = json.loads((directory / "tokenizer_config.json").read_text())
    config["tokenizer_class"] = spec["cls"]
    if spec["layout"] == "v4":
        config.pop("backend", None)  # written by transformers 5 only
        template = directory / "chat_template.jinja"
        if template.exists():
            config["chat_template"] = template.read_text()
            template.unlink()
        (directory / "special_tokens_map.json").write_text(json.dumps(dict(tok.special_tokens_map), indent=2) + "\n")
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    if "files" in spec:  # GPT-2's and Qwen's repos also hold the vocabulary and merges on their own
        tok.backend_tokenizer.model.save(str(directory))
    return directory
