"""Every statistic of the scan against an exact float64 numpy reference, for every dtype.

Tolerances:
- dtypes whose bit-pattern histogram is exact (BF16, F16, F8, I8, U8, I16, BOOL): all statistics are sums
  over at most 65,536 float64 terms, so they match the reference to float64 rounding (rel 1e-12).
- F32 through the native kernel: float64 sums per row (checked to 1e-12 in its own test below).
- F32 without it, F64, I32, I64: per-block sums in the working precision (float32 for F32), combined in float64. A
  float32 cascade sum of a block carries a relative error of a few eps32 (1.2e-7) times the sum of |x|, so
  the mean is checked to 1e-6 of mean(|x|) and M2-derived values (var, std, l2) to rel 1e-5.
- Magnitude percentiles are exact for exact dtypes and for float tensors that fit in one block; for float
  tensors streamed in several blocks they come from bf16-truncated keys and lie within 2**-7 relative.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import streamscope
from streamscope.synthetic import save_tensors
from conftest import scan_blocks

DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "I8": torch.int8, "U8": torch.uint8,
    "I16": torch.int16, "I32": torch.int32, "I64": torch.int64, "BOOL": torch.bool,
}  # fmt: skip
EXACT = {"F16", "BF16", "F8_E4M3", "F8_E5M2", "I8", "U8", "I16", "BOOL"}


def make(dtype: torch.dtype, rows=96, cols=70, seed=0, specials=True) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.bool:
        return torch.rand(rows, cols, generator=g) > 0.7
    if not dtype.is_floating_point:
        info = torch.iinfo(dtype)
        lo, hi = max(info.min, -30000), min(info.max, 30000)
        x = torch.randint(lo, hi, (rows, cols), generator=g, dtype=torch.int64)
    else:
        x = torch.randn(rows, cols, generator=g, dtype=torch.float64) * 0.05 + 0.01
        x[5] *= 1e-8  # tiny values: below the 1e-6 / 1e-4 thresholds
        x[:, 7] *= 30  # a heavy channel
        if specials and dtype not in (torch.float8_e4m3fn,):
            x[2, 3], x[4, 4], x[6, 1] = float("nan"), float("inf"), float("-inf")
        elif specials:
            x[2, 3] = float("nan")  # e4m3fn has no infinity
    x[10] = 0  # a dead row
    x[:, 11] = 0  # a dead column
    return x.to(dtype)


def reference(t: torch.Tensor) -> dict:
    x = t.to(torch.float64).numpy()
    flat = x.reshape(-1)
    fin = flat[np.isfinite(flat)]
    a = np.abs(fin)
    absx = np.abs(x)
    return {
        "mean": fin.mean(), "var": fin.var(ddof=1), "std": fin.std(ddof=1), "min": fin.min(), "max": fin.max(),
        "abs_max": a.max(), "l2_norm": np.sqrt((fin**2).sum()), "zeros_percentage": 100 * (flat == 0).mean(),
        "numel": flat.size, "nan_count": int(np.isnan(flat).sum()), "inf_count": int(np.isinf(flat).sum()),
        "threshold_0.0": 100 * (flat == 0).mean(), "threshold_1e-6": 100 * (np.abs(flat) < 1e-6).mean(),
        "threshold_1e-4": 100 * (np.abs(flat) < 1e-4).mean(), "threshold_1e-2": 100 * (np.abs(flat) < 1e-2).mean(),
        "percentiles": np.percentile(a, [10, 25, 50, 75, 90]), "mean_abs": a.mean(),
        "dead_rows": int((absx < 1e-6).all(axis=1).sum()), "dead_cols": int((absx < 1e-6).all(axis=0).sum()),
    }  # fmt: skip


@pytest.mark.parametrize("name", list(DTYPES))
@pytest.mark.parametrize("block_elems", [None, 700])  # one block, and 10 blocks of 10 rows
def test_statistics_match_float64_reference(tmp_path, name, block_elems):
    t = make(DTYPES[name])
    path = save_tensors(tmp_path / "m.safetensors", {"w": t})
    r = scan_blocks(path, out=tmp_path / "out", block_elems=block_elems).tensors["w"]
    ref = reference(t)
    b, s = r["basic_stats"], r["sparsity"]
    exact = name in EXACT
    scale = ref["mean_abs"]
    rel = 1e-12 if exact else 1e-5
    assert b["numel"] == ref["numel"] and b["nan_count"] == ref["nan_count"] and b["inf_count"] == ref["inf_count"]
    assert b["mean"] == pytest.approx(ref["mean"], abs=(1e-12 if exact else 1e-6) * scale)
    for key in ("var", "std", "l2_norm"):
        assert b[key] == pytest.approx(ref[key], rel=rel), key
    for key in ("min", "max", "abs_max"):
        assert b[key] == ref[key], key  # extremes are exact in every dtype
    assert b["zeros_percentage"] == pytest.approx(ref["zeros_percentage"], rel=1e-12)
    for t_ in ("0.0", "1e-6", "1e-4", "1e-2"):
        assert s["sparsity_levels"][f"threshold_{t_}"] == pytest.approx(ref[f"threshold_{t_}"], rel=1e-12), t_
    assert s["mean_abs_weight"] == pytest.approx(ref["mean_abs"], rel=rel)
    got = np.array([s["magnitude_percentiles"][f"p{p}"] for p in (10, 25, 50, 75, 90)])
    if exact or block_elems is None:
        assert s["percentiles_exact"]
        np.testing.assert_allclose(got, ref["percentiles"], rtol=1e-12, atol=0)
    else:
        assert not s["percentiles_exact"]
        np.testing.assert_allclose(got, ref["percentiles"], rtol=2.0**-7, atol=0)
    assert s["median_abs_weight"] == s["magnitude_percentiles"]["p50"]
    ss = s["structured_sparsity"]
    assert (ss["dead_rows"], ss["dead_columns"]) == (ref["dead_rows"], ref["dead_cols"])
    assert ss["dead_rows_percentage"] == pytest.approx(100 * ref["dead_rows"] / t.shape[0])


def test_large_mean_small_spread_keeps_precision(tmp_path):
    """Norm weights (mean ~1, std ~1e-3): a naive sum-of-squares variance would lose every digit."""
    g = torch.Generator().manual_seed(1)
    w = 1.0 + 1e-3 * torch.randn(50_000, generator=g, dtype=torch.float64)
    path = save_tensors(tmp_path / "m.safetensors", {"n32": w.float(), "n16": w.to(torch.bfloat16)})
    r = scan_blocks(path, out=tmp_path / "o", block_elems=4096).tensors
    for name, t in (("n32", w.float()), ("n16", w.to(torch.bfloat16))):
        ref = t.double().numpy()
        assert r[name]["basic_stats"]["std"] == pytest.approx(ref.std(ddof=1), rel=1e-5)
        assert r[name]["basic_stats"]["mean"] == pytest.approx(ref.mean(), rel=1e-9)


def test_zero_size_scalar_and_all_nan(tmp_path):
    tensors = {
        "empty": torch.zeros(0, 8), "scalar": torch.tensor(3.5), "vec": torch.tensor([1.0, -2.0]),
        "nan": torch.full((4, 4), float("nan"), dtype=torch.bfloat16),
    }  # fmt: skip
    r = streamscope.scan(save_tensors(tmp_path / "m.safetensors", tensors), out=tmp_path / "o").tensors
    assert r["empty"]["basic_stats"]["numel"] == 0
    assert r["scalar"]["basic_stats"]["mean"] == 3.5 and r["scalar"]["basic_stats"]["abs_max"] == 3.5
    assert r["vec"]["basic_stats"]["min"] == -2.0 and "structured_sparsity" not in r["vec"]["sparsity"]
    nan = r["nan"]["basic_stats"]
    assert nan["nan_count"] == 16 and nan["mean"] != nan["mean"]


@pytest.mark.parametrize("analyses,native", [("basic,sparsity", True), ("quantization", True), ("quantization", False)])
def test_embedding_row_norms_against_reference(tmp_path, analyses, native):
    """Row norms with and without the row and column maxima (computed only for ``sparsity``), native or not."""
    emb = torch.randn(300, 48, dtype=torch.float64).to(torch.bfloat16)
    emb[17] *= 10
    path = save_tensors(tmp_path / "m.safetensors", {"model.embed_tokens.weight": emb, "lm_head.weight": emb.float()})
    r = scan_blocks(path, out=tmp_path / "o", block_elems=48 * 64, analyses=analyses, native=native)
    assert ("structured_sparsity" in r.tensors["lm_head.weight"].get("sparsity", {})) == ("sparsity" in analyses)
    ref = np.linalg.norm(emb.double().numpy(), axis=1)
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        e = r.model["embedding"][name]
        assert e["norm_mean"] == pytest.approx(ref.mean(), rel=1e-6)
        assert e["norm_std"] == pytest.approx(ref.std(ddof=1), rel=1e-6)
        assert e["norm_max"] == pytest.approx(ref.max(), rel=1e-6) and e["norm_min"] == pytest.approx(ref.min(), rel=1e-6)
        assert e["norm_percentiles"]["p50"] == pytest.approx(np.percentile(ref, 50), rel=1e-6)
        assert e["largest"][0]["id"] == 17
        assert [x["id"] for x in e["smallest"]] == list(np.argsort(ref, kind="stable")[:10])


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("block_elems", [None, 700, 1 << 16])
def test_float32_native_kernel_and_torch_path(tmp_path, native, block_elems):
    """F32 tensors go through the native one-pass kernel (sums in float64: the reference to 1e-12) or, with
    ``native=False``, the torch path (float32 block sums); both agree with the float64 reference. Covers a
    matrix with NaN/Inf, a vector longer than the kernel's 65,536-value rows, and an all-NaN matrix."""
    g = torch.Generator().manual_seed(3)
    vec = torch.randn(200_003, generator=g) * 0.1 + 0.5
    vec[17], vec[150_000] = float("nan"), float("-inf")
    tensors = {"w": make(torch.float32, rows=300, cols=200), "vec": vec, "nan": torch.full((5, 6), float("nan"))}
    path = save_tensors(tmp_path / "m.safetensors", tensors)
    r = scan_blocks(path, out=tmp_path / "o", block_elems=block_elems, native=native).tensors
    rel = 1e-12 if native else 1e-5
    for name in ("w", "vec"):
        ref, b, s = reference(tensors[name].reshape(-1, tensors[name].shape[-1])), r[name]["basic_stats"], r[name]["sparsity"]
        assert (b["numel"], b["nan_count"], b["inf_count"]) == (ref["numel"], ref["nan_count"], ref["inf_count"]), name
        assert b["mean"] == pytest.approx(ref["mean"], abs=(1e-13 if native else 1e-6) * ref["mean_abs"]), name
        for key in ("var", "l2_norm"):
            assert b[key] == pytest.approx(ref[key], rel=rel), (name, key)
        assert s["mean_abs_weight"] == pytest.approx(ref["mean_abs"], rel=rel), name
        for key in ("min", "max", "abs_max"):
            assert b[key] == ref[key], (name, key)
        for t_ in ("0.0", "1e-6", "1e-4", "1e-2"):
            assert s["sparsity_levels"][f"threshold_{t_}"] == pytest.approx(ref[f"threshold_{t_}"], rel=1e-12), (name, t_)
    ss, ref = r["w"]["sparsity"]["structured_sparsity"], reference(tensors["w"])
    assert (ss["dead_rows"], ss["dead_columns"]) == (ref["dead_rows"], ref["dead_cols"])
    nan = r["nan"]["basic_stats"]
    assert nan["nan_count"] == 30 and nan["mean"] != nan["mean"]


