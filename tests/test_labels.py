"""Labels that must be true: INT4 groups of 128 with a shorter last group, condition numbers below the stored
dtype's rounding noise, WeightWatcher's warnings and summary.

Tolerances and their origin:
- group schemes against a dense numpy reference in float64: 1e-5 relative (the scan rounds in float32 blocks,
  float32 partial sums; see test_spectral_quant.py).
- ``fake_quantize`` against the same reference computed in float32: equal element for element (the same
  float32 division, round half to even, clamp and product).
- SQNR from ``fake_quantize`` against the scan's: 1e-6 relative (float64 sums of the same values, in another
  order; per-tensor values rounded once to float32).
- WeightWatcher summary from the stored eigenvalues: 1e-9 relative (the same float64 arithmetic).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import streamscope
from streamscope.kernels import native
from streamscope.kernels.quant import ErrorSums, block_schemes, block_schemes_native, fake_quantize
from streamscope.synthetic import save_tensors

SHAPES = [(576, 576), (64, 200), (3, 130)]
GROUP_SCHEMES = ("int8_channel", "int4_g128", "int4_g128_asym")


def grouped_reference(x: np.ndarray, dtype=np.float64) -> dict[str, np.ndarray]:
    """Dense numpy dequantization: INT8 per row; INT4 over x[:, k:k+128] for k = 0, 128, ... (the last slice
    shorter where 128 does not divide the row)."""
    x = x.astype(dtype)
    out = {}
    s = np.abs(x).max(axis=1, keepdims=True) / dtype(127)
    s[s == 0] = 1
    out["int8_channel"] = np.clip(np.round(x / s), -127, 127) * s
    sym, asym = np.empty_like(x), np.empty_like(x)
    for k in range(0, x.shape[1], 128):
        g = x[:, k : k + 128]
        s = np.abs(g).max(axis=1, keepdims=True) / dtype(7)
        s[s == 0] = 1
        sym[:, k : k + 128] = np.clip(np.round(g / s), -7, 7) * s
        lo, hi = g.min(axis=1, keepdims=True), g.max(axis=1, keepdims=True)
        s = (hi - lo) / dtype(15)
        s[s == 0] = 1
        z = np.round(-lo / s)
        asym[:, k : k + 128] = (np.clip(np.round(g / s) + z, 0, 15) - z) * s
    out["int4_g128"], out["int4_g128_asym"] = sym, asym
    return out


def weight(shape, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(*shape, generator=g) * 0.02
    w[:, -1] *= 30  # an outlier in every row's last group: a per-row scale would ruin the others
    w[1] = 0  # an all-zero row: its scales are taken as 1
    return w.to(torch.bfloat16).float()


def sqnr(x: np.ndarray, q: np.ndarray) -> float:
    e = x - q
    return 10 * math.log10(float((x * x).sum()) / float((e * e).sum()))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("use_native", [True, False])
def test_int4_groups_of_128_with_a_shorter_last_group(tmp_path, shape, use_native):
    if use_native and not native.available():
        pytest.skip("C kernel not built")
    w = weight(shape)
    path = save_tensors(tmp_path / "m.safetensors", {"w": w.to(torch.bfloat16)})
    q = streamscope.scan(path, out=tmp_path / "o", analyses="quantization", native=use_native).tensors["w"]["quantization"]["schemes"]
    x = w.double().numpy()
    for scheme, deq in grouped_reference(x).items():
        assert q[scheme]["sqnr_db"] == pytest.approx(sqnr(x, deq), rel=1e-5), scheme
        assert q[scheme]["mse"] == pytest.approx(float(np.mean((x - deq) ** 2)), rel=1e-5), scheme
    assert q["group_size"] == min(128, shape[1]) and q["last_group_size"] == (shape[1] % 128 or min(128, shape[1]))
    if shape[1] > 128:  # one group per row (the label's old meaning) is another, coarser scheme
        s = np.abs(x).max(axis=1, keepdims=True) / 7
        s[s == 0] = 1
        assert q["int4_g128"]["sqnr_db"] > sqnr(x, np.clip(np.round(x / s), -7, 7) * s) + 1


@pytest.mark.skipif(not native.available(), reason="C kernel not built")
@pytest.mark.parametrize("shape", SHAPES + [(5, 64)])
def test_native_kernel_and_torch_passes_agree_on_partial_groups(shape):
    x = weight(shape, seed=4)
    x[2, :5] = 1000.0  # an outlier group
    x[0] *= 1e-30  # scales below 2^-90: the dividing path
    ref, got = ({s: ErrorSums() for s in GROUP_SCHEMES} for _ in range(2))
    n = x.numel()
    block_schemes(x, GROUP_SCHEMES, ref, torch.empty(n), torch.empty(n), torch.empty(n))
    assert block_schemes_native(x, GROUP_SCHEMES, got)
    for s in GROUP_SCHEMES:
        for f in ErrorSums.__slots__:
            assert getattr(got[s], f) == pytest.approx(getattr(ref[s], f), rel=1e-6, abs=1e-30), (s, f)


@pytest.mark.parametrize("shape", SHAPES)
def test_fake_quantize_is_the_dense_reference(shape):
    w = weight(shape, seed=7)
    ref = grouped_reference(w.numpy(), np.float32)
    for scheme in GROUP_SCHEMES:
        np.testing.assert_array_equal(fake_quantize(w, scheme).numpy(), ref[scheme], err_msg=scheme)
    x = w.double().numpy()
    amax = np.abs(x).max()
    int8 = np.clip(np.round(x / (amax / 127)), -127, 127) * (amax / 127)
    np.testing.assert_allclose(fake_quantize(w, "int8").double().numpy(), int8, rtol=1e-7, atol=0)
    with pytest.raises(ValueError, match="unknown quantization scheme"):
        fake_quantize(w, "int3")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_scan_sqnr_equals_sqnr_of_fake_quantize(tmp_path, dtype):
    w = weight((64, 200), seed=9).to(dtype)
    path = save_tensors(tmp_path / "m.safetensors", {"w": w})
    q = streamscope.scan(path, out=tmp_path / "o", analyses="quantization").tensors["w"]["quantization"]
    x = w.double().numpy()
    for scheme in ("int8", "int8_channel", "int4_g128", "int4_g128_asym", "fp8_e4m3"):
        got = q["sqnr_db"] if scheme == "int8" else q["schemes"][scheme]["sqnr_db"]
        assert got == pytest.approx(sqnr(x, fake_quantize(w, scheme).double().numpy()), rel=1e-6), scheme


def ill_conditioned(n=256, seed=0) -> torch.Tensor:
    """Singular values from 1 down to 1e-7, log-spaced: the small ones far below bfloat16's rounding noise."""
    g = torch.Generator().manual_seed(seed)
    u = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))[0]
    v = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))[0]
    return (u * torch.logspace(0, -7, n, dtype=torch.float64)) @ v.T


