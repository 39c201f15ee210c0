"""``streamscope sensitivity`` against references computed on the in-memory transformers model.

Local errors: each decoder Linear's inputs caught by hooks on the in-memory float model, through the weight and
the fake-quantized weight (dense). Propagated: the in-memory model with its decoder Linears' weights replaced by
the fake-quantized ones gives the same logits; KL from ``torch.nn.functional.kl_div`` on those logits.
SmoothQuant: W8A8 with smoothing recomputed in float64 numpy from the same inputs.
"""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from streamscope.activation.profile import load_config
from streamscope.activation.sensitivity import recipe as recipe_mod
from streamscope.activation.sensitivity.run import Options, measure
from streamscope.cli import app
from streamscope.kernels.fakequant import fake_quantize

sys.path.insert(0, str(Path(__file__).parent))
import tiny_models  # noqa: E402

runner = CliRunner()
DATA = {"data.source": "random", "data.num_samples": 3, "data.seq_len": 12}


def _model(family: str, tmp_path_factory) -> Path:
    return tiny_models.build_hub(family, tmp_path_factory.mktemp(family) / "m")


def _run(model: Path, out: Path, **kw) -> dict:
    cfg = load_config(None, dict(DATA), model)
    return measure(model, cfg, out, Options(keep_outputs=True, **kw), echo=lambda s: None)


def _ids(out: Path) -> torch.Tensor:
    import zarr

    return torch.from_numpy(np.asarray(zarr.open_group(str(out / "arrays.zarr"), mode="r")["sensitivity/input_ids"][:]))


def _in_memory(model: Path):
    import transformers

    cls = transformers.AutoModel if "bert" in (model / "config.json").read_text() else transformers.AutoModelForCausalLM
    return cls.from_pretrained(model, dtype=torch.float32).eval()


def _linears(m) -> dict:
    layers = next(mod for name, mod in m.named_modules() if isinstance(mod, torch.nn.ModuleList))
    prefix = next(name for name, mod in m.named_modules() if mod is layers)
    return {f"{prefix}.{n}": mod for i, layer in enumerate(layers) for n, mod in layer.named_modules(prefix=str(i))
            if isinstance(mod, torch.nn.Linear) or type(mod).__name__ == "Conv1D"}  # fmt: skip


def _w(mod) -> torch.Tensor:
    return (mod.weight.t() if type(mod).__name__ == "Conv1D" else mod.weight).detach().float()


def _inputs(m, ids) -> dict:
    xs: dict[str, list] = {}
    hooks = [mod.register_forward_hook(lambda mod, a, o, n=n: xs.setdefault(n, []).append(a[0].detach().reshape(-1, a[0].shape[-1])))
             for n, mod in _linears(m).items()]  # fmt: skip
    with torch.no_grad():
        m(input_ids=ids)
    for h in hooks:
        h.remove()
    return {n: torch.cat(v) for n, v in xs.items()}


def _quantized(m, scheme_of):
    q = copy.deepcopy(m)
    for n, mod in _linears(q).items():
        s = scheme_of(n)
        if s is not None:
            w = fake_quantize(_w(mod), s)
            mod.weight.data.copy_(w.t() if type(mod).__name__ == "Conv1D" else w)
    return q


def _logits(m, ids):
    with torch.no_grad():
        r = m(input_ids=ids)
    return r.logits if hasattr(r, "logits") else r.last_hidden_state


def _db(signal, noise):
    return 10 * math.log10(signal / noise)


FAMILIES = ["llama", "gpt2", "qwen2", "gemma2", "phi3"]