def test_light_kernel_against_reference():
    """``native.light_bf16``: the sum of squares of the finite values, NaN and Inf counts, per-row sums of squares
    (NaN or Inf where the row holds them, as the pattern scan writes them), also for a long vector."""
    from streamscope.kernels import native

    assert native.available(), "the native kernel was not built: nothing here would be tested"
    g = torch.Generator().manual_seed(5)
    w = (torch.randn(37, 301, generator=g) * 0.05).to(torch.bfloat16)
    w[3, 7], w[3, 8], w[30, 0] = float("nan"), float("inf"), float("-inf")
    keys = w.view(torch.int16).numpy().view(np.uint16).reshape(-1)
    rowsq = np.empty(37)
    sumsq, nan, inf = native.light_bf16(keys, 37, 301, rowsq)
    x = w.double().numpy()
    finite = x[np.isfinite(x)]
    assert (nan, inf) == (1, 2)
    assert sumsq == pytest.approx(float(np.dot(finite, finite)), rel=1e-12)
    ok = np.isfinite(x).all(axis=1)
    np.testing.assert_allclose(rowsq[ok], (x[ok] ** 2).sum(axis=1), rtol=1e-12)
    assert not np.isfinite(rowsq[~ok]).any()
    vec = torch.randn(200_003, generator=g).to(torch.bfloat16)
    vec[150_000] = float("nan")
    v = vec.double().numpy()
    sumsq, nan, inf = native.light_bf16(vec.view(torch.int16).numpy().view(np.uint16), 1, vec.numel())
    assert (nan, inf) == (1, 0) and sumsq == pytest.approx(float(np.nansum(v * v)), rel=1e-12)


