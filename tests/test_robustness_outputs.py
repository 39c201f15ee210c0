"""Outputs of several commands and runs: one directory shared, resume under other options, batches, last words."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

import streamscope
from streamscope.cli import app
from streamscope.results_dir import Results
from tests import tiny_models

runner = CliRunner()

GROUPS = {"scan": ("histograms", "tensors"), "embeddings": ("embeddings",), "activations": ("activations",)}


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return tiny_models.build("llama", tmp_path_factory.mktemp("tiny") / "llama")


def run_command(command: str, model, out) -> None:
    if command == "scan":
        assert not streamscope.scan(model, out=out, analyses="all").errors
    elif command == "embeddings":
        streamscope.embeddings(model, out=out, k_range="2:4")
    else:
        streamscope.activations(model, out=out, overrides={"data.num_samples": 2, "data.seq_len": 8}, echo=lambda *a: None)


# -- one --out for scan, embeddings and activations ---------------------------------------------------------------


@pytest.mark.parametrize("order", [("scan", "embeddings", "activations"), ("activations", "embeddings", "scan"), ("embeddings", "activations", "scan")])
def test_commands_sharing_one_out_keep_each_others_arrays(llama, tmp_path, order):
    out = tmp_path / "o"
    for command in order:
        run_command(command, llama, out)
        root = zarr.open_group(str(out / "arrays.zarr"), mode="r")
        done = order[: order.index(command) + 1]
        for group in itertools.chain.from_iterable(GROUPS[c] for c in done):
            assert group in root, f"{group} lost after {command}"
    assert not [p.name for p in out.iterdir() if p.name.endswith((".tmp", ".old", ".lock"))]
    r = Results.open(out)
    embedding = "model.embed_tokens.weight"
    assert r.histogram(embedding) is not None and r.array("model.layers.0.mlp.up_proj.weight", "singular_values") is not None
    assert r.array(embedding, "row_norms").size == r.tensors[embedding]["info"]["shape"][0]
    assert r.embedding_array(embedding, "projection") is not None and r.activations
    assert zarr.open_group(str(out / "arrays.zarr"), mode="r")["activations/input_ids"].shape == (2, 8)
    result = runner.invoke(app, ["report", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    figures = {p.name for p in (out / "figures").iterdir()}
    assert {"health_dashboard.png", "layer_trends.png", "embedding_norms.png", "embedding_clusters.png",
            "magnitude_input.png"} <= figures  # fmt: skip
    page = (out / "report.html").read_text()
    assert all(f'id="{s}"' in page for s in ("weights", "embeddings", "activations"))


def test_a_second_scan_replaces_only_its_own_groups(llama, tmp_path):
    """The scan's groups are its own: a second scan's replace the first's (none of them stale), others stay."""
    out = tmp_path / "o"
    run_command("embeddings", llama, out)
    streamscope.scan(llama, out=out, analyses="all")
    streamscope.scan(llama, out=out, analyses="basic", select="layers\\.0\\.mlp")
    root = zarr.open_group(str(out / "arrays.zarr"), mode="r")
    assert "embeddings" in root and set(root["histograms"].attrs["tensor_names"]) == set(Results.open(out).tensors)
    assert "singular_values" not in dict(root["tensors"].groups())  # the first scan's spectra, not this one's, are gone


def test_embeddings_alone_keeps_its_row_norms_and_never_writes_over_a_scans(llama, tmp_path):
    out = tmp_path / "o"
    run_command("embeddings", llama, out)
    assert Results.open(out).array("model.embed_tokens.weight", "row_norms") is not None  # the report's figure
    streamscope.scan(llama, out=out, analyses="basic", select="layers\\.0\\.mlp")  # its tensors group: no row norms
    run_command("embeddings", llama, out)
    tensors = zarr.open_group(str(out / "arrays.zarr"), mode="r")["tensors"]
    assert "row_norms" not in tensors and tensors.attrs["written_by"] == "scan"  # the scan's group, as the scan left it


# -- resume under other options --------------------------------------------------------------------------------------


