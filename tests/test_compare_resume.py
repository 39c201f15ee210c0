"""A weight comparison resumes what it finished under the same options, and only under them: its resume key is
the engine's options and every field of ``CompareOptions``, so another ``--rank`` computes every pair again."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from streamscope.cli import app
from streamscope.engine import runner as runner_module
from streamscope.results import ResultStore
from streamscope.synthetic import save_tensors

cli = CliRunner()


@pytest.fixture
def pair(tmp_path):
    """``w`` changed by a difference whose singular values halve one after another (so a randomized SVD finds the
    top ones to high accuracy), and ``same`` left alone."""
    g = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(48, 16, generator=g))
    v, _ = torch.linalg.qr(torch.randn(24, 16, generator=g))
    diff = u @ torch.diag(2.0 ** -torch.arange(16.0)) @ v.T  # (48, 24)
    w = torch.randn(48, 24, generator=g)
    a = save_tensors(tmp_path / "a" / "model.safetensors", {"w": w, "same": torch.ones(4, 4)})
    b = save_tensors(tmp_path / "b" / "model.safetensors", {"w": w + diff, "same": torch.ones(4, 4)})
    return a, b, (w + diff).double() - w.double()


def test_compare_resumes_under_the_same_options_and_recomputes_under_another_rank(pair, tmp_path, monkeypatch):
    a, b, diff = pair
    out = tmp_path / "cmp.json"
    calls: list[str] = []
    run_pair = runner_module.TensorRunner.run_pair

    def counted(self, before, *args, **kwargs):
        calls.append(before.name)
        return run_pair(self, before, *args, **kwargs)

    monkeypatch.setattr(runner_module.TensorRunner, "run_pair", counted)
    monkeypatch.setattr(ResultStore, "discard_partial", lambda self: None)  # keep the finished pairs, as an interrupt would

    def compare(rank: int) -> dict:
        calls.clear()
        r = cli.invoke(app, ["compare", str(a), str(b), "--weights", "--device", "cpu", "--rank", str(rank), "--out", str(out), "--json"])
        assert r.exit_code == 0, r.output
        return json.loads(out.read_text())

    exact = torch.linalg.svdvals(diff)  # (16,) float64: the reference
    first = compare(2)
    assert sorted(calls) == ["same", "w"] and (tmp_path / ".cmp.json.partial").is_dir()
    assert first["options"]["rank"] == 2
    assert first["weights"]["w"]["diff_top_singular_values"] == pytest.approx(exact[:2].tolist(), rel=1e-4)

    same = compare(2)
    assert calls == [] and same["weights"] == first["weights"]  # every pair reused

    other = compare(3)
    assert sorted(calls) == ["same", "w"] and other["options"]["rank"] == 3  # another rank: nothing reused
    assert other["weights"]["w"]["diff_top_singular_values"] == pytest.approx(exact[:3].tolist(), rel=1e-4)

    assert compare(3)["weights"] == other["weights"] and calls == []  # and the new results are kept in turn
