"""The activation probe registry and the statistics' one-read kernel.

The kernel (``kernels.native.act32``) is checked against torch on the same values: pattern counts, maxima
and the minimum are exact; sums are float64 sums in another order (relative 1e-12). A toy probe added with
one ``register`` line shows up in the config, ``activations.json``, ``activations.csv`` and the report.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from streamscope.activation import probes, stats
from streamscope.kernels import native
from tests import tiny_models

pytestmark = pytest.mark.skipif(not native.available(), reason="the native kernel was not built (no C compiler)")


@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (256, 1024), (37, 2816), (5, 100_003)])
def test_act32_against_torch(shape):
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(*shape, generator=g) * torch.logspace(-3, 3, shape[-1])
    x[0, 0] = 0.0
    hist = np.zeros(32768, np.int64)
    rowmax, colmax, colsq = np.zeros(shape[0], np.float32), np.zeros(shape[1], np.float32), np.zeros(shape[1])
    total, low, n = native.act32(x.numpy().reshape(-1), *shape, hist, rowmax, colmax, colsq)
    a = x.abs()
    assert n == x.numel() and low == 0.0
    assert np.array_equal(hist, stats.pattern_counts(a, 32768))
    assert np.array_equal(rowmax, a.amax(1).numpy()) and np.array_equal(colmax, a.amax(0).numpy())
    assert total == pytest.approx(a.double().sum().item(), rel=1e-12)
    assert np.allclose(colsq, x.double().square().sum(0).numpy(), rtol=1e-12, atol=0)


def test_act32_nan_wins_maxima_and_is_left_out_of_sums():
    x = torch.tensor([[1.0, float("nan"), -3.0], [float("inf"), 0.5, 2.0]])
    rowmax, colmax = np.zeros(2, np.float32), np.zeros(3, np.float32)
    total, low, n = native.act32(x.numpy().reshape(-1), 2, 3, None, rowmax, colmax)
    assert np.isnan(rowmax[0]) and rowmax[1] == np.inf and np.isnan(colmax[1]) and colmax[0] == np.inf
    assert total == 6.5 and low == 0.5 and n == 4


def test_magnitude_through_the_kernel_equals_the_torch_path(monkeypatch):
    x = torch.randn(4, 64, 96, generator=torch.Generator().manual_seed(3))
    fast = stats.Magnitude()
    fast.add(x)
    monkeypatch.setattr(native, "available", lambda: False)
    slow = stats.Magnitude()
    slow.add(x)
    a, b = fast.result(), slow.result()
    assert {k: a[k] for k in ("top1", "top2", "top3", "median", "min", "count")} == {k: b[k] for k in ("top1", "top2", "top3", "median", "min", "count")}
    assert a["mean_abs"] == pytest.approx(b["mean_abs"], rel=1e-12)


def test_one_input_is_measured_once(monkeypatch):
    """q, k and v (gate and up) get the same tensor: the kernel reads it once for every probe."""
    calls = []
    original = stats.Measured.__init__
    monkeypatch.setattr(stats.Measured, "__init__", lambda self, x: (calls.append(1), original(self, x))[1])
    x = torch.randn(8, 32)
    for s in (stats.ChannelStats(), stats.ChannelStats(), stats.Magnitude()):
        s.add(x)
    assert len(calls) == 1
    x.mul_(2)  # written in place: measured again
    stats.Magnitude().add(x)
    assert len(calls) == 2


@pytest.fixture
def toy():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    import toy_probe

    probes.register(toy_probe.TOY)
    try:
        yield toy_probe.TOY
    finally:
        probes.unregister("token_norm")


def test_toy_probe_through_the_registry_alone(toy, tmp_path):
    from typer.testing import CliRunner

    from streamscope.activation import config as config_mod
    from streamscope.cli import app

    cfg = config_mod.load(None, {"token_norm.scale": 2.0})
    assert cfg["visualization"]["token_norm"] == {"scale": 2.0} and cfg["visualization"]["enabled"]["token_norm"] is True
    d = tiny_models.build("llama", tmp_path / "llama")
    out = tmp_path / "o"
    r = CliRunner().invoke(app, ["activations", str(d), "--out", str(out), "-q", "--data.num_samples", "2", "--data.seq_len", "8",
                                 "--token_norm.scale", "2", "--report"])  # fmt: skip
    assert r.exit_code == 0, r.output
    record = json.loads((out / "activations.json").read_text())
    assert set(record["token_norm"]) == {"model.layers.0", "model.layers.1"}
    import pandas as pd

    table = pd.read_csv(out / "activations.csv")
    rows = table[table["token_norm"].notna()]
    assert sorted(rows["module"]) == ["model.layers.0", "model.layers.1"]
    for _, row in rows.iterrows():
        assert row["token_norm"] == pytest.approx(record["token_norm"][row["module"]]["mean_norm"])
        assert row["direction"] == "output" and row["top1"] > 0  # joined with the magnitude row of that module
    # the scale is applied: the mean norm is twice the one of a run without the option
    plain = tmp_path / "p"
    assert CliRunner().invoke(app, ["activations", str(d), "--out", str(plain), "-q", "--data.num_samples", "2", "--data.seq_len", "8"]).exit_code == 0
    half = json.loads((plain / "activations.json").read_text())["token_norm"]["model.layers.1"]["mean_norm"]
    assert record["token_norm"]["model.layers.1"]["mean_norm"] == pytest.approx(2 * half)
    html = (out / "report.html").read_text()
    assert "Mean token norm per decoder layer" in html and (out / "figures" / "token_norm.png").is_file()
    # the run's facts read as values: no Python dicts or None, floats rounded
    assert "{&#x27;activations.csv&#x27;" not in html and "{'activations.csv'" not in html and ">None<" not in html
    assert "<td class=name>resumed_after_layer</td><td class=text>-</td>" in html


def test_switched_off_probe_watches_nothing(toy, tmp_path):
    import streamscope

    d = tiny_models.build("llama", tmp_path / "llama")
    r = streamscope.activations(d, out=tmp_path / "o", overrides={"data.num_samples": 2, "data.seq_len": 8, "visualization.enabled.token_norm": False},
                                echo=lambda s: None)  # fmt: skip
    assert r["token_norm"] == {}


def test_consecutive_windows_are_the_texts_first_tokens(tmp_path):
    """``data.windows: consecutive`` cuts the text as llama.cpp's imatrix and perplexity do: chunk i is tokens
    i*seq .. (i+1)*seq of the text."""
    from streamscope.activation import data

    class Words:
        def __call__(self, text, add_special_tokens=False, verbose=True):
            return {"input_ids": [len(w) for w in text.split()]}

    text = tmp_path / "t.txt"
    text.write_text(" ".join("a" * (1 + i % 9) for i in range(40)))
    ids = data.samples(f"custom:{text}", 3, 10, seed=5, vocab_size=20, tokenizer=Words(), windows="consecutive")
    assert ids.tolist() == [[1 + (i % 9) for i in range(s * 10, s * 10 + 10)] for s in range(3)]
    with pytest.raises(data.DataError, match="fewer than data.num_samples x data.seq_len = 50"):
        data.samples(f"custom:{text}", 5, 10, seed=5, vocab_size=20, tokenizer=Words(), windows="consecutive")
    from streamscope.activation import config as config_mod
    from streamscope.errors import OptionError

    with pytest.raises(OptionError, match="data.windows must be random .* or consecutive"):
        config_mod.load(None, {"data.windows": "sliding"})