def test_resume_under_another_memory_budget_computes_again(tmp_path, monkeypatch):
    """At 16MB the budget leaves the spectrum 5 MiB: a 1200 x 1024 matrix gets ``randomized``, at 4GB ``gram``.
    An interrupted 16MB run's results must not stand in a 4GB run's."""
    import torch

    from streamscope.results import ResultStore
    from streamscope.synthetic import save_tensors

    monkeypatch.setattr(ResultStore, "discard_partial", lambda self: None)  # keep .partial, as interrupted runs do
    torch.manual_seed(0)
    path = save_tensors(tmp_path / "m.safetensors", {"w": torch.randn(1200, 1024)})
    out, args = tmp_path / "o", {"analyses": "basic,spectral"}
    small = streamscope.scan(path, out=out, memory_budget="16MB", **args)
    assert small.tensors["w"]["spectral"]["method"] == "randomized"
    again = streamscope.scan(path, out=out, memory_budget="4GB", **args)
    fresh = streamscope.scan(path, out=tmp_path / "fresh", memory_budget="4GB", **args)
    assert fresh.tensors["w"]["spectral"]["method"] == "gram"
    assert again.model["timing"]["tensors_reused"] == 0 and again.tensors == fresh.tensors
    same = streamscope.scan(path, out=out, memory_budget="4GB", **args)
    assert same.model["timing"]["tensors_reused"] == 1  # the same budget still resumes


# -- batches -----------------------------------------------------------------------------------------------------------


def test_batch_inputs_of_the_same_name_get_a_directory_each(tmp_path):
    import pandas as pd
    import torch

    from streamscope.synthetic import save_tensors

    for parent, scale in (("a", 1.0), ("b", 100.0)):
        (tmp_path / parent / "model").mkdir(parents=True)
        save_tensors(tmp_path / parent / "model" / "model.safetensors", {"w": torch.ones(4, 4) * scale})
    out = tmp_path / "o"
    result = runner.invoke(app, ["scan", str(tmp_path / "a" / "model"), str(tmp_path / "b" / "model"), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["out"]) == [str(out / "model"), str(out / "model-2")] and summary["model"].is_unique
    maxima = [Results.open(d).tensors["w"]["basic_stats"]["max"] for d in summary["out"]]
    assert maxima == [1.0, 100.0]


# -- last words ----------------------------------------------------------------------------------------------------------


def test_quiet_scan_with_failed_tensors_says_so_in_one_line(tmp_path, monkeypatch):
    import torch

    from streamscope.engine.runner import TensorRunner
    from streamscope.synthetic import save_tensors

    run = TensorRunner.run

    def failing(self, info, *a, **kw):
        if info.name == "b":
            raise RuntimeError("simulated kernel bug")
        return run(self, info, *a, **kw)

    monkeypatch.setattr(TensorRunner, "run", failing)
    path = save_tensors(tmp_path / "m.safetensors", {"a": torch.ones(3, 3), "b": torch.ones(4, 4)})
    quiet_runner = CliRunner(mix_stderr=False) if "mix_stderr" in CliRunner.__init__.__code__.co_varnames else CliRunner()
    result = quiet_runner.invoke(app, ["scan", str(path), "--out", str(tmp_path / "o"), "--quiet"])
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "1 error(s)" in lines[0] and "simulated kernel bug" in lines[0] and "model.json" in lines[0]


def test_a_full_disk_in_the_final_write_names_the_file(tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    import torch

    from streamscope.synthetic import save_tensors

    path = save_tensors(tmp_path / "m.safetensors", {"a": torch.ones(3, 3)})
    write_text = Path.write_text

    def full(self, *a, **kw):
        if self.name == ".model.json.tmp":
            raise OSError(errno.ENOSPC, "No space left on device")  # as a write() raises it: no file name
        return write_text(self, *a, **kw)

    monkeypatch.setattr(Path, "write_text", full)
    out = tmp_path / "o"
    result = runner.invoke(app, ["scan", str(path), "--out", str(out), "--quiet"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{out / 'model.json'}: cannot write it: No space left on device" in result.output and "the disk is full" in result.output
    assert (out / ".partial" / "records.jsonl").exists() and not (out / ".model.json.tmp").exists()

    def full_zarr(root):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", write_text)
    import streamscope.results as results

    replace = results.replace_groups
    monkeypatch.setattr(results, "replace_groups", lambda out, tag, owned, fill, **kw: replace(out, tag, owned, full_zarr, **kw))
    with pytest.raises(OSError, match="No space left on device") as e:
        streamscope.scan(path, out=out)
    assert e.value.filename == str(out / "arrays.zarr") and e.value.errno == errno.ENOSPC