@pytest.mark.parametrize("native", [True, False])
def test_spectral_alone_skips_the_histogram(tmp_path, native):
    """A bfloat16 scan whose analyses read no histogram (``spectral`` alone) keeps only counts and the sum of
    squares: the spectra, health grades and embedding row norms equal those of a scan that keeps the histogram,
    and no value histograms are written. The randomized method's stable rank reads the sum of squares."""
    import zarr

    g = torch.Generator().manual_seed(7)
    tensors = {
        "model.embed_tokens.weight": (torch.randn(300, 48, generator=g) * 0.02).to(torch.bfloat16),
        "model.layers.0.mlp.up_proj.weight": (torch.randn(96, 64, generator=g) * 0.02).to(torch.bfloat16),
        "model.layers.0.mlp.down_proj.weight": (torch.randn(64, 96, generator=g) * 0.02).to(torch.bfloat16),
        "model.norm.weight": torch.ones(200_003, dtype=torch.bfloat16),
    }
    tensors["model.layers.0.mlp.down_proj.weight"][5, 5] = float("nan")
    path = save_tensors(tmp_path / "m.safetensors", tensors)
    runs = {}
    for analyses in ("spectral", "basic,spectral"):
        out = tmp_path / analyses.replace(",", "_")
        runs[analyses] = scan_blocks(path, out=out, analyses=analyses, spectral="randomized", block_elems=64 * 32, native=native)
        has_histograms = "histograms" in zarr.open_group(str(out / "arrays.zarr"), mode="r")
        assert has_histograms == ("basic" in analyses)
    light, full = runs["spectral"], runs["basic,spectral"]
    for name in tensors:
        assert light.tensors[name].get("health") == full.tensors[name].get("health"), name
        a, b = light.tensors[name].get("spectral"), full.tensors[name].get("spectral")
        if name == "model.layers.0.mlp.down_proj.weight":
            assert "NaN" in a["error"] and a == b
        elif b is not None:
            assert a["stable_rank"] == pytest.approx(b["stable_rank"], rel=1e-12), name
            assert a["top_singular_values"] == b["top_singular_values"], name
    e, f = light.model["embedding"]["model.embed_tokens.weight"], full.model["embedding"]["model.embed_tokens.weight"]
    assert e["norm_mean"] == pytest.approx(f["norm_mean"], rel=1e-12) and e["largest"] == f["largest"]
