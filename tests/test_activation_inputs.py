"""Bad input to ``streamscope activations``: each case (found by fuzzing) is one clear line and exit code 1,
never a traceback or a hang. Through the command line (``CliRunner``), or ``activation.config.load`` where the
case is the config's alone; tiny models from ``tests/tiny_models.py`` with their ``config.json`` edited.

Memory and disk are what the machine running the tests has, so the cases about size fix them with
``monkeypatch`` on ``activation.limits`` (1 GiB of memory, 16 GiB of memory and swap, 1 GiB of free disk).
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from typer.testing import CliRunner

from streamscope.activation import config as config_mod
from streamscope.activation import data, limits, skeleton
from streamscope.cli import app
from streamscope.errors import OptionError
from tests import tiny_models

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

GiB = 1 << 30


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return lambda family: tiny_models.build(family, root / family)


@pytest.fixture
def small_machine(monkeypatch):
    """1 GiB of memory available, 16 GiB of memory and swap, 1 GiB of free disk."""
    monkeypatch.setattr(limits, "memory_available", lambda: GiB)
    monkeypatch.setattr(limits, "memory_total", lambda: 16 * GiB)
    monkeypatch.setattr(limits, "disk_free", lambda path: GiB)


def edited(src, dst, **changes):
    """A copy of the model directory ``src`` with ``changes`` made to its config.json."""
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(changes)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def activations(model_dir, tmp_path, *extra: str):
    args = ["activations", str(model_dir), "--out", str(tmp_path / "out"), "--data.num_samples", "1", "--data.seq_len", "8", "-q", *extra]
    return CliRunner().invoke(app, args)


def one_line(result, *needles: str) -> str:
    """The run failed with exit code 1 and one ``error:`` line holding every needle, and no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# config.json


def test_architectures_must_be_names(tiny, tmp_path):
    d = edited(tiny("llama"), tmp_path / "m", architectures=[123])
    one_line(activations(d, tmp_path), str(d / "config.json"), "'architectures' must be a list of transformers class names", "[123]")


def test_hidden_size_not_the_weights_names_tensor_and_shapes(tiny, tmp_path):
    d = edited(tiny("llama"), tmp_path / "m", hidden_size=64)
    line = one_line(activations(d, tmp_path), str(d), "tensor 'model.embed_tokens.weight' has shape [128, 32]", "expects [128, 64]")
    assert "hidden_size = 64" in line


def test_converted_experts_of_another_shape(tiny, tmp_path):
    """Mixtral's experts go through transformers' converter, which reports a wrong shape instead of raising."""
    d = edited(tiny("mixtral"), tmp_path / "m", intermediate_size=48)
    one_line(activations(d, tmp_path), str(d), "experts", "[4, 32, 64]", "expects [4, 32, 48]", "intermediate_size = 48")


def test_more_layers_than_the_checkpoint_fails_at_once(tiny, tmp_path):
    d = edited(tiny("llama"), tmp_path / "m", num_hidden_layers=200000)
    one_line(activations(d, tmp_path), str(d / "config.json"), "num_hidden_layers is 200000", "layers 0 to 1")


def test_positions_beyond_the_machine_are_refused_before_building(tiny, tmp_path, small_machine):
    """GPT-2 allocates its n_positions x n_embd position table while building; 2**34 positions are 2 TiB."""
    d = edited(tiny("gpt2"), tmp_path / "m", n_positions=2**34, bos_token_id=0, eos_token_id=0)
    one_line(activations(d, tmp_path), str(d / "config.json"), "transformer.wpe.weight", "n_positions = 17179869184")


def test_positions_that_cost_nothing_are_built(tiny, tmp_path, small_machine):
    """Llama computes rotary frequencies, no table of positions: 2**34 positions build as 64 do."""
    d = edited(tiny("llama"), tmp_path / "m", max_position_embeddings=2**34)
    sk = skeleton.build(d)
    assert len(sk.layers) == 2


def test_build_refuses_buffers_beyond_memory(small_machine):
    with pytest.raises(limits.BuildLimitError, match=r"c\.json: building this model computes 2\.0 GiB of buffers \(ids \[268435456\]"):
        limits.check_build("c.json", [("ids", (2**28,), 2**31), ("inv_freq", (4,), 16)], ("w", (4, 4), 64))
    limits.check_build("c.json", [("inv_freq", (4,), 16)], ("w", (4, 4), 64))


# data sizes


def test_num_samples_beyond_memory_and_disk(tiny, tmp_path, small_machine):
    one_line(activations(tiny("llama"), tmp_path, "--data.num_samples", "1000000000", "--memory-budget", "64MB"), "data.num_samples 1000000000")