def test_condition_number_below_the_bf16_noise_floor_is_a_lower_bound_not_graded(tmp_path):
    w = ill_conditioned()
    g = torch.Generator().manual_seed(1)
    # the same weights rounded twice: as stored, and after a perturbation of 1e-3 of each weight (a conversion)
    perturbed = w * (1 + 1e-3 * torch.randn(w.shape, generator=g, dtype=torch.float64))
    copies = {"stored": w.to(torch.bfloat16), "perturbed": perturbed.to(torch.bfloat16)}
    well = torch.linalg.qr(torch.randn(256, 256, generator=g, dtype=torch.float64))[0] * torch.linspace(1, 0.1, 256, dtype=torch.float64)
    spec, health = {}, {}
    for key, t in copies.items():
        path = save_tensors(tmp_path / f"{key}.safetensors", {"w": t, "well": well.to(torch.bfloat16)})
        r = streamscope.scan(path, out=tmp_path / key, analyses="spectral,quantization")
        spec[key], health[key] = r.tensors["w"]["spectral"], r.tensors["w"]["health"]
        x = t.double()
        s = torch.linalg.svdvals(x).numpy()
        floor = 2.0**-8 * float(torch.linalg.matrix_norm(x)) / math.sqrt(256)
        assert spec[key]["noise_floor"] == pytest.approx(floor, rel=1e-9)
        assert spec[key]["min_singular_value"] == pytest.approx(s[-1], rel=1e-3) and s[-1] < floor
        assert not spec[key]["condition_number_resolved"] and spec[key]["condition_number_is_lower_bound"]
        assert "not resolved at bf16" in spec[key]["condition_number_note"]
        assert spec[key]["condition_number"] == pytest.approx(s[0] / floor, rel=1e-6) and s[0] / s[-1] > spec[key]["condition_number"]
        assert "condition_number" not in health[key]["levels"] and "not resolved" in health[key]["notes"][0]
        assert not any("condition" in reason for reason in health[key]["reasons"])
        ok = r.tensors["well"]["spectral"]  # singular values 1 .. 0.1, far above the floor
        assert ok["condition_number_resolved"] and ok["condition_number"] == pytest.approx(ok["max_singular_value"] / ok["min_singular_value"])
        assert ok["condition_number"] == pytest.approx(10, rel=0.05) and "condition_number" in r.tensors["well"]["health"]["levels"]
    # what the stored sigma_min says differs between the two roundings; the reported lower bounds agree
    kappa = [s["max_singular_value"] / s["min_singular_value"] for s in spec.values()]
    assert max(kappa) / min(kappa) > 1.2
    assert spec["stored"]["condition_number"] == pytest.approx(spec["perturbed"]["condition_number"], rel=0.01)
    only = streamscope.scan(tmp_path / "stored.safetensors", out=tmp_path / "only", analyses="spectral", select="^w$").tensors["w"]
    assert only.get("health") is None  # an unresolved condition number alone grades nothing


