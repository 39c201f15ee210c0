"""Parameter accounting from headers, checked against the transformers models' own parameter counts."""

from __future__ import annotations

import json
import mmap
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import streamscope
from streamscope.cli import app
from streamscope.io import safetensors as st_module

from conftest import build_causal_lm


def numel(module) -> int:
    return sum(p.numel() for p in module.parameters())


def load_model(directory: Path, model_type: str):
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(directory)
    cls = AutoModel if model_type == "bert" else AutoModelForCausalLM
    return cls.from_pretrained(directory, dtype=torch.float32)


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory, llama_dir, qwen2_dir) -> dict[str, Path]:
    from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel

    dirs = {"llama": llama_dir, "qwen2": qwen2_dir}
    dirs["mixtral"] = build_causal_lm(tmp_path_factory.mktemp("mixtral"), "mixtral", num_local_experts=4, num_experts_per_tok=2)
    dirs["qwen2_moe"] = build_causal_lm(tmp_path_factory.mktemp("qwen2moe"), "qwen2_moe", num_experts=4, num_experts_per_tok=2,
                                        moe_intermediate_size=32, shared_expert_intermediate_size=48)  # fmt: skip
    torch.manual_seed(0)
    gpt2 = tmp_path_factory.mktemp("gpt2")
    GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=300, n_positions=64, bos_token_id=0, eos_token_id=0)).save_pretrained(gpt2)
    dirs["gpt2"] = gpt2
    bert = tmp_path_factory.mktemp("bert")
    BertModel(BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, vocab_size=300)).save_pretrained(bert)
    dirs["bert"] = bert
    return dirs


def layer_modules(model, model_type: str):
    """(attention, mlp, [norms]) modules of each layer, in the model's own structure."""
    if model_type == "gpt2":
        return [(h.attn, h.mlp, [h.ln_1, h.ln_2]) for h in model.transformer.h]
    if model_type == "bert":
        return [(l.attention.self, [l.intermediate, l.output.dense], [l.attention.output.LayerNorm, l.output.LayerNorm], l.attention.output.dense)
                for l in model.encoder.layer]  # fmt: skip
    mlp = "mlp"
    out = []
    for l in model.model.layers:
        m = getattr(l, mlp, None) or getattr(l, "block_sparse_moe")
        out.append((l.self_attn, m, [l.input_layernorm, l.post_attention_layernorm]))
    return out


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "mixtral", "qwen2_moe", "gpt2", "bert"])
def test_counts_equal_transformers_modules(family_dirs, model_type):
    d = family_dirs[model_type]
    p = streamscope.params(d)
    model = load_model(d, model_type)
    assert p["total_params"] == numel(model)
    assert p["layer_summary"]["num_layers"] == len(layer_modules(model, model_type))
    for layer, mods in zip(p["layers"], layer_modules(model, model_type)):
        if model_type == "bert":
            attn, mlp_parts, norms, o = mods
            assert layer["attention"]["total"] == numel(attn) + numel(o)
            assert layer["mlp"]["total"] == sum(numel(m) for m in mlp_parts)
        else:
            attn, mlp, norms = mods
            assert layer["attention"]["total"] == numel(attn)
            assert layer["mlp"]["total"] == numel(mlp)
        assert layer["norm"] == sum(numel(n) for n in norms)
        assert layer["total"] == layer["attention"]["total"] + layer["mlp"]["total"] + layer["norm"]
        assert not layer["is_zero_layer"]


def test_details_per_family(family_dirs):
    llama = streamscope.params(family_dirs["llama"])
    a = llama["layers"][0]["attention"]
    assert (a["q_proj"], a["k_proj"], a["v_proj"], a["o_proj"]) == (64 * 64, 16 * 64, 16 * 64, 64 * 64)
    assert (a["num_heads"], a["num_kv_heads"], a["head_dim"], a["heads_from"]) == (8, 2, 8, "config")
    assert llama["layers"][0]["mlp"]["intermediate_size"] == 176 and llama["lm_head_params"] == 512 * 64
    assert not llama["tied_embeddings"]
    qwen = streamscope.params(family_dirs["qwen2"])
    assert qwen["tied_embeddings"] and qwen["lm_head_params"] == 0
    assert qwen["total_params"] == qwen["embedding_params"] + qwen["layer_summary"]["total_layer_params"] + qwen["other_params"]["norms"]
    assert qwen["layers"][0]["attention"]["q_proj"] == 64 * 64 + 64  # bias counted
    mix = streamscope.params(family_dirs["mixtral"])["layers"][0]["mlp"]
    assert (mix["num_experts"], mix["params_per_expert"], mix["router"], mix["intermediate_size"]) == (4, 3 * 176 * 64, 4 * 64, 176)
    qm = streamscope.params(family_dirs["qwen2_moe"])["layers"][0]["mlp"]
    assert (qm["num_experts"], qm["params_per_expert"], qm["shared_expert"]) == (4, 3 * 32 * 64, 3 * 48 * 64 + 64)
    g = streamscope.params(family_dirs["gpt2"])
    ga = g["layers"][0]["attention"]
    assert (ga["q_proj"], ga["k_proj"], ga["v_proj"]) == (64 * 64 + 64,) * 3  # fused c_attn split in thirds
    assert g["layers"][0]["mlp"]["intermediate_size"] == 256 and g["tied_embeddings"]
    b = streamscope.params(family_dirs["bert"])
    assert b["buffers"] == ["embeddings.position_ids"] or "embeddings.position_ids" not in b["buffers"]