def test_hidden_states_checked_against_budget_plus_free_disk(tmp_path, small_machine):
    out = tmp_path / "not" / "yet"
    assert limits.check_hidden_states(64, 1024, 4096, torch.float32, budget=GiB // 2, out_dir=out) == GiB  # half in memory, half spilled
    with pytest.raises(limits.LimitError, match=rf"data.num_samples 1000000000 x data.seq_len 8 x hidden size 32 x 4 bytes = 953.7 GiB .*{out}"):
        limits.check_hidden_states(10**9, 8, 32, torch.float32, budget=GiB, out_dir=out)
    with pytest.raises(limits.LimitError, match="not spilled"):  # bfloat16 stays in memory
        limits.check_hidden_states(256, 1024, 4096, torch.bfloat16, budget=None, out_dir=out)  # 2 GiB


def test_hidden_size_of_each_config_kind():
    import transformers as t

    heads = {"num_attention_heads": 4, "num_key_value_heads": 2}
    assert limits.hidden_size(t.LlamaConfig(hidden_size=48, **heads)) == 48
    assert limits.hidden_size(t.GPT2Config(n_embd=40, n_head=4)) == 40
    assert limits.hidden_size(t.Qwen2_5_VLConfig(text_config={"hidden_size": 24, **heads}, vision_config={"hidden_size": 16})) == 24


def test_disk_free_of_a_directory_not_made_yet(tmp_path):
    assert limits.disk_free(tmp_path / "a" / "b") > 0 and not (tmp_path / "a").exists()


# the run's config


def test_config_not_utf8(tiny, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_bytes(b"data:\n  seed: \xff\xfe\n")
    with pytest.raises(OptionError, match=r"run\.yaml: not UTF-8 text"):
        config_mod.load(cfg)
    one_line(activations(tiny("llama"), tmp_path, "--config", str(cfg)), str(cfg), "not UTF-8")


@pytest.mark.parametrize(("key", "value", "expect"), [
    ("data.seed", str(2**70), f"data.seed must be an integer from -9223372036854775808 to 18446744073709551615 (the seeds torch.Generator takes); got {2**70}"),
    ("data.source", "5", "data.source must be text"),
    ("data.source", "[a, b]", "data.source must be text"),
    ("data.custom.text_column", "[a, b]", "data.custom.text_column must be one column name (text); got ['a', 'b']"),
])  # fmt: skip
def test_config_values_of_the_wrong_kind(tiny, tmp_path, key, value, expect):
    one_line(activations(tiny("llama"), tmp_path, f"--{key}", value), expect)
    *sections, last = key.split(".")
    cfg = tmp_path / "run.yaml"
    cfg.write_text("".join(f"{'  ' * i}{s}:\n" for i, s in enumerate(sections)) + f"{'  ' * len(sections)}{last}: {value}\n")
    with pytest.raises(OptionError, match=rf"^{re.escape(str(cfg))}: {re.escape(expect[:20])}"):  # a value from the file names the file
        config_mod.load(cfg)
    good = {"data.seed": "0", "data.source": "random", "data.custom.text_column": "text"}[key]
    assert config_mod.load(cfg, {key: good})  # the command line wins


def test_seed_at_the_edges_of_torch(tmp_path):
    for seed in (config_mod.SEED_MIN, config_mod.SEED_MAX):
        assert config_mod.load(None, {"data.seed": str(seed)})["data"]["seed"] == seed
        assert data.samples("random", 1, 4, seed, vocab_size=10).shape == (1, 4)
    with pytest.raises(OptionError, match="data.seed"):
        data.samples("random", 1, 4, 2**70, vocab_size=10)


# data files


def test_csv_cell_longer_than_csv_limit_is_read(tmp_path):
    f = tmp_path / "long.csv"
    f.write_text('id,text\n1,"' + "word " * 40000 + '"\n2,"two\nlines"\n')  # 200000 characters: past csv's 131072
    text = data.read_text(f"custom:{f}")
    assert text.startswith("word word") and text.endswith("two\nlines") and len(text) == 200000 + 2 + 9


def test_csv_cell_beyond_the_text_limit(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_TEXT_CHARS", 150000)
    f = tmp_path / "long.csv"
    f.write_text("text\n" + "a" * 200000 + "\n")
    one_line(activations(tiny("llama"), tmp_path, "--data.source", f"custom:{f}"), str(f), "line 2: not CSV", "field larger than field limit")


@pytest.mark.parametrize("suffix", ["json", "jsonl"])
def test_json_nested_too_deep(tiny, tmp_path, suffix):
    f = tmp_path / f"deep.{suffix}"
    f.write_text("[" * 100000 + "]" * 100000 + "\n")
    one_line(activations(tiny("llama"), tmp_path, "--data.source", f"custom:{f}"), str(f), "nested too deeply")


def test_vocab_json_holding_a_list(tiny, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(tiny("llama"), d)
    (d / "vocab.json").write_text("[1, 2, 3]")
    text = tmp_path / "t.txt"
    text.write_text("hello world " * 50)
    line = one_line(activations(d, tmp_path, "--data.source", f"custom:{text}"), str(d))
    assert "tokenizer" in line or "vocab" in line