def test_weightwatcher_warnings_and_summary_from_the_stored_eigenvalues(minilm_dir, tmp_path):
    from typer.testing import CliRunner

    from streamscope.cli import app
    from streamscope.results_dir import Results

    out = tmp_path / "o"
    args = ["scan", str(minilm_dir), "--out", str(out), "--analyses", "spectral", "--select", r"layer\.[01]\.|word_emb"]
    res = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    results = Results.open(out)
    rows = []
    for name, rec in results.matrices.items():
        spec = rec["spectral"]
        evals = np.sort(results.array(name, "singular_values") ** 2)[::-1]
        alpha = spec["alpha"]
        assert (spec["N"], spec["M"]) == (max(rec["info"]["shape"]), min(rec["info"]["shape"]))
        assert spec["warning"] == ("over-trained" if alpha < 2 else "under-trained" if alpha > 6 else "")
        assert spec["alpha_tail_size"] == int((evals >= spec["alpha_xmin"]).sum())  # WeightWatcher's num_pl_spikes
        metrics = {"log_norm": np.log10(evals.sum()), "alpha": alpha, "alpha_weighted": alpha * np.log10(evals[0]),
                   "log_alpha_norm": np.log10(np.sum(evals**alpha)), "log_spectral_norm": np.log10(evals[0]),
                   "stable_rank": evals.sum() / evals[0]}  # fmt: skip
        for key in ("log_norm", "log_alpha_norm"):
            assert spec[key] == pytest.approx(metrics[key], rel=1e-9), (name, key)
        rows.append(metrics)
    ww = json.loads((out / "model.json").read_text())["weightwatcher"]
    assert ww["matrices"] == len(rows) == 13
    for key in ("log_norm", "alpha", "alpha_weighted", "log_alpha_norm", "log_spectral_norm", "stable_rank"):
        assert ww[key] == pytest.approx(np.mean([r[key] for r in rows]), rel=1e-9), key
        assert key in ww["definitions"]
    assert ww["under_trained"] == sum(r["alpha"] > 6 for r in rows) and ww["over_trained"] == sum(r["alpha"] < 2 for r in rows)
    assert "mp_softrank" in ww["not_computed"]
    line = next(x for x in res.output.splitlines() if x.startswith("WeightWatcher"))
    assert f"{ww['matrices']} matrices" in line and f"mean alpha {ww['alpha']:.3g}" in line and f"{ww['under_trained']} under-trained" in line
    csv = __import__("pandas").read_csv(out / "tensors.csv").set_index("tensor")
    assert csv.loc["embeddings.word_embeddings.weight", ["spectral.N", "spectral.M"]].tolist() == [30522, 384]
    assert "spectral.warning" in csv and "spectral.alpha_tail_size" in csv


def test_condition_figure_marks_unresolved_condition_numbers(tmp_path):
    from streamscope.report.figures import condition_heatmap
    from streamscope.results_dir import Results

    g = torch.Generator().manual_seed(3)
    well = torch.linalg.qr(torch.randn(32, 32, generator=g, dtype=torch.float64))[0]
    tensors = {f"model.layers.{i}.self_attn.{p}.weight": (ill_conditioned(32, seed=i) if p == "q_proj" else well).to(torch.bfloat16)
               for i in range(41) for p in ("q_proj", "k_proj")}  # fmt: skip
    path = save_tensors(tmp_path / "m.safetensors", tensors)
    for select, out in ((r"layers\.[01]\.", "few"), (None, "many")):  # bars, then the grid (more than 80 matrices)
        streamscope.scan(path, out=tmp_path / out, analyses="spectral", select=select)
        results = Results.open(tmp_path / out)
        unresolved = {n for n, r in results.matrices.items() if not r["spectral"]["condition_number_resolved"]}
        assert unresolved == {n for n in results.matrices if "q_proj" in n}
        ax = condition_heatmap.draw(results).axes[0]
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert any("rounding noise" in t for t in legend)
        if out == "few":
            assert sum(bool(p.get_hatch()) for p in ax.patches) == len(unresolved)
        else:
            assert len(ax.collections[0].get_offsets()) == len(unresolved)


@pytest.mark.skipif(not native.available(), reason="C kernel not built")
def test_a_kernel_built_from_other_source_is_not_used(monkeypatch):
    """An in-place library left from older source (INT4 groups of whole rows) would give other sums: refused."""
    monkeypatch.setattr(native, "ABI_VERSION", native.ABI_VERSION + 1)
    native._lib.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="build_ext --inplace"):
            assert not native.available()
    finally:
        monkeypatch.undo()
        native._lib.cache_clear()
    assert native.available()
