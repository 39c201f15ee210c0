"""The Python API as a user meets it: the checkpoint as a mapping of names with a short repr, ``Results`` at the
top level, compare's ``before``/``after``, Parquet list columns, row norms where the README says."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors import safe_open

import streamscope


def test_checkpoint_is_a_mapping_of_names(llama_dir):
    ckpt = streamscope.open(llama_dir)
    shards = sorted(llama_dir.glob("*.safetensors"))
    names = []
    for shard in shards:
        with safe_open(str(shard), "pt") as f:
            names += list(f.keys())
    assert set(ckpt) == set(names) and len(ckpt) == len(names) == len(list(ckpt.keys()))
    assert all(isinstance(n, str) for n in ckpt)
    assert "model.embed_tokens.weight" in ckpt and "model.nope.weight" not in ckpt and 3 not in ckpt
    assert ckpt.get("model.nope.weight") is None
    for name, t in ckpt.items():
        assert t.name == name and t.shape == ckpt[name].shape
    with safe_open(str(shards[0]), "pt") as f:
        first = next(iter(f.keys()))
        np.testing.assert_array_equal(ckpt[first].read(torch.float32).numpy(), f.get_tensor(first).float().numpy())
    with pytest.raises(KeyError, match="no tensor named"):
        ckpt["model.nope.weight"]
    params = sum(t.numel() for s in shards for t in _tensors(s))
    text = repr(ckpt)
    assert len(text) < 120 and text.startswith(f"<Checkpoint {llama_dir.name!r} safetensors, {len(names)} tensors, ")
    assert text.endswith(f"{len(shards)} shards>") and f"{params / 1e3:.1f}K params" in text  # a tiny model: thousands
    assert repr(ckpt.index).startswith("<CheckpointIndex ") and len(repr(ckpt["model.embed_tokens.weight"])) < 100


def _tensors(path):
    with safe_open(str(path), "pt") as f:
        return [f.get_tensor(k) for k in f.keys()]


def test_results_importable_from_the_top_level_and_where_it_was():
    from streamscope import Results
    from streamscope.results_dir import Results as Loaded

    assert Results is Loaded and "Results" in streamscope.__all__


def test_a_scan_returns_what_its_directory_opens_as(llama_dir, tmp_path):
    """One result type: what ``scan`` returns is a ``Results``, and the directory opened again has the same records,
    model, errors and table (the table rebuilt from tensors.json equals the one the scan wrote to tensors.csv)."""
    r = streamscope.scan(llama_dir, out=tmp_path / "o", select=r"layers\.0\.|norm")
    assert isinstance(r, streamscope.Results) and streamscope.ScanResult is streamscope.Results
    assert r.out == r.path == tmp_path / "o" and r.errors == []
    opened = streamscope.Results.open(tmp_path / "o")
    assert opened.tensors == json.loads((tmp_path / "o" / "tensors.json").read_text(encoding="utf-8")) and opened.errors == []
    assert list(opened.tensors) == list(r.tensors) and opened.model["checkpoint"] == r.model["checkpoint"]
    written = pd.read_csv(tmp_path / "o" / "tensors.csv")
    for table in (r.table, opened.table):
        assert list(table.columns) == list(written.columns)
        pd.testing.assert_frame_equal(table.reset_index(drop=True), written, check_dtype=False)


def test_compare_arguments_are_before_and_after(llama_dir):
    params = list(inspect.signature(streamscope.compare).parameters)
    assert params[:2] == ["before", "after"]
    by_name = streamscope.compare(before=llama_dir, after=llama_dir)
    assert by_name["total_params"]["reduced"] == 0 and by_name == streamscope.compare(llama_dir, llama_dir)


def test_parquet_holds_lists_and_shapes_as_list_columns(llama_dir, tmp_path):
    out = tmp_path / "o"
    streamscope.scan(llama_dir, out=out, analyses="spectral,quantization", select=r"layers\.0\.|norm")
    records = json.loads((out / "tensors.json").read_text())
    pq = pd.read_parquet(out / "tensors.parquet").set_index("tensor")
    csv = pd.read_csv(out / "tensors.csv").set_index("tensor")
    for name, rec in records.items():
        assert list(pq.loc[name, "shape"]) == rec["info"]["shape"]
        assert csv.loc[name, "shape"] == "x".join(map(str, rec["info"]["shape"]))
        top = (rec.get("spectral") or {}).get("top_singular_values")
        if top:
            assert list(pq.loc[name, "spectral.top_singular_values"]) == pytest.approx(top, rel=1e-12)
            assert json.loads(csv.loc[name, "spectral.top_singular_values"]) == pytest.approx(top, rel=1e-12)
        reasons = (rec.get("health") or {}).get("reasons")
        if reasons is not None:
            assert list(pq.loc[name, "health.reasons"]) == reasons
    assert any((r.get("spectral") or {}).get("top_singular_values") for r in records.values())


def test_row_norms_are_where_the_readme_says(llama_dir, tmp_path):
    """The README: row norms of the embedding and output matrices go to arrays.zarr, read by Results.array."""
    out = tmp_path / "o"
    streamscope.scan(llama_dir, out=out, select="embed|lm_head")
    results = streamscope.Results.open(out)
    ckpt = streamscope.open(llama_dir)
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        if name not in ckpt:
            continue
        norms = results.array(name, "row_norms")
        ref = torch.linalg.vector_norm(ckpt[name].read(torch.float64), dim=1).numpy()
        np.testing.assert_allclose(norms, ref, rtol=1e-6)  # float32 block sums