@pytest.mark.parametrize("family", FAMILIES)
def test_local_errors_and_propagated_logits_equal_the_in_memory_model(family, tmp_path_factory, tmp_path):
    model = _model(family, tmp_path_factory)
    rec = _run(model, tmp_path / "out", schemes=("int8_channel", "int4_g128", "q4_0"), smoothquant=False, plan=False)
    ids = _ids(tmp_path / "out")
    m = _in_memory(model)
    xs = _inputs(m, ids)
    lins = _linears(m)
    assert set(rec["local"]) == set(lins)
    for name, mod in lins.items():
        x, w = xs[name].double(), _w(mod).double()
        y = x @ w.t() + (mod.bias.detach().double() if mod.bias is not None else 0)
        for scheme in ("int8_channel", "int4_g128", "q4_0"):
            got = rec["local"][name][scheme]
            if w.shape[1] % 32 and scheme == "q4_0":
                assert got is None
                continue
            e = x @ (w - fake_quantize(_w(mod), scheme).double()).t()  # the bias cancels
            ref = float((e * e).sum() / (y * y).sum())
            assert got["rel_mse"] == pytest.approx(ref, rel=2e-4), (name, scheme)
            assert got["sqnr_db"] == pytest.approx(-10 * math.log10(ref), abs=1e-3)
    # the propagated stream is the in-memory model with fake-quantized decoder Linears
    outputs = rec["outputs"]
    f = torch.cat([o[0] for o in outputs])
    q = torch.cat([o[1] for o in outputs])
    torch.testing.assert_close(f, _logits(m, ids), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(q, _logits(_quantized(m, lambda n: "int4_g128"), ids), atol=1e-5, rtol=1e-5)
    lf, lq = torch.log_softmax(f[:, :-1].double(), -1), torch.log_softmax(q[:, :-1].double(), -1)
    kl = torch.nn.functional.kl_div(lq, lf, log_target=True, reduction="none").sum(-1).reshape(-1).numpy()
    p = rec["propagated"]["int4_g128"]
    assert p["kl_mean"] == pytest.approx(kl.mean(), rel=1e-4)
    assert p["kl_p99"] == pytest.approx(np.quantile(kl, 0.99), rel=1e-4)
    assert p["top1_agreement"] == pytest.approx(float((lf.argmax(-1) == lq.argmax(-1)).double().mean()))
    nll = -lf.gather(-1, ids[:, 1:].unsqueeze(-1)).mean()
    assert p["ppl_float"] == pytest.approx(math.exp(float(nll)), rel=1e-5)
    assert len(p["layers"]) == rec["run"]["n_layers"]


def test_gram_and_input_modes_give_the_same_local_errors(tmp_path_factory, tmp_path, monkeypatch):
    from streamscope.activation.sensitivity import hooks

    model = _model("llama", tmp_path_factory)
    monkeypatch.setattr(hooks.Capture, "_gram_mode", lambda self, rows, cols: True)
    gram = _run(model, tmp_path / "gram", schemes=("int8", "int4_g128_asym", "mxfp4"), smoothquant=False, plan=False)
    monkeypatch.setattr(hooks.Capture, "_gram_mode", lambda self, rows, cols: False)
    inputs = _run(model, tmp_path / "inputs", schemes=("int8", "int4_g128_asym", "mxfp4"), smoothquant=False, plan=False)
    assert gram["run"]["input_groups"]["inputs"] == 0 and inputs["run"]["input_groups"]["gram"] == 0
    for name, per in inputs["local"].items():
        for scheme, r in per.items():
            assert gram["local"][name][scheme]["rel_mse"] == pytest.approx(r["rel_mse"], rel=1e-4), (name, scheme)


def _w8a8_reference(x: np.ndarray, w: np.ndarray, s: np.ndarray | None) -> float:
    xs, ws = (x, w) if s is None else (x / s, w * s)
    xq = np.round(xs / (np.abs(xs).max(1, keepdims=True) / 127)).clip(-127, 127) * (np.abs(xs).max(1, keepdims=True) / 127)
    wsc = np.abs(ws).max(1, keepdims=True) / 127
    wq = np.round(ws / wsc).clip(-127, 127) * wsc
    y = x @ w.T
    return _db(float((y * y).sum()), float(((xq @ wq.T - y) ** 2).sum()))


def test_smoothquant_curves_equal_a_numpy_reference(tmp_path_factory, tmp_path):
    model = _model("llama", tmp_path_factory)
    rec = _run(model, tmp_path / "out", schemes=("int8",), plan=False)
    m = _in_memory(model)
    xs, lins = _inputs(m, _ids(tmp_path / "out")), _linears(m)
    sq = rec["smoothquant"]
    # q, k, v (input_layernorm) and gate, up (post_attention_layernorm): o_proj and down_proj are not fed by a norm
    assert {n.rsplit(".", 1)[1] for n in sq} == {"q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"}
    name = "model.layers.1.self_attn.k_proj"
    group = [n for n in lins if n.startswith("model.layers.1.self_attn.") and n[-6:] in ("q_proj", "k_proj", "v_proj")]
    x = xs[name].double().numpy()
    wmax = np.max([np.abs(_w(lins[g]).double().numpy()).max(0) for g in group], axis=0).clip(1e-5)
    amax = np.abs(x).max(0).clip(1e-5)
    w = _w(lins[name]).double().numpy()
    assert sq[name]["w8a8_sqnr_db"]["none"] == pytest.approx(_w8a8_reference(x, w, None), abs=0.02)
    for a in (0.3, 0.5, 0.9):
        s = (amax**a / wmax ** (1 - a)).clip(1e-5)
        assert sq[name]["w8a8_sqnr_db"][f"{a:g}"] == pytest.approx(_w8a8_reference(x, w, s), abs=0.02)
    best = max((k for k in sq[name]["w8a8_sqnr_db"] if k != "none"), key=lambda k: sq[name]["w8a8_sqnr_db"][k])
    assert sq[name]["best_alpha"] == float(best)


def test_plan_is_checked_and_exported_for_llm_compressor_and_llama_quantize(tmp_path_factory, tmp_path):
    model = _model("llama", tmp_path_factory)
    out = tmp_path / "out"
    rec = _run(model, out, schemes=("int8_channel", "int4_g128"), smoothquant=False, target_kl=1e-6)
    plan = rec["plan"]
    assert plan["keep"] and plan["checks"] and plan["keep_scheme"] == "int8_channel"
    ids = _ids(out)
    m = _in_memory(model)
    kept = set(plan["keep"])
    f = _logits(m, ids)
    q = _logits(_quantized(m, lambda n: "int8_channel" if n in kept else "int4_g128"), ids)
    lf, lq = torch.log_softmax(f[:, :-1].double(), -1), torch.log_softmax(q[:, :-1].double(), -1)
    kl = float(torch.nn.functional.kl_div(lq, lf, log_target=True, reduction="none").sum(-1).mean())
    assert plan["kl"] == pytest.approx(kl, rel=1e-4)
    assert plan["met"] == (kl <= 1e-6)
    assert plan["bits_per_weight"] > 4.5
    # recipe.yaml is an llm-compressor recipe naming every decoder Linear once, and reads back as the same plan
    groups = yaml.safe_load((out / "recipe.yaml").read_text())["quant_stage"]["quant_modifiers"]["QuantizationModifier"]["config_groups"]
    named = [t for g in groups.values() for t in g["targets"]]
    assert sorted(named) == sorted(rec["local"]) and len(set(named)) == len(named)
    back = recipe_mod.load(out / "recipe.yaml")
    assert {n for n in rec["local"] if back.scheme_for(n) == "int8_channel"} == kept
    # tensor_types.txt: one override per kept Linear, in GGUF names, in llama-quantize's NAME=TYPE form
    lines = (out / "tensor_types.txt").read_text().split()
    assert len(lines) == len(kept) and all(line.endswith("=q8_0") and line.startswith("^blk\\.") for line in lines)
    again = _run(model, tmp_path / "again", recipe=back, schemes=("int4_g128",), smoothquant=False, plan=False)
    assert again["propagated"][back.name]["kl_mean"] == pytest.approx(plan["kl"], rel=1e-6)


def test_command_on_hub_checkpoints_and_minilm(tmp_path_factory, tmp_path, minilm_dir):
    model = _model("qwen2", tmp_path_factory)
    args = ["--data.source", "random", "--data.num_samples", "2", "--data.seq_len", "8"]
    r = runner.invoke(app, ["sensitivity", str(model), *args, "--out", str(tmp_path / "q"), "--schemes", "int8,int4_g128"], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    assert "top-1 agreement" in r.output and "plan:" in r.output
    assert max(len(line) for line in r.output.splitlines()) <= 80
    for f in ("sensitivity.json", "sensitivity.csv", "sensitivity.parquet", "recipe.yaml", "tensor_types.txt"):
        assert (tmp_path / "q" / f).is_file()
    import pandas as pd

    table = pd.read_parquet(tmp_path / "q" / "sensitivity.parquet")
    assert set(table["scheme"]) >= {"int8", "int4_g128", "w8a8", "w8a8_smooth"}
    # the encoder: no next-token distribution, the last hidden state compared instead; a real tokenizer's text
    r = runner.invoke(app, ["sensitivity", str(minilm_dir), "--data.num_samples", "2", "--data.seq_len", "16", "--out", str(tmp_path / "b"),
                            "--schemes", "int8_channel,int4_g128", "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    import json

    rec = json.loads(r.output)
    p = rec["propagated"]["int8_channel"]
    assert p["kl_mean"] is None and 0.99 < p["output"]["cos"] <= 1.0 + 1e-9
    assert rec["plan"]["keep"] is None and "encoder" in rec["plan"]["note"]
    assert len(rec["local"]) == 6 * 6  # six BERT layers: query, key, value, attention output, intermediate, output


def test_bad_input_is_one_line(tmp_path_factory, tmp_path):
    model = _model("llama", tmp_path_factory)
    bad = tmp_path / "r.yaml"
    bad.write_text("scheme: int3\n")
    r = runner.invoke(app, ["sensitivity", str(model), "--recipe", str(bad), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and str(bad) in r.output and "int3" in r.output and len(r.output.strip().splitlines()) <= 2
    r = runner.invoke(app, ["sensitivity", str(model), "--schemes", "int8,int3", "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "int3" in r.output
    bad.write_text("overrides: {'re:(': int8}\n")
    r = runner.invoke(app, ["sensitivity", str(model), "--recipe", str(bad), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "regular expression" in r.output


def test_a_killed_run_resumes_to_the_same_results(tmp_path_factory, tmp_path):
    import json
    import subprocess
    import textwrap

    model = _model("llama", tmp_path_factory)
    args = dict(schemes=["int8_channel", "int4_g128"], target_kl=1e-6, overrides=dict(DATA))
    code = textwrap.dedent(f"""
        import os, signal
        from streamscope.activation.sensitivity import resume
        save = resume.SensitivityCheckpoint.save
        def dying(self, i, *a):
            save(self, i, *a)
            if i == 0:
                os.kill(os.getpid(), signal.SIGKILL)
        resume.SensitivityCheckpoint.save = dying
        import streamscope
        streamscope.sensitivity({str(model)!r}, out={str(tmp_path / "killed")!r}, echo=lambda s: None, **{args!r})
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    assert (tmp_path / "killed" / ".sensitivity-resume" / "layer-0000.json").is_file()
    import streamscope

    said = []
    streamscope.sensitivity(model, out=tmp_path / "killed", echo=said.append, **args)
    assert any(line.startswith("resuming: 1 of 2 decoder layers") for line in said)
    streamscope.sensitivity(model, out=tmp_path / "whole", echo=lambda s: None, **args)

    def load(d):
        rec = json.loads((d / "sensitivity.json").read_text())
        for key in ("seconds", "first_pass_seconds", "peak_rss_bytes", "bytes_read", "input_groups"):
            rec["run"].pop(key)
        for check in rec["plan"]["checks"]:
            check.pop("seconds")
        return rec

    assert load(tmp_path / "killed") == load(tmp_path / "whole")
    assert (tmp_path / "killed" / "recipe.yaml").read_text() == (tmp_path / "whole" / "recipe.yaml").read_text()
    assert not (tmp_path / "killed" / ".sensitivity-resume").exists()


def test_fake_quantizers_are_the_scans_and_llama_cpps():
    import gguf

    from streamscope.kernels import fakequant, quant

    assert fakequant.SCAN == quant.SCHEMES
    w = torch.randn(48, 320, generator=torch.Generator().manual_seed(0))
    for scheme in fakequant.SCAN:
        a, b = fakequant.fake_quantize(w, scheme), quant.fake_quantize(w, scheme)
        # float32 here, float64 for the scan's per-tensor sums: the same levels but at a rare rounding tie
        assert int((~torch.isclose(a, b, rtol=1e-6, atol=0)).sum()) <= 2, scheme
        assert _db(float((w * w).sum()), float(((w - a) ** 2).sum())) == pytest.approx(_db(float((w * w).sum()), float(((w - b) ** 2).sum())), abs=1e-4)
    bad = w.clone()
    bad[0, 0] = float("nan")
    assert torch.equal(fakequant.fake_quantize(bad, "int8_channel").isnan(), quant.fake_quantize(bad, "int8_channel").isnan())
    for scheme, kind in fakequant.GGML.items():
        t = getattr(gguf.GGMLQuantizationType, kind)
        ref = gguf.quants.dequantize(gguf.quants.quantize(w.numpy(), t), t)
        np.testing.assert_array_equal(fakequant.fake_quantize(w, scheme).numpy(), ref)
        assert fakequant.applicable(scheme, (4, 100)) is not None


def test_a_bits_per_weight_budget_stops_the_plan(tmp_path_factory, tmp_path):
    model = _model("llama", tmp_path_factory)
    free = _run(model, tmp_path / "free", schemes=("int8_channel", "int4_g128"), smoothquant=False, target_kl=1e-9)
    capped = _run(model, tmp_path / "capped", schemes=("int8_channel", "int4_g128"), smoothquant=False, target_kl=1e-9, max_bits=5.5)
    assert capped["plan"]["bits_per_weight"] <= 5.5 < free["plan"]["bits_per_weight"]
    assert 0 < len(capped["plan"]["keep"]) < len(free["plan"]["keep"])
    # the kept Linears are the first of the same ranking
    assert capped["plan"]["keep"] == free["plan"]["keep"][: len(capped["plan"]["keep"])]


def test_gram_bands_and_flushes_equal_the_float64_gram():
    """The Gram matrix summed a band of its upper triangle at a time, in float32 between flushes into float64,
    equals XᵀX in float64 over every token (many flushes, two bands, a row count that no band width divides)."""
    from streamscope.activation.sensitivity.hooks import FLUSH_TOKENS, GRAM_BAND, Group

    torch.manual_seed(0)
    d = 2 * GRAM_BAND + 77
    batches = [torch.randn(513, d) * (1 + i % 3) for i in range(2 * FLUSH_TOKENS // 513 + 3)]
    group = Group(["m"], gram=torch.zeros(d, d, dtype=torch.float64))
    for x in batches:
        group.add_gram(x)
    x = torch.cat(batches).double()
    reference = x.t() @ x
    got = group.gram32().double()
    assert torch.equal(got, got.t())
    assert float((got - reference).abs().max() / reference.diagonal().max()) < 1e-6