def test_no_tensor_bytes_are_read(family_dirs, monkeypatch):
    """Count every byte read through open(); forbid mmap and pread: only headers may be read."""
    read = {}
    real_open = open

    class Counting:
        def __init__(self, f, path):
            self.f, self.path = f, str(path)

        def read(self, n=-1):
            data = self.f.read(n)
            read[self.path] = read.get(self.path, 0) + len(data)
            return data

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def counting_open(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        return Counting(f, path) if "b" in mode else f

    def forbidden(*args, **kwargs):
        raise AssertionError("tensor data was read")

    monkeypatch.setattr(st_module, "open", counting_open, raising=False)
    monkeypatch.setattr(mmap, "mmap", forbidden)
    monkeypatch.setattr(os, "preadv", forbidden)
    for model_type in ("llama", "mixtral"):
        d = family_dirs[model_type]
        read.clear()
        p = streamscope.params(d)
        assert p["total_params"] > 0
        shards = sorted(d.glob("*.safetensors"))
        assert sorted(read) == [str(s) for s in shards]
        for s in shards:
            header_len = int.from_bytes(s.read_bytes()[:8], "little")
            assert read[str(s)] == 8 + header_len  # the header and nothing else


def make_pruned(src: Path, dst: Path) -> Path:
    """Structured pruning of the 3-layer Llama fixture: layer 0 to 6 heads / 1 KV head and intermediate 120,
    layer 1 emptied (attention and MLP removed), layer 2 untouched. The config is copied unchanged."""
    dst.mkdir()
    state = {}
    for shard in src.glob("*.safetensors"):
        state.update(load_file(str(shard)))
    hd = 8
    p = "model.layers.0."
    state[p + "self_attn.q_proj.weight"] = state[p + "self_attn.q_proj.weight"][: 6 * hd].clone()
    state[p + "self_attn.k_proj.weight"] = state[p + "self_attn.k_proj.weight"][:hd].clone()
    state[p + "self_attn.v_proj.weight"] = state[p + "self_attn.v_proj.weight"][:hd].clone()
    state[p + "self_attn.o_proj.weight"] = state[p + "self_attn.o_proj.weight"][:, : 6 * hd].clone()
    for m in ("gate_proj", "up_proj"):
        state[p + f"mlp.{m}.weight"] = state[p + f"mlp.{m}.weight"][:120].clone()
    state[p + "mlp.down_proj.weight"] = state[p + "mlp.down_proj.weight"][:, :120].clone()
    for name in [n for n in state if n.startswith("model.layers.1.") and ("self_attn" in n or "mlp" in n)]:
        del state[name]
    save_file(state, str(dst / "model.safetensors"))
    (dst / "config.json").write_text((src / "config.json").read_text())
    return dst


def test_compare_structurally_pruned_pair(llama_dir, tmp_path):
    pruned = make_pruned(llama_dir, tmp_path / "pruned")
    c = streamscope.compare(llama_dir, pruned)
    assert c["schema_version"] == 3 and (c["before_name"], c["after_name"]) == (llama_dir.name, "pruned")
    layer_orig = 64 * 64 * 2 + 16 * 64 * 2 + 3 * 176 * 64 + 2 * 64  # attention + mlp + norms = 44160
    l0_attn = 48 * 64 + 8 * 64 * 2 + 64 * 48
    l0_mlp = 3 * 120 * 64
    l0 = c["layers"][0]
    assert l0["total"] == {"before": layer_orig, "after": l0_attn + l0_mlp + 128, "reduced": layer_orig - (l0_attn + l0_mlp + 128),
                           "reduction_ratio": pytest.approx((layer_orig - (l0_attn + l0_mlp + 128)) / layer_orig)}  # fmt: skip
    assert l0["attention"]["after"] == l0_attn and l0["mlp"]["after"] == l0_mlp
    assert l0["attention"]["num_heads"] == {"before": 8, "after": 6}
    assert l0["attention"]["num_kv_heads"] == {"before": 2, "after": 1}
    assert l0["mlp"]["intermediate_size"] == {"before": 176, "after": 120}
    l1 = c["layers"][1]
    assert l1["is_zero_layer"] and l1["total"]["after"] == 128 and l1["attention"]["reduction_ratio"] == 1.0
    assert l1["attention"]["num_heads"]["after"] == 0 and l1["mlp"]["intermediate_size"]["after"] == 0
    assert c["emptied_layers"] == [1]
    assert c["layers"][2]["total"]["reduced"] == 0
    removed = (layer_orig - 128) + (layer_orig - (l0_attn + l0_mlp + 128))
    assert c["total_params"]["reduced"] == removed and c["layer_params"]["reduced"] == removed
    assert c["total_params"]["reduction_ratio"] == pytest.approx(removed / 198080)
    assert len(c["tensors"]["only_before"]) == 7 and len(c["tensors"]["changed"]) == 7
    pp = streamscope.params(pruned)
    assert pp["layers"][0]["attention"]["heads_from"] == "shapes (head_dim from config)"


def test_compare_weights_streams_both_sides(llama_dir, tmp_path):
    """A rank-2 update of one matrix and one matrix zeroed: the deltas and an emptied layer are found."""
    dst = tmp_path / "tuned"
    dst.mkdir()
    state = {}
    for shard in llama_dir.glob("*.safetensors"):
        state.update(load_file(str(shard)))
    name = "model.layers.2.mlp.up_proj.weight"
    w = state[name].float()
    g = torch.Generator().manual_seed(0)
    delta = torch.randn(176, 2, generator=g) @ torch.randn(2, 64, generator=g) * 0.01
    state[name] = (w + delta).to(torch.bfloat16)
    for n in [n for n in state if n.startswith("model.layers.1.") and "norm" not in n]:
        state[n] = torch.zeros_like(state[n])
    save_file(state, str(dst / "model.safetensors"))
    (dst / "config.json").write_text((llama_dir / "config.json").read_text())
    c = streamscope.compare(llama_dir, dst, weights=True, memory_budget="16MB", rank=4)
    wd = c["weights"][name]
    w, new = w.double(), state[name].double()
    d = new - w
    assert wd["relative_frobenius_change"] == pytest.approx(float(d.norm() / w.norm()), rel=1e-5)
    assert wd["cosine_similarity"] == pytest.approx(float((w * new).sum() / (w.norm() * new.norm())), rel=1e-6)
    assert wd["max_abs_change"] == pytest.approx(float(d.abs().max()), rel=1e-6)
    exact = torch.linalg.svdvals(d)
    assert wd["diff_top_singular_values"][:2] == pytest.approx(exact[:2].tolist(), rel=1e-3)
    assert wd["diff_stable_rank"] == pytest.approx(float(d.norm() ** 2 / exact[0] ** 2), rel=1e-3)
    assert c["weights"]["model.layers.0.mlp.up_proj.weight"]["relative_frobenius_change"] == 0.0
    assert c["emptied_layers"] == [1]  # all of layer 1's weights are zero in the second checkpoint


def test_cli_params_and_compare(llama_dir, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["params", str(llama_dir), "--verbose"])
    assert r.exit_code == 0, r.output
    assert "Total parameters:     198,080" in r.output and "8Q:2KV" in r.output and "intermediate 176" in r.output
    pruned = make_pruned(llama_dir, tmp_path / "pruned")
    out = tmp_path / "cmp.json"
    r = runner.invoke(app, ["compare", str(llama_dir), str(pruned), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "8Q:2KV → 6Q:1KV" in r.output and "intermediate: 176 → 120" in r.output
    assert "Layer  1 [emptied]" in r.output and "Emptied layers (1): [1]" in r.output
    assert json.loads(out.read_text())["emptied_layers"] == [1]
    r = runner.invoke(app, ["params", str(llama_dir), "--json"])
    assert json.loads(r.output)["layer_summary"]["num_layers"] == 3
    r = runner.invoke(app, ["params", str(tmp_path / "nope")])
    assert r.exit_code == 1 and "no such file or directory" in r.output


def test_frames(llama_dir):
    df = streamscope.params_frame(streamscope.params(llama_dir))
    assert list(df["attention.num_heads"]) == [8, 8, 8] and "mlp.intermediate_size" in df


def test_vision_tower_is_its_own_group(tmp_path):
    from streamscope.synthetic import save_tensors

    t = lambda *s: torch.zeros(*s, dtype=torch.bfloat16)  # noqa: E731
    path = save_tensors(tmp_path / "m.safetensors", {
        "model.language_model.embed_tokens.weight": t(100, 16),
        "model.language_model.layers.0.self_attn.q_proj.weight": t(16, 16),
        "model.language_model.layers.0.self_attn.k_proj.weight": t(8, 16),
        "model.language_model.layers.0.input_layernorm.weight": t(16),
        "model.visual.blocks.0.attn.qkv.weight": t(48, 16),
        "model.visual.blocks.1.mlp.gate_proj.weight": t(32, 16),
        "model.visual.merger.mlp.0.weight": t(16, 64),
    })  # fmt: skip
    p = streamscope.params(path)
    v = p["towers"]["vision"]
    assert v["total"] == 48 * 16 + 32 * 16 + 16 * 64 and v["num_layers"] == 2
    assert p["layer_summary"] == {"num_layers": 1, "total_layer_params": 16 * 16 + 8 * 16 + 16}
    assert p["layers"][0]["attention"]["heads_from"].startswith("shapes (no config")
