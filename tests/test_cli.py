"""The command line, through typer's CliRunner."""

from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from streamscope.cli import app
from streamscope.synthetic import save_tensors

runner = CliRunner()


def test_scan_prints_summary_and_writes_files(llama_dir, tmp_path):
    out = tmp_path / "res"
    result = runner.invoke(app, ["scan", str(llama_dir), "--out", str(out), "--memory-budget", "64MB", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "Largest tensors" in result.output and "Embedding row L2 norms" in result.output
    assert "Norm layers" in result.output
    for f in ("tensors.json", "tensors.csv", "tensors.parquet", "model.json", "arrays.zarr"):
        assert (out / f).exists(), f


def test_scan_json_and_select(llama_dir, tmp_path):
    result = runner.invoke(app, ["scan", str(llama_dir), "-o", str(tmp_path / "r"), "--select", "norm", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["model"]["checkpoint"]["num_scanned"] == 7  # 3 layers x 2 norms + final norm


def test_demo(tmp_path):
    result = runner.invoke(app, ["scan", "--demo", "--out", str(tmp_path / "demo"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "demo" / "model.json").read_text())["checkpoint"]["num_tensors"] == 104


def test_errors_are_one_red_line(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{oops")
    result = runner.invoke(app, ["scan", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "error:" in result.output and str(bad) in result.output.replace("\n", "")
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["scan", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "no such file or directory" in result.output
    good = save_tensors(tmp_path / "g.safetensors", {"w": torch.ones(2, 2)})
    result = runner.invoke(app, ["scan", str(good), "--memory-budget", "tiny"])
    assert result.exit_code == 1 and "--memory-budget 'tiny' is not a size" in result.output
    result = runner.invoke(app, ["scan"])
    assert result.exit_code == 1 and "give a checkpoint PATH" in result.output


def test_help_has_an_example():
    result = runner.invoke(app, ["scan", "--help"])
    assert result.exit_code == 0 and "Example" in result.output and "--memory-budget" in result.output


def test_batch_scan_writes_a_summary(llama_dir, qwen2_dir, tmp_path):
    import pandas as pd

    out = tmp_path / "batch"
    result = runner.invoke(app, ["scan", str(llama_dir), str(qwen2_dir), str(tmp_path / "absent"), "--out", str(out), "--analyses", "all"])
    assert result.exit_code == 1  # one of three failed, and said so; the other two are kept
    assert "no such file or directory" in result.output and "2 models" in result.output
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["model"]) == [llama_dir.name, qwen2_dir.name]
    assert (summary["parameters"] > 0).all() and summary["lowest INT8 SQNR (dB)"].notna().all()
    assert (out / llama_dir.name / "tensors.json").is_file() and (out / qwen2_dir.name / "model.json").is_file()


def test_hub_cache_path_carries_provenance(llama_dir, tmp_path):
    import shutil

    snapshot = tmp_path / "hub" / "models--org--tiny" / "snapshots" / ("a" * 40)
    shutil.copytree(llama_dir, snapshot)
    import streamscope

    r = streamscope.scan(snapshot, out=tmp_path / "o", select="norm")
    assert r.model["provenance"]["model_id"] == "org/tiny" and r.model["provenance"]["revision"] == "a" * 40
    assert {"model_id", "revision", "created_at"} <= set(r.table.columns)


def test_option_words_for_a_bool_are_read_as_words():
    import pytest

    from streamscope.optionspec import Spec

    def _typed(text, kind):
        return Spec("x", None, kind, "", None, None, None, ",", False).parse(text)

    assert _typed("false", bool) is False and _typed("On", bool) is True and _typed("3", int) == 3
    with pytest.raises(ValueError):
        _typed("maybe", bool)
