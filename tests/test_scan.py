"""End-to-end scans of real and transformers-built checkpoints, output files, resume."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import zarr
from safetensors.torch import load_file

import streamscope
from streamscope.results_dir import Results
from streamscope.synthetic import save_tensors
from conftest import scan_blocks


def test_minilm_real_weights(minilm_dir, tmp_path):
    r = streamscope.scan(minilm_dir, out=tmp_path / "out", memory_budget="64MB")
    ref = load_file(str(minilm_dir / "model.safetensors"))
    assert set(r.tensors) == set(ref)
    for name in ("embeddings.word_embeddings.weight", "encoder.layer.3.intermediate.dense.weight", "encoder.layer.5.output.LayerNorm.weight"):
        x = ref[name].double()
        b = r.tensors[name]["basic_stats"]
        assert b["mean"] == pytest.approx(float(x.mean()), abs=1e-6 * float(x.abs().mean()))
        assert b["std"] == pytest.approx(float(x.std()), rel=1e-5)
        assert b["abs_max"] == float(x.abs().max())
        assert b["l2_norm"] == pytest.approx(float(x.norm()), rel=1e-5)
    info = r.tensors["encoder.layer.3.attention.self.query.weight"]["info"]
    assert (info["layer_index"], info["block_type"], info["dtype"], info["shape"]) == (3, "q_proj", "F32", [384, 384])
    emb = r.model["embedding"]["embeddings.word_embeddings.weight"]
    norms = ref["embeddings.word_embeddings.weight"].double().norm(dim=1).numpy()
    assert emb["vocab_size"] == 30522 and emb["norm_mean"] == pytest.approx(norms.mean(), rel=1e-6)
    assert emb["largest"][0]["id"] == int(norms.argmax())
    vocab = (minilm_dir / "vocab.txt").read_text().splitlines()
    assert emb["largest"][0]["token"] == vocab[int(norms.argmax())]  # decoded through tokenizer.json
    assert r.model["embedding"]["embeddings.position_embeddings.weight"]["largest"][0]["token"] is None
    related = {e["name"]: e for e in r.model["norm_layers"]["embedding_related"]}
    assert set(related) == {"embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"}
    assert related["embeddings.LayerNorm.weight"]["kind"] == "LayerNorm"
    assert r.model["norm_layers"]["count"] == 26  # 2 embedding + 6 layers x 2 LayerNorms x (weight, bias)


def test_output_files(minilm_dir, tmp_path):
    out = tmp_path / "out"
    r = streamscope.scan(minilm_dir, out=out, select=r"layer\.0\.|embeddings")
    data = json.loads((out / "tensors.json").read_text())
    assert set(data) == set(r.tensors) and all(".0." in n or "embeddings" in n for n in data)
    rec = data["encoder.layer.0.output.dense.weight"]
    assert set(rec) >= {"info", "basic_stats", "sparsity"}
    assert set(rec["basic_stats"]) == {"mean", "std", "var", "min", "max", "abs_max", "l2_norm", "zeros_percentage", "numel", "nan_count", "inf_count"}
    assert set(rec["sparsity"]["sparsity_levels"]) == {"threshold_0.0", "threshold_1e-6", "threshold_1e-4", "threshold_1e-2"}
    assert set(rec["sparsity"]["structured_sparsity"]) == {"dead_rows", "dead_rows_percentage", "dead_columns", "dead_columns_percentage"}
    assert set(rec["sparsity"]["magnitude_percentiles"]) == {"p10", "p25", "p50", "p75", "p90"}
    csv = pd.read_csv(out / "tensors.csv")
    pq = pd.read_parquet(out / "tensors.parquet")
    for df in (csv, pq):
        assert len(df) == len(data)
        assert {"model_path", "tensor", "layer_index", "block_type", "shape", "dtype", "basic_stats.mean", "sparsity.sparsity_levels.threshold_1e-2"} <= set(df.columns)
    row = pq.set_index("tensor").loc["encoder.layer.0.output.dense.weight"]
    assert row["basic_stats.std"] == rec["basic_stats"]["std"] and list(row["shape"]) == [384, 1536]
    model = json.loads((out / "model.json").read_text())
    assert "embeddings.word_embeddings.weight" in model["embedding"] and model["checkpoint"]["num_tensors"] == 104
    root = zarr.open_group(str(out / "arrays.zarr"), mode="r")
    names = root["histograms"].attrs["tensor_names"]
    counts = root["histograms/counts"][:]
    assert counts.shape == (len(names), 256)
    i = names.index("encoder.layer.0.output.dense.weight")
    assert counts[i].sum() == 384 * 1536
    norms = Results.open(out).array("embeddings.word_embeddings.weight", "row_norms")
    assert norms.shape == (30522,)
    np.testing.assert_allclose(norms.mean(), model["embedding"]["embeddings.word_embeddings.weight"]["norm_mean"], rtol=1e-12)


def test_sharded_llama_and_qwen2(llama_dir, qwen2_dir, tmp_path):
    for d in (llama_dir, qwen2_dir):
        index = json.loads((d / "model.safetensors.index.json").read_text())
        assert len(set(index["weight_map"].values())) >= 2  # really sharded
        r = streamscope.scan(d, out=tmp_path / d.name, memory_budget="32MB")
        assert set(r.tensors) == set(index["weight_map"])
        assert r.tensors["model.layers.1.self_attn.k_proj.weight"]["info"]["block_type"] == "k_proj"
        assert r.tensors["model.layers.2.mlp.down_proj.weight"]["info"]["layer_index"] == 2
        related = {e["name"]: e["embedding_related"] for e in r.model["norm_layers"]["embedding_related"]}
        assert set(related) == {"model.layers.0.input_layernorm.weight", "model.norm.weight"}
        assert all(e["kind"] == "RMSNorm" for e in r.model["norm_layers"]["layers"])
    q = streamscope.scan(qwen2_dir, out=tmp_path / "q2")
    assert q.tensors["model.layers.0.self_attn.q_proj.bias"]["info"]["block_type"] == "bias"
    assert "lm_head.weight" not in q.tensors  # tied embeddings: only embed_tokens is stored
    emb = q.model["embedding"]["model.embed_tokens.weight"]
    assert emb["vocab_size"] == 512 and emb["embedding_dim"] == 64
    llama = streamscope.scan(llama_dir, out=tmp_path / "l2")
    assert {"model.embed_tokens.weight", "lm_head.weight"} <= set(llama.model["embedding"])


def test_qwen2_5_vl_nested_names(tmp_path):
    t = lambda *s: torch.randn(*s, dtype=torch.float32).to(torch.bfloat16)  # noqa: E731
    path = save_tensors(tmp_path / "m.safetensors", {
        "model.language_model.embed_tokens.weight": t(100, 16),
        "model.language_model.layers.0.input_layernorm.weight": torch.ones(16, dtype=torch.bfloat16),
        "model.language_model.layers.0.self_attn.q_proj.weight": t(16, 16),
        "model.language_model.norm.weight": torch.ones(16, dtype=torch.bfloat16),
        "model.visual.blocks.0.attn.qkv.weight": t(48, 16),
        "model.visual.blocks.0.norm1.weight": torch.ones(16, dtype=torch.bfloat16),
        "model.visual.merger.ln_q.weight": torch.ones(16, dtype=torch.bfloat16),
        "lm_head.weight": t(100, 16),
    })  # fmt: skip
    r = streamscope.scan(path, out=tmp_path / "o")
    info = {n: rec["info"] for n, rec in r.tensors.items()}
    assert info["model.language_model.layers.0.self_attn.q_proj.weight"]["layer_index"] == 0
    assert info["model.visual.blocks.0.attn.qkv.weight"]["tower"] == "vision"
    assert info["model.visual.blocks.0.attn.qkv.weight"]["block_type"] == "qkv_proj"
    related = {e["name"] for e in r.model["norm_layers"]["embedding_related"]}
    assert related == {"model.language_model.layers.0.input_layernorm.weight", "model.language_model.norm.weight"}


def test_resume_reuses_finished_tensors(llama_dir, tmp_path, monkeypatch):
    """An interrupted scan keeps what it finished; the rerun computes only the rest and writes the same files."""
    from streamscope.engine import runner

    out = tmp_path / "out"
    original, calls = runner.TensorRunner.run, []

    def interrupted_after_five(self, info, on_bytes=None):
        if len(calls) == 5:
            raise KeyboardInterrupt
        calls.append(info.name)
        return original(self, info, on_bytes)

    monkeypatch.setattr(runner.TensorRunner, "run", interrupted_after_five)
    with pytest.raises(streamscope.StreamscopeError, match=r"interrupted: 5 of 30 tensors kept in .*\.partial; run the same command"):
        streamscope.scan(llama_dir, out=out, analyses="all")
    monkeypatch.setattr(runner.TensorRunner, "run", original)
    assert (out / ".partial").is_dir() and not (out / "tensors.json").exists()
    full = streamscope.scan(llama_dir, out=out, analyses="all")
    assert full.model["timing"]["tensors_reused"] == 5
    assert not (out / ".partial").exists()  # a successful scan leaves none behind
    fresh = streamscope.scan(llama_dir, out=tmp_path / "fresh", analyses="all")
    assert full.tensors == fresh.tensors
    for name in ("tensors.csv", "tensors.json"):  # resumed and fresh files are identical (inf stays inf)
        assert (out / name).read_text() == (tmp_path / "fresh" / name).read_text().replace(str(tmp_path / "fresh"), str(out)), name
    again = streamscope.scan(llama_dir, out=out, resume=False)
    assert again.model["timing"]["tensors_reused"] == 0


def test_failed_tensor_is_reported_and_others_kept(tmp_path, monkeypatch):
    path = save_tensors(tmp_path / "m.safetensors", {"a": torch.ones(8, 8), "b": torch.ones(4), "c": torch.zeros(3)})
    from streamscope.engine import runner as engine

    original = engine.TensorRunner.run

    def flaky(self, info, on_bytes=None):
        if info.name == "b":
            raise ZeroDivisionError("a bug in one analysis")  # any exception, not only I/O errors
        return original(self, info, on_bytes)

    monkeypatch.setattr(engine.TensorRunner, "run", flaky)
    r = streamscope.scan(path, out=tmp_path / "o")
    assert set(r.tensors) == {"a", "c"}
    assert len(r.errors) == 1 and "tensor 'b'" in r.errors[0] and str(path) in r.errors[0]
    assert json.loads((tmp_path / "o" / "model.json").read_text())["errors"] == r.errors


def test_distributed_scheduler_gives_the_same_results(llama_dir, tmp_path):
    local = streamscope.scan(llama_dir, out=tmp_path / "a", select=r"layers\.1\.")
    dist = streamscope.scan(llama_dir, out=tmp_path / "b", select=r"layers\.1\.", scheduler="local", workers=2)
    assert dist.tensors == local.tensors


def test_small_tensors_run_side_by_side_with_the_same_results(llama_dir, tmp_path, monkeypatch):
    """With a compute-bound analysis, runs of small tensors go one per thread, each kernel on one thread; the
    results equal one tensor at a time."""
    import threading

    from streamscope.engine import executors, runner

    original, seen = runner.TensorRunner.run, {}

    def watched(self, info, on_bytes=None):
        seen[info.name] = (threading.current_thread().name, torch.get_num_threads())
        return original(self, info, on_bytes)

    monkeypatch.setattr(runner.TensorRunner, "run", watched)
    monkeypatch.setattr(executors, "job_threads", lambda: 2)
    side = streamscope.scan(llama_dir, out=tmp_path / "a", analyses="all")
    assert len(seen) == 30 and all(t.startswith("streamscope-job") and n == 1 for t, n in seen.values()), seen
    seen.clear()
    streamscope.scan(llama_dir, out=tmp_path / "light", analyses="basic,sparsity")  # no compute-bound analysis
    assert {t for t, _ in seen.values()} == {"MainThread"}
    seen.clear()
    monkeypatch.setattr(executors, "job_threads", lambda: 1)
    alone = streamscope.scan(llama_dir, out=tmp_path / "b", analyses="all")
    assert {t for t, _ in seen.values()} == {"MainThread"}
    assert side.tensors.keys() == alone.tensors.keys()
    for name, rec in alone.tensors.items():
        for section, values in rec.items():
            assert side.tensors[name][section] == pytest.approx(values, rel=1e-9, nan_ok=True) if section == "spectral" else (
                side.tensors[name][section] == values), (name, section)  # fmt: skip
    assert (tmp_path / "a" / "tensors.csv").read_text().count("\n") == (tmp_path / "b" / "tensors.csv").read_text().count("\n")


def test_side_by_side_takes_small_jobs_only():
    """A job runs beside others only when every analysis could pick its method within a share of the budget."""
    from types import SimpleNamespace

    from streamscope.analyses.spectral import method_bytes
    from streamscope.engine.budget import MemoryBudget
    from streamscope.engine.executors import BYTES_PER_VALUE, SIDE_BY_SIDE_MAX_VALUES, side_by_side

    job = lambda *shape: SimpleNamespace(tensors=(SimpleNamespace(numel=int(np.prod(shape))),))  # noqa: E731
    share = MemoryBudget(512 << 20)
    assert side_by_side(job(576, 1536), share) and side_by_side(job(896), share)
    assert not side_by_side(job(4096, 4096), share)  # memory-bound products: faster on every core, one at a time
    assert not side_by_side(job(1024, 2048), MemoryBudget(32 << 20))  # over the share's analysis memory
    for rows, cols in ((2, 2), (576, 1536), (2048, 2048), (7, 2048), (2048, 1)):
        for method in ("exact", "gram", "randomized"):
            need = method_bytes(method, rows, cols, block_elems=SIDE_BY_SIDE_MAX_VALUES)
            assert need <= BYTES_PER_VALUE * rows * cols or method == "randomized", (method, rows, cols)


def test_bad_options(tmp_path, llama_dir):
    with pytest.raises(streamscope.OptionError, match="--memory-budget 'lots'"):
        streamscope.scan(llama_dir, memory_budget="lots")
    with pytest.raises(streamscope.OptionError, match="--select"):
        streamscope.scan(llama_dir, select="([")
    with pytest.raises(streamscope.OptionError, match="unknown analysis 'magic'"):
        streamscope.scan(llama_dir, analyses="basic,magic")
    if not torch.cuda.is_available():
        with pytest.raises(streamscope.DeviceError, match="CUDA is not available"):
            streamscope.scan(llama_dir, device="cuda")


def test_portable_path_matches_native_path(llama_dir, tmp_path, monkeypatch):
    """The path GPUs take (pread into double buffers, torch histogram, no C kernel) gives the same results."""
    from streamscope.kernels import native

    assert native.available(), "the native kernel was not built: this test would compare the portable path with itself"
    fast = scan_blocks(llama_dir, out=tmp_path / "a", analyses="basic,sparsity,quantization", block_elems=2048)
    from streamscope.io.reader import RawReader

    def forbidden(*args, **kwargs):
        raise AssertionError("the portable path must not map files or call the C kernel")

    monkeypatch.setattr(native, "scan_patterns", forbidden)
    monkeypatch.setattr(RawReader, "_mapped", forbidden)
    portable = scan_blocks(llama_dir, out=tmp_path / "b", analyses="basic,sparsity,quantization", block_elems=2048,
                                reader="pread", native=False)  # fmt: skip
    for name, rec in fast.tensors.items():
        assert portable.tensors[name]["basic_stats"] == rec["basic_stats"], name
        assert portable.tensors[name]["sparsity"] == rec["sparsity"], name
        assert portable.tensors[name]["quantization"]["sqnr_db"] == pytest.approx(rec["quantization"]["sqnr_db"], rel=1e-9)
    assert portable.model["embedding"] == fast.model["embedding"] or all(
        portable.model["embedding"][n]["norm_mean"] == pytest.approx(e["norm_mean"], rel=1e-6) for n, e in fast.model["embedding"].items()
    )
