"""MoE routing probe against the routers of transformers' in-memory forward of the same float32 model and token
ids: every router's own chosen experts, hooked, counted with numpy (counts equal exactly); entropies recomputed
from the hooked logits in float64 (tolerance 1e-5: the streamed forward runs the same modules on the same
inputs, as tests/test_activations.py checks to 1e-5). Through the CLI on hub-like checkpoints, through a killed
and resumed run, with merged partial states, and on a dense model."""

from __future__ import annotations

import json
import math
import signal

import numpy as np
import pytest
import torch

from tests import tiny_models

pytest.importorskip("transformers")

MOE = ["mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v3"]
SIGMOID = {"deepseek_v3"}  # scores each expert with a sigmoid (and groups, and a score-correction bias)


@pytest.fixture(scope="module")
def hubs(hub_checkpoint):
    return hub_checkpoint


def _cli(args: list[str]):
    from typer.testing import CliRunner

    from streamscope.cli import app

    r = CliRunner().invoke(app, ["activations", *map(str, args), "-q"])
    assert r.exit_code == 0, r.output
    return r


def _ids(out) -> torch.Tensor:
    import zarr

    return torch.from_numpy(zarr.open_group(str(out / "arrays.zarr"), mode="r")["activations/input_ids"][:])


def reference(model_dir, ids, family: str) -> dict:
    """Per router (the ``gate`` of every decoder layer's MoE block): the experts its forward returned, counted;
    the mean over tokens of the entropy of its probabilities; over the in-memory model."""
    import transformers as t

    model = t.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    seen: dict[str, list] = {}
    hooks = []
    for i, layer in enumerate(model.model.layers):
        if hasattr(layer.mlp, "experts"):  # a dense layer (DeepSeek's first) has no router
            name = f"model.layers.{i}.mlp.gate"
            seen[name] = []
            hooks.append(layer.mlp.gate.register_forward_hook(lambda m, a, o, n=name: seen[n].append((o[0].detach().clone(), o[2].clone()))))
    with torch.no_grad():
        model(input_ids=ids)
    for h in hooks:
        h.remove()
    out = {}
    for name, calls in seen.items():
        logits = torch.cat([c[0] for c in calls]).double().numpy()  # (tokens, experts)
        chosen = torch.cat([c[1] for c in calls]).numpy()  # (tokens, k)
        experts = logits.shape[1]
        counts = np.bincount(chosen.reshape(-1), minlength=experts)
        if family in SIGMOID:
            s = 1 / (1 + np.exp(-logits))
            p = s / s.sum(1, keepdims=True)
        else:
            e = np.exp(logits - logits.max(1, keepdims=True))
            p = e / e.sum(1, keepdims=True)
        share = counts / counts.sum()
        nz = share[share > 0]
        out[name] = {"counts": counts, "tokens": chosen.shape[0], "entropy": float(np.mean(-(p * np.log(p)).sum(1))),
                     "load_entropy": float(-(nz * np.log(nz)).sum()), "load_cv": float(counts.std() / counts.mean()), "experts": experts}  # fmt: skip
    return out


def _check(routing: dict, ref: dict) -> None:
    assert sorted(n for n in routing if n != "summary") == sorted(ref)
    for name, r in ref.items():
        got = routing[name]
        assert got["tokens_per_expert"] == r["counts"].tolist(), name
        assert got["tokens"] == r["tokens"] and got["selections"] == int(r["counts"].sum())
        assert got["dead_experts"] == np.flatnonzero(r["counts"] == 0).tolist()
        assert np.allclose(got["share"], r["counts"] / r["counts"].sum(), rtol=0, atol=1e-15)
        assert got["entropy"] == pytest.approx(r["entropy"], abs=1e-5)
        assert got["entropy_normalised"] == pytest.approx(r["entropy"] / math.log(r["experts"]), abs=1e-5)
        assert got["load_entropy"] == pytest.approx(r["load_entropy"], rel=1e-12)
        assert got["load_cv"] == pytest.approx(r["load_cv"], rel=1e-12)
        assert got["layer"] == int(name.split(".")[2])
    summary = routing["summary"]
    dead = {name.split(".")[2]: np.flatnonzero(r["counts"] == 0).tolist() for name, r in ref.items() if (r["counts"] == 0).any()}
    assert summary["dead_experts"] == dead and summary["dead_count"] == sum(map(len, dead.values()))
    assert summary["routers"] == len(ref) and summary["experts"] == sum(r["experts"] for r in ref.values())


