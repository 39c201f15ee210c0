"""Layer importance (block influence, angular distance of spans, the pruning plan) against hooks on
transformers' in-memory forward of the same float32 model and token ids. Tolerance: the streamed forward runs
the same modules on the same inputs (1e-5, as tests/test_activations.py), cosines are then taken in float64."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import streamscope

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def four_layers(tmp_path_factory):
    import transformers as t

    d = tmp_path_factory.mktemp("imp") / "llama"
    torch.manual_seed(0)
    cfg = t.LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                        num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip
    t.LlamaForCausalLM(cfg).eval().save_pretrained(d)
    return d


def reference(d, ids):
    import transformers as t

    model = t.LlamaForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    seen = {}
    hooks = [layer.register_forward_hook(lambda m, a, k, o, i=i: seen.__setitem__(i, (k.get("hidden_states", a[0] if a else None), o[0] if isinstance(o, tuple) else o)),
                                         with_kwargs=True) for i, layer in enumerate(model.model.layers)]  # fmt: skip
    ins, outs = [], []
    with torch.no_grad():
        for s in range(ids.shape[0]):
            model(input_ids=ids[s : s + 1])
            ins.append([seen[i][0][0] for i in range(4)])
            outs.append([seen[i][1][0] for i in range(4)])
    for h in hooks:
        h.remove()
    bi = [1 - float(torch.cat([torch.nn.functional.cosine_similarity(ins[s][i], outs[s][i], dim=-1) for s in range(len(ins))]).double().mean())
          for i in range(4)]  # fmt: skip
    h = [np.stack([ins[s][0][-1].numpy() for s in range(len(ins))])] + [np.stack([outs[s][i][-1].numpy() for s in range(len(ins))]) for i in range(4)]
    d = {}
    for n in range(1, 4):
        row = []
        for start in range(4 - n + 1):
            a, b = h[start].astype(np.float64), h[start + n].astype(np.float64)
            cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            row.append(float(np.mean(np.arccos(np.clip(cos, -1, 1)) / np.pi)))
        d[str(n)] = row
    return bi, d


def test_importance_against_the_in_memory_forward(four_layers, tmp_path):
    r = streamscope.activations(four_layers, out=tmp_path / "o", overrides={"data.num_samples": 3, "data.seq_len": 10}, echo=lambda s: None)
    import zarr

    ids = torch.from_numpy(zarr.open_group(str(tmp_path / "o" / "arrays.zarr"), mode="r")["activations/input_ids"][:])
    bi, d = reference(four_layers, ids)
    imp = r["importance"]
    assert np.allclose(imp["block_influence"], bi, atol=1e-5)
    assert sorted(imp["angular_distance"]) == ["1", "2", "3"]
    for n, row in d.items():
        assert np.allclose(imp["angular_distance"][n], row, atol=1e-5), n
        best = int(np.argmin(row))
        assert imp["prune_plan"][n] == {"start": best, "distance": pytest.approx(row[best], abs=1e-5)}
    saved = json.loads((tmp_path / "o" / "activations.json").read_text())["importance"]
    assert saved["prune_plan"] == json.loads(json.dumps(imp["prune_plan"]))
    import pandas as pd

    rows = pd.read_csv(tmp_path / "o" / "activations.csv").dropna(subset=["block_influence"])
    assert sorted(rows["module"]) == [f"model.layers.{i}" for i in range(4)]


def test_importance_figures_in_the_report(four_layers, tmp_path):
    from typer.testing import CliRunner

    from streamscope.cli import app

    out = tmp_path / "o"
    r = CliRunner().invoke(app, ["activations", str(four_layers), "--out", str(out), "-q", "--data.num_samples", "2", "--data.seq_len", "8", "--report"])
    assert r.exit_code == 0, r.output
    assert (out / "figures" / "block_influence.png").is_file() and (out / "figures" / "angular_distance.png").is_file()
    assert "Angular distance of layer spans" in (out / "report.html").read_text()
