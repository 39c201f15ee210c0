"""Activation analysis: the streamed forward against transformers' in-memory forward, the statistics against
hooks on the in-memory model, the output formats, and bad input.

Exactness: the streamed forward runs the same modules on the same float32 weights and inputs; it batches
samples per layer call where the reference below runs one sample at a time, so results differ only by the
order of float32 sums inside the matrix products; the issue's bound of 1e-5 is what is asserted.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

import streamscope
from streamscope.activation import config as config_mod
from streamscope.errors import OptionError
from tests import tiny_models

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

FAMILIES = ["llama", "qwen2", "qwen3", "mistral", "mixtral", "gemma", "gemma2", "phi3", "gpt2", "qwen2_5_vl"]
SMALL = {"data.num_samples": 2, "data.seq_len": 12}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return lambda family: tiny_models.build(family, root / family)


def reference(model_dir, ids, architecture):
    import transformers

    full = getattr(transformers, architecture).from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        outs = [full(input_ids=ids[s : s + 1], output_hidden_states=True) for s in range(ids.shape[0])]
    logits = torch.cat([o.logits if hasattr(o, "logits") and o.logits is not None else o.last_hidden_state for o in outs])
    hidden = [torch.cat([o.hidden_states[i] for o in outs]) for i in range(len(outs[0].hidden_states))]
    return full, logits, hidden


@pytest.mark.parametrize("family", FAMILIES)
def test_streamed_forward_equals_in_memory_forward(models, tmp_path, family):
    d = models(family)
    r = streamscope.activations(d, out=tmp_path / "o", overrides=SMALL, echo=lambda s: None)
    ids = torch.from_numpy(_zarr(tmp_path / "o")["activations/input_ids"][:])
    assert ids.shape == (2, 12)
    from streamscope.activation.profile import profile

    again = profile(d, config_mod.load(None, SMALL), tmp_path / "k", echo=lambda s: None, keep_tensors=True)
    fwd = again["forward"]
    _, logits, hidden = reference(d, ids, r["run"]["architecture"])
    assert (fwd.logits - logits).abs().max().item() <= 1e-5
    for i, out in enumerate(fwd.layer_outputs[:-1]):  # the last layer's output is normed by the model first
        assert (out - hidden[i + 1]).abs().max().item() <= 1e-5, f"layer {i}"
    assert r["run"]["dtype"] == "float32" and r["run"]["n_layers"] == 2
    # every byte once; where the tail needs the embeddings again (a tied head, BERT-style embeddings), those twice
    assert r["run"]["bytes_read"] >= r["run"]["checkpoint_bytes"]


def test_read_ahead_without_posix_fadvise(models, tmp_path, monkeypatch):
    """Where the OS has no ``posix_fadvise`` the next layer is read ahead through a small buffer: same logits,
    and the bytes that feed the model are still read once."""
    import os

    from streamscope.activation import forward, skeleton
    from streamscope.io.checkpoint import CheckpointIndex

    d = models("llama")
    monkeypatch.delattr(os, "posix_fadvise")
    ids = torch.randint(0, 100, (2, 12), generator=torch.Generator().manual_seed(0))
    index = CheckpointIndex.from_path(d)
    r = forward.run(skeleton.build(d, dtype=torch.float32), index, ids, torch.float32, torch.device("cpu"))
    _, logits, _ = reference(d, ids, "LlamaForCausalLM")
    assert (r.logits - logits).abs().max().item() <= 1e-5
    assert r.bytes_read == index.total_bytes


def test_statistics_equal_hooks_on_the_in_memory_model(models, tmp_path):
    d = models("llama")
    overrides = {**SMALL, "visualization.enabled.distribution": True, "outlier.threshold": 3}
    r = streamscope.activations(d, out=tmp_path / "o", overrides=overrides, echo=lambda s: None)
    ids = torch.from_numpy(_zarr(tmp_path / "o")["activations/input_ids"][:])
    full, _, _ = reference(d, ids, "LlamaForCausalLM")
    seen: dict[str, list] = {}
    handles = [m.register_forward_hook(lambda mod, a, o, n=n: seen.setdefault(n, []).append((a[0].detach(), o.detach())))
               for n, m in full.named_modules() if isinstance(m, torch.nn.Linear)]  # fmt: skip
    with torch.no_grad():
        for s in range(ids.shape[0]):
            full(input_ids=ids[s : s + 1])
    for h in handles:
        h.remove()
    # layer 0's statistics were reduced to results when layer 1 was loaded; layer 1's at the end
    for name in ("model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"):
        x = torch.cat([a for a, _ in seen[name]]).abs().reshape(-1)
        got = r["modules"][name]["input"]
        top = torch.topk(x, 3).values
        assert [got["top1"], got["top2"], got["top3"]] == pytest.approx(top.tolist(), rel=1e-6)
        assert got["min"] == pytest.approx(float(x.min()), rel=1e-6, abs=1e-12)
        assert got["mean_abs"] == pytest.approx(float(x.double().mean()), rel=1e-6)
        median = float(x.median())
        assert median * (1 - 2**-7) <= got["median"] <= median  # bf16 truncation of |x|: within one bf16 step below
        assert got["count"] == x.numel()
        signed = torch.cat([a for a, _ in seen[name]]).reshape(-1)  # the distribution is of x itself
        dist = r["distribution"]["modules"][name]
        hi, lo = float(signed.max()), float(signed.min())
        assert hi * (1 - 2**-7) <= dist["max"] <= hi and lo <= dist["min"] <= lo * (1 - 2**-7)
    scales = torch.load(tmp_path / "o" / "act_scales.pt", weights_only=True)
    for n, pairs in seen.items():
        x = torch.cat([a for a, _ in pairs])
        assert torch.equal(scales[n], x.abs().reshape(-1, x.shape[-1]).amax(dim=0)), n
    assert "lm_head" in scales  # the head's input: the tail runs too
    import gguf

    sums = {t.name: np.asarray(t.data).reshape(-1) for t in gguf.GGUFReader(str(tmp_path / "o" / "imatrix.gguf")).tensors}
    for i in range(2):  # layer 0's sums were made float32 when layer 1 was loaded
        x = torch.cat([a for a, _ in seen[f"model.layers.{i}.mlp.down_proj"]]).double()
        np.testing.assert_allclose(sums[f"blk.{i}.ffn_down.weight.in_sum2"], x.reshape(-1, x.shape[-1]).square().sum(dim=0).numpy(), rtol=1e-6)
    assert set(r["distribution"]["modules"]) == {f"model.layers.{i}.mlp.down_proj" for i in range(2)}


@pytest.mark.parametrize("n", [1, 3, 4095, 4096, 5000, 1 << 20])
def test_largest_three_values_equal_topk(n):
    from streamscope.activation.stats import largest3

    g = torch.Generator().manual_seed(n)
    cases = [torch.randn(n, generator=g)]
    if n >= 5000:
        a = torch.randn(n, generator=g)
        a[1024:1027] = 9.0  # the three largest in one row of the reduction
        b = torch.randn(n, generator=g)
        b[[5, n - 1, n - 2]] = 7.0  # two in the values after the last whole row, ties
        cases += [a, b]
    for x in cases:
        assert largest3(x) == torch.topk(x, min(3, n)).values.tolist()


def test_bf16_checkpoint_computes_in_float32(tmp_path):
    import transformers

    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**tiny_models.COMMON)).to(torch.bfloat16)
    model.save_pretrained(tmp_path / "m", max_shard_size="20KB")  # config.json says bfloat16
    r = streamscope.activations(tmp_path / "m", out=tmp_path / "o", overrides=SMALL, echo=lambda s: None)
    assert r["run"]["dtype"] == "float32" and r["run"]["bytes_read"] == r["run"]["checkpoint_bytes"]
    ref = streamscope.activations(tmp_path / "m", out=tmp_path / "p", overrides={**SMALL, "model.dtype": "bfloat16"}, echo=lambda s: None)
    assert ref["run"]["dtype"] == "bfloat16"
    name = "model.layers.1.mlp.down_proj"
    assert r["modules"][name]["input"]["top1"] == pytest.approx(ref["modules"][name]["input"]["top1"], rel=0.05)


def test_reduce_dim(models, tmp_path):
    d = models("llama")
    name = "model.layers.0.mlp.down_proj"
    runs = {dim: streamscope.activations(d, out=tmp_path / str(dim), overrides={**SMALL, "magnitude.reduce_dim": dim}, echo=lambda s: None)
            for dim in (None, -1, -2)}  # fmt: skip
    ids = torch.from_numpy(_zarr(tmp_path / "None")["activations/input_ids"][:])
    full, _, _ = reference(d, ids, "LlamaForCausalLM")
    seen = []
    h = full.model.layers[0].mlp.down_proj.register_forward_hook(lambda m, a, o: seen.append(a[0].detach().abs()[0]))
    with torch.no_grad():
        for s in range(2):
            full(input_ids=ids[s : s + 1])
    h.remove()
    per_token = torch.cat([x.amax(dim=-1) for x in seen])  # -1: each token's largest |x| over channels
    per_channel = torch.cat([x.amax(dim=-2) for x in seen])  # -2: each channel's largest |x| over tokens, per sample
    for dim, values in ((-1, per_token), (-2, per_channel)):
        got = runs[dim]["modules"][name]["input"]
        assert got["count"] == values.numel() and got["min"] == pytest.approx(float(values.min()), rel=1e-6)
        assert got["mean_abs"] == pytest.approx(float(values.double().mean()), rel=1e-6)
    assert runs[None]["modules"][name]["input"]["count"] == sum(x.numel() for x in seen)
    with pytest.raises(OptionError, match="reduce_dim"):
        config_mod.load(None, {"magnitude.reduce_dim": 0})


def test_outliers_and_massive_channels(models, tmp_path):
    d = models("llama")
    r = streamscope.activations(d, out=tmp_path / "o", overrides={**SMALL, "outlier.threshold": 4}, echo=lambda s: None)
    ids = torch.from_numpy(_zarr(tmp_path / "o")["activations/input_ids"][:])
    full, _, hidden = reference(d, ids, "LlamaForCausalLM")
    layer = "model.layers.0"
    out = hidden[1].abs()  # the first layer's output, per sample
    expected = []
    for s in range(out.shape[0]):
        a = out[s]
        mask = a > 4 * a.reshape(-1).median()
        expected += [[s, t] for t in torch.nonzero(mask.any(dim=1)).reshape(-1).tolist()]
    rec = r["outliers"]["layers"][layer]
    assert rec["count"] == len(expected) and rec["positions"] == expected
    assert rec["token_ids"] == [int(ids[s, t]) for s, t in expected]
    rows = (tmp_path / "o" / "outliers.csv").read_text().splitlines()
    assert len(rows) == 1 + sum(v["count"] for v in r["outliers"]["layers"].values())
    assert set(r["outliers"]["layers"]) == {"model.layers.0", "model.layers.1"}
    assert all(re.fullmatch(r"\d+", c) for c in r["outliers"]["massive_channels"])


def test_real_minilm_weights(minilm_dir, tmp_path):
    import transformers

    r = streamscope.activations(minilm_dir, out=tmp_path / "o", overrides={"data.num_samples": 2, "data.seq_len": 16,
                                "magnitude.patterns": [r"attention\.self\.query", r"intermediate\.dense"], "outlier.pattern": r"encoder\.layer\.\d+$"},
                                echo=lambda s: None)  # fmt: skip
    assert r["run"]["decoder_layers"] == "encoder.layer" and r["run"]["n_layers"] == 6
    ids = torch.from_numpy(_zarr(tmp_path / "o")["activations/input_ids"][:])
    full = transformers.AutoModel.from_pretrained(minilm_dir).eval()
    seen = []
    h = full.encoder.layer[3].intermediate.dense.register_forward_hook(lambda m, a, o: seen.append(o.detach()))
    with torch.no_grad():
        for s in range(2):
            full(input_ids=ids[s : s + 1])
    h.remove()
    x = torch.cat(seen).abs().reshape(-1)
    assert r["modules"]["encoder.layer.3.intermediate.dense"]["output"]["top1"] == pytest.approx(float(x.max()), rel=1e-6)
    assert len(r["outliers"]["layers"]) == 6


def test_outputs_and_formats(models, tmp_path):
    import gguf
    import pandas as pd

    d = models("qwen2")
    r = streamscope.activations(d, out=tmp_path / "o", overrides={**SMALL, "visualization.enabled.heatmap_3d": True}, echo=lambda s: None)
    o = tmp_path / "o"
    data = json.loads((o / "activations.json").read_text())
    assert set(data) >= {"run", "modules", "outliers", "distribution", "config"}
    for key in ("model", "dtype", "device", "source", "num_samples", "seq_len", "seconds", "peak_rss_bytes", "bytes_read"):
        assert key in data["run"], key
    # every module any pattern selects, the outlier pattern's decoder layers included
    assert {"model.layers.0", "model.layers.1", "model.layers.0.mlp.down_proj", "model.layers.1.self_attn.q_proj"} <= set(data["modules"])
    df = pd.read_parquet(o / "activations.parquet")
    assert len(df) == sum(len(v) for v in data["modules"].values()) and set(df["direction"]) == {"input", "output"}
    assert len(pd.read_csv(o / "activations.csv")) == len(df)
    reader = gguf.GGUFReader(str(o / "imatrix.gguf"))
    names = {t.name for t in reader.tensors}
    assert "blk.0.ffn_down.weight.in_sum2" in names and "blk.1.attn_q.weight.counts" in names
    assert bytes(reader.fields["general.type"].parts[-1]).decode() == "imatrix"
    t = next(t for t in reader.tensors if t.name == "blk.0.ffn_down.weight.counts")
    assert float(np.asarray(t.data).reshape(-1)[0]) == 2 * 12
    heat = _zarr(o)["activations/heatmap"]
    mods = {a.attrs["module"] for _, a in heat.arrays()}
    assert mods == {"model.layers.0", "model.layers.1"}
    assert r["run"]["files"]["imatrix.gguf"] is None


def test_config_file_overrides_and_unknown_keys(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  num_samples: 8\nvisualization:\n  outlier:\n    threshold: 32\n")
    c = config_mod.load(cfg, {"data.seq_len": "64", "outlier.threshold": "100", "magnitude.patterns": "[mlp, attn]"})
    assert c["data"]["num_samples"] == 8 and c["data"]["seq_len"] == 64
    assert c["visualization"]["outlier"]["threshold"] == 100  # the seed's short form of visualization.outlier
    assert c["visualization"]["magnitude"]["patterns"] == ["mlp", "attn"]
    with pytest.raises(OptionError, match=r"unknown config key 'data.num_sample'.*num_samples"):
        config_mod.load(None, {"data.num_sample": "3"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  samples: 3\n")
    with pytest.raises(OptionError, match=r"bad.yaml: unknown config key 'data.samples'"):
        config_mod.load(bad)
    assert config_mod.parse_overrides(["--data.num_samples", "128", "--outlier.threshold=100"]) == {"data.num_samples": "128", "outlier.threshold": "100"}


def test_data_sources(models, tmp_path):
    from streamscope.activation import data

    text = tmp_path / "t.txt"
    text.write_text("hello world " * 200)
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text("\n".join(json.dumps({"content": f"line {i} " * 20}) for i in range(20)))
    assert "line 3" in data.read_text(f"custom:{jsonl}", "content")
    csvf = tmp_path / "t.csv"
    csvf.write_text("id,content\n1,alpha beta\n2,gamma\n")
    assert data.read_text(f"custom:{csvf}", "content") == "alpha beta\n\ngamma"
    with pytest.raises(data.DataError, match="no column 'text'"):
        data.read_text(f"custom:{csvf}")
    a = data.samples("random", 3, 5, seed=1, vocab_size=50)
    assert a.shape == (3, 5) and torch.equal(a, data.samples("random", 3, 5, seed=1, vocab_size=50))
    tok = _ByteTokenizer()
    s = data.samples(f"custom:{text}", 4, 10, seed=0, vocab_size=256, tokenizer=tok)
    assert s.shape == (4, 10) and int(s.max()) < 256


def test_hub_source_offline_fails_in_one_line(monkeypatch):
    from streamscope.activation import data

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(data.DataError, match=r"cannot be reached.*custom:PATH.*random"):
        data.read_text("wikitext2")


@pytest.mark.parametrize("case", ["no_config", "unknown_arch", "pattern", "empty_data", "seq_len"])
def test_bad_input_is_one_clear_line(models, tmp_path, case):
    import shutil

    from typer.testing import CliRunner

    from streamscope.cli import app

    d = models("llama")
    args = ["activations", str(d), "--out", str(tmp_path / "o"), "--data.num_samples", "1", "--data.seq_len", "8", "-q"]
    expect = {"no_config": "no config.json", "unknown_arch": "cannot build", "pattern": "matches no module",
              "empty_data": "holds no text", "seq_len": "beyond the model's 64 positions"}[case]  # fmt: skip
    if case in ("no_config", "unknown_arch"):
        copy = tmp_path / "m"
        shutil.copytree(d, copy)
        if case == "no_config":
            (copy / "config.json").unlink()
        else:
            cfg = json.loads((copy / "config.json").read_text())
            cfg["model_type"], cfg["architectures"] = "nosuchmodel", ["NoSuchModelForCausalLM"]
            (copy / "config.json").write_text(json.dumps(cfg))
        args[1] = str(copy)
    elif case == "pattern":
        args += ["--magnitude.patterns", "[nosuchlayer]"]
    elif case == "empty_data":
        (tmp_path / "e.txt").write_text("")
        args += ["--data.source", f"custom:{tmp_path / 'e.txt'}"]
    else:
        args[args.index("8")] = "100"
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 1, r.output
    assert expect in r.output and "Traceback" not in r.output
    assert len([line for line in r.output.splitlines() if line.startswith("error:")]) == 1


def test_cli_prints_module_names_and_writes_results(models, tmp_path):
    from typer.testing import CliRunner

    from streamscope.cli import app

    d = models("llama")
    args = ["activations", str(d), "--out", str(tmp_path / "o"), "--data.num_samples", "2", "--data.seq_len", "8", "--outlier.threshold", "5"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "Total modules found" in r.output and "model.layers.0.self_attn.q_proj" not in r.output  # every pattern matched
    r = CliRunner().invoke(app, [*args, "--verbose"])
    assert r.exit_code == 0, r.output
    assert "model.layers.0.self_attn.q_proj" in r.output
    assert json.loads((tmp_path / "o" / "activations.json").read_text())["config"]["visualization"]["outlier"]["threshold"] == 5


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_batched_layer_calls_equal_one_sample_per_call(models, tmp_path, family):
    """5 samples one per call, two per call (the last batch smaller: its masks and rotary inputs differ from the
    others') and automatic (all five): same logits, outliers (positions per sample), heatmap and counts."""
    d = models(family)
    layers = r"h\.\d+$" if family == "gpt2" else r"layers\.\d+$"
    cfg = {"data.num_samples": 5, "data.seq_len": 12, "outlier.threshold": 3, "outlier.pattern": layers,
           "visualization.enabled.heatmap_3d": True, "heatmap_3d.sample_idx": 3, "heatmap_3d.pattern": layers}  # fmt: skip
    from streamscope.activation.profile import profile

    runs = {b: profile(d, config_mod.load(None, {**cfg, "data.batch_size": b}), tmp_path / str(b), echo=lambda s: None, keep_tensors=True)
            for b in (1, 2, "auto")}  # fmt: skip
    assert [runs[b]["run"]["batch_size"] for b in (1, 2, "auto")] == [1, 2, 5]
    one = runs[1]
    assert sum(v["count"] for v in one["outliers"]["layers"].values()) > 0
    heat = _zarr(tmp_path / "1")["activations/heatmap"]
    for b in (2, "auto"):
        r = runs[b]
        assert (r["forward"].logits - one["forward"].logits).abs().max().item() <= 1e-5
        for name, rec in one["outliers"]["layers"].items():
            assert r["outliers"]["layers"][name]["positions"] == rec["positions"], (b, name)
        for name, dirs in one["modules"].items():
            for direction, m in dirs.items():
                got = r["modules"][name][direction]
                assert got["count"] == m["count"] and got["top1"] == pytest.approx(m["top1"], rel=1e-5), (b, name)
        other = _zarr(tmp_path / str(b))["activations/heatmap"]
        assert sorted(other) == sorted(heat) and len(heat)
        for k in heat:
            assert np.allclose(other[k][:], heat[k][:], rtol=1e-3, atol=1e-3)


def test_hidden_states_spill_to_disk(models, tmp_path):
    d = models("llama")
    r = streamscope.activations(d, out=tmp_path / "o", overrides={**SMALL, "memory.budget": "1KB"}, echo=lambda s: None)
    assert r["run"]["hidden_states_spilled"]
    ref = streamscope.activations(d, out=tmp_path / "p", overrides=SMALL, echo=lambda s: None)
    assert r["modules"] == ref["modules"]
    assert not list((tmp_path / "o" / ".spill").glob("*"))  # the spill file is removed


def test_heatmaps_go_to_disk_as_made(models, tmp_path, monkeypatch):
    """One heatmap per selected layer (seq_len x hidden: 32 MiB at 2048 tokens of a 72B model) is written to a
    file when made, read back one at a time into arrays.zarr, equal to |layer output| of the chosen sample."""
    from pathlib import Path

    from streamscope.activation import export
    from streamscope.activation.profile import profile

    held = {}
    write = export.write

    def spy(out, collector, run):
        held.update(collector.reduced["heatmap"])
        assert all(isinstance(v, Path) and v.is_file() for v in held.values())  # files, not arrays in memory
        return write(out, collector, run)

    monkeypatch.setattr(export, "write", spy)
    cfg = config_mod.load(None, {"data.num_samples": 3, "data.seq_len": 12, "data.batch_size": 1,
                                 "visualization.enabled.heatmap_3d": True, "heatmap_3d.sample_idx": 2})  # fmt: skip
    r = profile(models("llama"), cfg, tmp_path / "o", echo=lambda s: None, keep_tensors=True)
    assert set(held) == {"model.layers.0", "model.layers.1"}
    assert not (tmp_path / "o" / ".probes").exists()
    heat = _zarr(tmp_path / "o")["activations/heatmap"]
    for _, a in heat.arrays():
        i = int(a.attrs["module"].rsplit(".", 1)[1])
        expect = r["forward"].layer_outputs[i][2].abs().to(torch.float16).numpy()
        assert a.shape == expect.shape and np.array_equal(a[:], expect)


def test_no_counters_before_a_layer_runs(models, tmp_path, monkeypatch):
    """Each module's counters (256-512 KiB per module and direction) are made at its first sample and reduced
    when its layer is done: when a layer loads, no module of any decoder layer holds a live state."""
    from streamscope.activation import collect

    live, original = [], collect.Collector.on_weights

    def spy(self, prefix, modules):
        original(self, prefix, modules)
        live.append({module for _, module in self.states})

    monkeypatch.setattr(collect.Collector, "on_weights", spy)
    r = streamscope.activations(models("llama"), out=tmp_path / "o", overrides=SMALL, echo=lambda s: None)
    assert len(live) == 2 and not any(n.startswith("model.layers.") for names in live for n in names), live
    assert r["modules"]["model.layers.1.mlp.down_proj"]["input"]["count"] > 0


class _ByteTokenizer:
    def __call__(self, text, add_special_tokens=False, verbose=True):
        return {"input_ids": list(text.encode())}

    def decode(self, ids):
        return bytes(ids).decode(errors="replace")


def _zarr(out):
    import zarr

    return zarr.open_group(str(out / "arrays.zarr"), mode="r")


def test_figures_and_report(models, tmp_path):
    from streamscope.report.build import make_report

    d = models("llama")
    streamscope.activations(d, out=tmp_path / "o", echo=lambda s: None,
                            overrides={**SMALL, "outlier.threshold": 3, "visualization.enabled.heatmap_3d": True,
                                       "visualization.enabled.distribution": True, "visualization.enabled.magnitude_weight": True})  # fmt: skip
    html = make_report(tmp_path / "o").read_text()
    figures = {p.name for p in (tmp_path / "o" / "figures").glob("*.png")}
    assert figures == {"magnitude_input.png", "magnitude_output.png", "magnitude_weight.png", "outlier_layer_wise.png", "outlier_position.png",
                       "outlier_token.png", "heatmap_3d.png", "distribution.png", "block_influence.png", "angular_distance.png"}  # fmt: skip
    assert '<section id="activations">' in html and "act_scales.pt" in html and html.count("<figure>") == len(figures)
