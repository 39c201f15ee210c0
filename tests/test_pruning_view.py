"""``compare BEFORE AFTER --importance DIR``: which layers a pruning removed, against the importance a profile of
BEFORE measured. Pruned checkpoints are made by deleting decoder layers from the in-memory model (and, for a
healed one, nudging every remaining weight), so the removed layers are known."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import streamscope
from streamscope.analyses import pruning
from streamscope.cli import app

runner = CliRunner()
DATA = {"data.source": "random", "data.num_samples": 3, "data.seq_len": 12}


@pytest.fixture(scope="module")
def six(tmp_path_factory):
    import transformers as t

    root = tmp_path_factory.mktemp("prune")
    torch.manual_seed(0)
    cfg = t.LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=6, num_attention_heads=4,
                        num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip
    model = t.LlamaForCausalLM(cfg).eval()
    model.save_pretrained(root / "before")
    streamscope.activations(root / "before", out=root / "act", overrides=DATA, echo=lambda s: None)
    return root, model


def _pruned(model, drop: list[int], out, noise: float = 0.0):
    import copy

    m = copy.deepcopy(model)
    for i in sorted(drop, reverse=True):
        del m.model.layers[i]
    m.config.num_hidden_layers = len(m.model.layers)
    if noise:
        with torch.no_grad():
            for p in m.model.layers.parameters():
                p.add_(noise * p.abs().mean() * torch.randn_like(p))
    m.save_pretrained(out)
    return out


def test_removed_layers_are_found_even_after_healing(six, tmp_path):
    root, model = six
    before = streamscope.open(root / "before")
    for drop, noise in (([2, 4], 0.0), ([1, 2], 0.01), ([5], 0.0), ([0, 3, 4], 0.01)):
        after = streamscope.open(_pruned(model, drop, tmp_path / f"p{drop}{noise}", noise))
        removed, origin = pruning.removed_layers(before.index, after.index)
        assert removed == drop
        assert origin == [i for i in range(6) if i not in drop]


def test_compare_sets_the_removed_layers_against_the_importance(six, tmp_path):
    root, model = six
    imp = json.loads((root / "act" / "activations.json").read_text())["importance"]
    n = 2
    best = imp["prune_plan"][str(n)]["start"]
    bi = imp["block_influence"]
    least = sorted(sorted(range(6), key=lambda i: bi[i])[:n])
    for drop in ([best, best + 1], [0, 5]):
        after = _pruned(model, drop, tmp_path / f"p{drop}")
        result = streamscope.compare(root / "before", after, importance=root / "act")
        view = result["pruning"]
        assert view["removed"] == drop
        assert view["best_block"] == {"layers": [best, best + 1], "distance": imp["prune_plan"][str(n)]["distance"]}
        assert view["least_influential"] == least
        assert view["block_influence_rank"] == {str(i): sorted(range(6), key=lambda j: bi[j]).index(i) + 1 for i in drop}
        contiguous = drop[1] == drop[0] + 1
        assert view["removed_block_distance"] == (imp["angular_distance"][str(n)][drop[0]] if contiguous else None)
        assert view["overlap_with_best_block"] == len(set(drop) & {best, best + 1})
    r = runner.invoke(app, ["compare", str(root / "before"), str(after), "--importance", str(root / "act")], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    assert "removed L0, L5" in r.output and f"L{best}-L{best + 1}" in r.output
    assert max(len(line) for line in r.output.splitlines()) <= 80


def test_importance_without_a_profile_is_one_line(six, tmp_path):
    root, model = six
    after = _pruned(model, [1], tmp_path / "p")
    r = runner.invoke(app, ["compare", str(root / "before"), str(after), "--importance", str(tmp_path)])
    assert r.exit_code == 1 and "activations.json" in r.output and len(r.output.strip().splitlines()) <= 2