@pytest.mark.parametrize("family", MOE)
def test_cli_counts_equal_the_routers_own_choices(hubs, tmp_path, family):
    model = hubs(family)
    text = tmp_path / "calibration.txt"
    text.write_text(tiny_models.TEXT)
    out = tmp_path / "o"
    report = family == "deepseek_v3"
    _cli([model, "--out", out, "--data.source", f"custom:{text}", "--data.num_samples", 3, "--data.seq_len", 12, "--data.batch_size", 2,
          *(["--report"] if report else [])])  # fmt: skip
    ref = reference(model, _ids(out), family)
    routing = json.loads((out / "activations.json").read_text())["routing"]
    _check(routing, ref)
    if family == "deepseek_v3":  # its random score-correction bias keeps some experts from every token of this text
        assert routing["summary"]["dead_count"] > 0 and "model.layers.0.mlp.gate" not in routing
    import pandas as pd
    import zarr

    rows = pd.read_csv(out / "activations.csv").dropna(subset=["routing_tokens"]).set_index("module")
    assert sorted(rows.index) == sorted(ref)
    for name, r in ref.items():
        assert rows.loc[name, "routing_tokens"] == r["tokens"] and rows.loc[name, "routing_dead_experts"] == (r["counts"] == 0).sum()
        assert rows.loc[name, "direction"] == "output" and rows.loc[name, "routing_experts"] == r["experts"]
    a = zarr.open_group(str(out / "arrays.zarr"), mode="r")["activations/routing/tokens_per_expert"]
    assert a.attrs["modules"] == list(ref) and np.array_equal(a[:], np.stack([r["counts"] for r in ref.values()]))
    if report:
        assert (out / "figures" / "expert_routing.png").is_file()
        assert "Tokens routed to each expert, per MoE layer" in (out / "report.html").read_text()


@pytest.mark.parametrize("family, switch", [("llama", []), ("qwen3_moe", ["--visualization.enabled.routing", "false"])])
def test_no_routers_or_switched_off_gives_an_empty_record(hubs, tmp_path, family, switch):
    out = tmp_path / "o"
    _cli([hubs(family), "--out", out, "--data.num_samples", 2, "--data.seq_len", 8, *switch])
    assert json.loads((out / "activations.json").read_text())["routing"] == {}
    assert not any(c.startswith("routing_") for c in (out / "activations.csv").read_text().splitlines()[0].split(","))
    import zarr

    assert "routing" not in zarr.open_group(str(out / "arrays.zarr"), mode="r")["activations"]
    from typer.testing import CliRunner

    from streamscope.cli import app

    r = CliRunner().invoke(app, ["report", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert (out / "report.html").is_file() and not (out / "figures" / "expert_routing.png").exists()


def test_killed_run_resumes_to_the_same_counts(hubs, tmp_path):
    """DeepSeek: a dense layer 0, routers in layers 1 and 2; killed after layer 1, the resumed run restores layer
    1's router state from its checkpoint and computes layer 2's."""
    import zarr

    from streamscope.activation import config as config_mod
    from streamscope.activation.profile import profile
    from tests.test_activation_resume import CFG, _kill_after_layer

    model = hubs("deepseek_v3")
    whole = tmp_path / "whole"
    profile(model, config_mod.load(None, CFG), whole, echo=lambda s: None)
    out = tmp_path / "killed"
    assert _kill_after_layer(model, out, 1).returncode == -signal.SIGKILL
    r = profile(model, config_mod.load(None, CFG), out, echo=lambda s: None)
    assert r["run"]["resumed_after_layer"] == 2
    routing = [json.loads((d / "activations.json").read_text())["routing"] for d in (whole, out)]
    assert routing[0] == routing[1] and routing[0]["summary"]["routers"] == 2
    arrays = [zarr.open_group(str(d / "arrays.zarr"), mode="r")["activations/routing/tokens_per_expert"][:] for d in (whole, out)]
    assert np.array_equal(*arrays)
    _check(routing[1], reference(model, _ids(out), "deepseek_v3"))


def test_partial_states_merge_exactly():
    """Calls split between two states (two workers' samples), dumped and restored as a checkpoint is, then merged:
    the single state's results, to the bit."""
    import transformers as t

    from streamscope.activation.probes import Call, routing

    torch.manual_seed(0)
    cfg = t.Qwen3MoeConfig(**tiny_models.COMMON, head_dim=8, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=16)
    router = t.Qwen3MoeForCausalLM(cfg).model.layers[0].mlp.gate
    calls = []
    for i in range(5):
        x = torch.randn(2, 7, 32) * 10  # (batch, tokens, hidden): sharp enough routing to leave experts unevenly used
        with torch.no_grad():
            out = router(x)
        calls.append(Call(x, out[0], 2 * i, 2, out, router))
    whole, a, b = routing.State(), routing.State(), routing.State()
    for i, c in enumerate(calls):
        whole.update(c)
        (a if i < 2 else b).update(c)
    merged = routing.restore({}, a.dump()).merge(routing.restore({}, b.dump()))
    assert merged.reduce() == whole.reduce()
    counts = np.bincount(torch.cat([c.output[2] for c in calls]).reshape(-1).numpy(), minlength=8)
    assert whole.reduce()["tokens_per_expert"] == counts.tolist() and whole.tokens == 5 * 14
