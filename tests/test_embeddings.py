"""The embedding study: streamed k-means against scikit-learn, the elbow's knee, outputs, report sections."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import zarr
from typer.testing import CliRunner

import streamscope
from streamscope.cli import app
from streamscope.kernels.kmeans import knee, silhouette
from streamscope.synthetic import save_tensors

runner = CliRunner()


def blobs(k: int, n: int, dim: int, seed: int = 0, spread: float = 4.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, dim)) * spread
    x = np.concatenate([c + rng.normal(size=(n, dim)) for c in centers]).astype(np.float32)
    rng.shuffle(x)
    return x


def test_auto_finds_the_known_k_and_matches_sklearn(tmp_path):
    from sklearn.cluster import KMeans

    x = blobs(5, 400, 24)
    path = save_tensors(tmp_path / "m.safetensors", {"model.embed_tokens.weight": torch.from_numpy(x)})
    r = streamscope.embeddings(path, out=tmp_path / "o", k_range="2:9", memory_budget="16MB")  # many row blocks
    c = r["clusters"]["model.embed_tokens.weight"]
    assert c["k"] == 5 and "Kneedle" in c["k_rule"]
    ours = next(e["inertia"] for e in c["elbow"] if e["k"] == 5)
    ref = KMeans(5, n_init=10, random_state=0).fit(x).inertia_
    assert ours == pytest.approx(ref, rel=0.03)  # the bound; well-separated blobs give the same optimum
    assert sorted(c["sizes"]) == [400] * 5
    sil = {e["k"]: e["silhouette"] for e in c["elbow"]}
    assert max(sil, key=sil.get) == 5


def test_cosine_metric_clusters_directions(tmp_path):
    x = blobs(4, 300, 16, seed=1)
    scale = np.random.default_rng(2).uniform(0.1, 10, size=(len(x), 1)).astype(np.float32)
    x = x / np.linalg.norm(x, axis=1, keepdims=True) * scale  # the same directions at wildly different norms
    path = save_tensors(tmp_path / "m.safetensors", {"lm_head.weight": torch.from_numpy(x)})
    r = streamscope.embeddings(path, out=tmp_path / "o", k_range="2:8", metric="cosine")
    c = r["clusters"]["lm_head.weight"]
    assert c["k"] == 4 and c["metric"] == "cosine" and sorted(c["sizes"]) == [300] * 4
    assert all(e["inertia"] <= 4 * len(x) for e in c["elbow"])  # squared chordal distances of unit vectors


def test_real_minilm_embedding_against_sklearn(minilm_dir, tmp_path):
    from safetensors.numpy import load_file
    from sklearn.cluster import KMeans

    r = streamscope.embeddings(minilm_dir, out=tmp_path / "o", k_range="2:8")
    c = r["clusters"]["embeddings.word_embeddings.weight"]
    x = load_file(str(minilm_dir / "model.safetensors"))["embeddings.word_embeddings.weight"]
    ours = next(e["inertia"] for e in c["elbow"] if e["k"] == c["k"])
    ref = KMeans(c["k"], n_init=3, random_state=0).fit(x).inertia_
    assert ours <= ref * 1.03
    assert sum(c["sizes"]) == 30522 and len(c["clusters"]) == c["k"]
    first = c["clusters"][0]
    assert {"id", "size", "mean_norm", "tokens", "random_members"} <= set(first) and isinstance(first["tokens"][0]["token"], str)
    # the norm statistics are the scan's own
    scanned = streamscope.scan(minilm_dir, out=tmp_path / "s", select="word_embeddings")
    assert r["norms"]["embeddings.word_embeddings.weight"] == json.loads(json.dumps(scanned.model["embedding"]["embeddings.word_embeddings.weight"]))
    assert {e["name"] for e in r["norm_layers"]} == {"embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"}
    root = zarr.open_group(str(tmp_path / "o" / "arrays.zarr"), mode="r")
    group = next(g for _, g in root["embeddings"].groups() if g.attrs["tensor"] == "embeddings.word_embeddings.weight")
    assert group["labels"].shape == (30522,) and group["centroids"].shape == (c["k"], 384)
    table = pd.read_csv(tmp_path / "o" / "clusters.csv")
    assert set(table["tensor"]) == set(r["clusters"]) and table["size"].sum() == sum(sum(v["sizes"]) for v in r["clusters"].values())


def test_report_shows_the_clusters(tmp_path):
    path = save_tensors(tmp_path / "m.safetensors", {"model.embed_tokens.weight": torch.from_numpy(blobs(3, 200, 8))})
    result = runner.invoke(app, ["embeddings", str(path), "--out", str(tmp_path / "o"), "--k-range", "2:6", "--report", "--quiet"])
    assert result.exit_code == 0, result.output
    figures = tmp_path / "o" / "figures"
    assert (figures / "embedding_elbow.png").is_file() and (figures / "embedding_clusters.png").is_file()
    page = (tmp_path / "o" / "report.html").read_text()
    assert "k = 3" in page and 'id="embeddings"' in page


def test_bad_input_is_one_line(tmp_path):
    path = save_tensors(tmp_path / "m.safetensors", {"model.layers.0.mlp.up_proj.weight": torch.ones(32, 8)})
    result = runner.invoke(app, ["embeddings", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "no embedding matrix" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["embeddings", str(path), "--k-range", "9:3"])
    assert result.exit_code == 1 and "--k-range" in result.output
    result = runner.invoke(app, ["embeddings", str(path), "--metric", "manhattan"])
    assert result.exit_code == 1 and "--metric" in result.output


def test_knee_and_silhouette_kernels():
    assert knee([1, 2, 3, 4, 5, 6], [100, 30, 10, 8, 7, 6.5]) == 3
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(0)
    pts = rng.normal(size=(60, 3))
    labels = rng.integers(0, 3, 60)
    # rel 1e-6: torch.cdist takes the |a|^2 - 2ab + |b|^2 path, which loses a few float64 digits
    assert silhouette(torch.from_numpy(pts), torch.from_numpy(labels)) == pytest.approx(silhouette_score(pts, labels), rel=1e-6)


def test_no_clear_structure_is_said(tmp_path):
    """Gaussian rows have no clusters: the knee of their elbow curve is announced as no structure; rows drawn
    around well-separated centres keep their knee."""
    cloud = np.random.default_rng(3).normal(size=(3000, 48)).astype(np.float32)
    path = save_tensors(tmp_path / "cloud.safetensors", {"model.embed_tokens.weight": torch.from_numpy(cloud)})
    result = CliRunner().invoke(app, ["embeddings", str(path), "--out", str(tmp_path / "c"), "--k-range", "2:12"])
    assert result.exit_code == 0, result.output
    s = json.loads((tmp_path / "c" / "embeddings.json").read_text())["clusters"]["model.embed_tokens.weight"]["structure"]
    assert not s["clear"] and s["inertia_share"] > 0.75 * s["reference_share"]
    row = next(line for line in result.output.splitlines() if "embed_tokens" in line and "passes" not in line).split()
    assert row[0] == "model.embed_tokens" and row[2] == "none"  # the rule column
    assert "no clear cluster structure" in result.output and "knee" not in result.output
    path = save_tensors(tmp_path / "blobs.safetensors", {"model.embed_tokens.weight": torch.from_numpy(blobs(4, 400, 48, seed=4))})
    result = CliRunner().invoke(app, ["embeddings", str(path), "--out", str(tmp_path / "b"), "--k-range", "2:12"])
    assert result.exit_code == 0, result.output
    c = json.loads((tmp_path / "b" / "embeddings.json").read_text())["clusters"]["model.embed_tokens.weight"]
    assert c["k"] == 4 and c["structure"]["clear"] and "knee" in result.output and "no clear" not in result.output


def test_silhouette_prints_no_negative_zero():
    from streamscope.report.embeddings_table import fixed

    for v in (-0.0004, -1e-12, 0.0, 0.0004, -0.0006, 0.25, -0.3, None):
        text = fixed(v)
        assert text == ("-" if v is None else f"{v:.3f}".replace("-0.000", "0.000"))
        assert text != "-0.000"


def test_interrupted_clustering_resumes_at_its_pass(tmp_path, monkeypatch):
    """Ctrl-C in the middle of the Lloyd passes, then the same command: only the passes not finished are streamed
    again, and the results equal those of a run never interrupted."""
    from streamscope.engine.runner import TensorRunner
    from streamscope.errors import Interrupted

    x = np.random.default_rng(3).normal(size=(3000, 16)).astype(np.float32)  # a cloud: many Lloyd passes
    path = save_tensors(tmp_path / "m.safetensors", {"model.embed_tokens.weight": torch.from_numpy(x)})
    calls, stop_at = [], [None]
    original = TensorRunner.row_blocks

    def counted(self, info):
        calls.append(info.name)
        if stop_at[0] is not None and len(calls) == stop_at[0]:
            raise KeyboardInterrupt
        return original(self, info)

    monkeypatch.setattr(TensorRunner, "row_blocks", counted)
    clean = streamscope.embeddings(path, out=tmp_path / "clean", k_range="2:10")
    full = len(calls)
    assert full >= 10, "needs several passes over the rows to test resuming"
    calls.clear()
    stop = stop_at[0] = full - 3  # the pass this call starts is cut off; those before it are finished
    with pytest.raises(Interrupted, match="finished passes .* kept .* run the same command to resume"):
        streamscope.embeddings(path, out=tmp_path / "o", k_range="2:10")
    calls.clear()
    stop_at[0] = None
    resumed = streamscope.embeddings(path, out=tmp_path / "o", k_range="2:10")
    assert len(calls) == full - (stop - 1)  # the cut pass and those after it, not the full run's passes
    assert resumed["clusters"] == clean["clusters"] and resumed["norms"] == clean["norms"]
    assert not (tmp_path / "o" / ".embeddings.partial").exists()
    again = streamscope.embeddings(path, out=tmp_path / "o", k_range="2:10")  # a finished run leaves nothing to resume
    assert again["clusters"] == clean["clusters"]
