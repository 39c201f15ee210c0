"""What a person reads in the terminal: tables at 80 and 160 columns keep every name recognisable and every number
whole, comparisons and parameter counts collapse what repeats, a batch says what it did not compute, bench prints
its figures once. Printed numbers are read back and checked against the stored results or numpy."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

import streamscope
from streamscope.cli import app
from streamscope.report.labels import short_label

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def _console(width: int) -> Console:
    return Console(width=width, record=True, file=io.StringIO())


def _row(text: str, label: str) -> str:
    """The printed table row that starts with ``label``."""
    line = next((l for l in text.splitlines() if l.startswith(label + " ")), None)
    assert line is not None, f"no row for {label!r} in:\n{text}"
    return line


def _numbers(line: str) -> list[float]:
    return [float(x) for x in re.findall(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?:e-?\d+)?(?![\w.])", line.replace(",", ""))]


@pytest.fixture(scope="module")
def minilm_scan(minilm_dir, tmp_path_factory):
    return streamscope.scan(minilm_dir, out=tmp_path_factory.mktemp("mini"), analyses="all", device="cpu")


@pytest.mark.parametrize("width", [80, 160])
def test_scan_tables_keep_names_and_numbers_whole(minilm_scan, width):
    from streamscope.report.terminal import print_scan_summary

    console = _console(width)
    print_scan_summary(minilm_scan.table, minilm_scan.model, console)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= width
    tables = text.split("Largest tensors", 1)[1]
    assert "…" not in tables  # neither a name nor a number is cut
    largest = minilm_scan.table.sort_values("info.numel", ascending=False).head(10)
    for _, r in largest.iterrows():
        name = r["tensor"] if width == 160 else short_label(r["tensor"])
        shown = _numbers(_row(tables.split("Most extreme")[0], name)[len(name):])
        stats = minilm_scan.tensors[r["tensor"]]["basic_stats"]
        for key in ("std", "abs_max"):  # kept at 80 columns; checked against the stored value to the 3 digits shown
            assert any(v == pytest.approx(stats[key], rel=6e-3, abs=1e-12) for v in shown), (name, key, shown, stats[key])
    for risky in minilm_scan.model["health"]["riskiest"]:
        label = risky["name"] if width == 160 else short_label(risky["name"])
        assert _row(text.split("Health:", 1)[1], label)
    for norm in minilm_scan.model["norm_layers"]["embedding_related"]:
        assert _row(text.split("Norm layers", 1)[1], norm["name"] if width == 160 else short_label(norm["name"]))


def test_fitted_table_drops_columns_before_it_cuts_a_value():
    from streamscope.report.terminal import Column, fitted_table

    columns = [Column("tensor", "left", wrap=True), Column("a"), Column("b", keep=2), Column("c", keep=1)]
    rows = [["L12.attn.q_proj", "-1.2345e-6", "134,515,008", "0.000123456"]]
    for width, present in ((80, "abc"), (45, "ab"), (32, "a")):
        console = _console(width)
        console.print(fitted_table("t", columns, rows, width))
        text = console.export_text()
        assert "L12.attn.q_proj" in text and "…" not in text
        for col, value in zip("abc", rows[0][1:]):
            assert (value in text) == (col in present), (width, col, text)


def test_short_labels_of_gguf_names_keep_the_layer():
    from streamscope.report.labels import table_labels

    assert short_label("blk.3.attn_q.weight") == "L3.attn_q"
    names = ["a.layers.0.mlp.w", "b.layers.0.mlp.w", "model.layers.1.mlp.w"]
    assert table_labels(names) == ["a.layers.0.mlp.w", "b.layers.0.mlp.w", "L1.mlp.w"]  # equal labels keep their names


def test_cli_scan_at_80_columns_in_a_pipe(llama_dir, tmp_path):
    env = {**os.environ, "COLUMNS": "80", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "streamscope", "scan", str(llama_dir), "--out", str(tmp_path / "o"), "-a", "all",
                           "--device", "cpu"], capture_output=True, text=True, env=env, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    tables = proc.stdout.split("Largest tensors", 1)[1]
    assert "…" not in tables and max(map(len, proc.stdout.splitlines())) <= 80
    assert "L0.mlp.down_proj" in tables and "model.embed_tokens" in tables and "model.layers." not in tables


# -- compare --------------------------------------------------------------------------------------------------------


def _perturbed(src: Path, dst: Path, pattern: str, scale: float = 1e-3) -> dict[str, np.ndarray]:
    """A copy of ``src`` with the tensors matching ``pattern`` perturbed; returns their float64 before/after."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    g = torch.Generator().manual_seed(1)
    changed = {}
    for f in dst.glob("*.safetensors"):
        d = load_file(f)
        for k, v in d.items():
            if re.search(pattern, k):
                new = (v.float() + scale * torch.randn(v.shape, generator=g)).to(v.dtype)
                changed[k] = (v.double().numpy(), new.double().numpy())
                d[k] = new
        save_file(d, f, metadata={"format": "pt"})
    return changed


def test_compare_weights_says_it_in_few_lines(llama_dir, tmp_path):
    changed = _perturbed(llama_dir, tmp_path / "after", r"layers\.1\.")
    result = runner.invoke(app, ["compare", str(llama_dir), str(tmp_path / "after"), "--weights", "--device", "cpu", "--out", str(tmp_path / "c.json")])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "structure identical: 3 layers, 198.1K parameters (198,080)" in text
    assert "Per layer" not in text and "total:" not in text and len(text.splitlines()) < 30
    sqnr = {k: 10 * np.log10((a**2).sum() / ((b - a) ** 2).sum()) for k, (a, b) in changed.items()}
    worst = min(sqnr, key=sqnr.get)
    m = re.search(r"worst SQNR ([\d.]+) dB \(([^)]+)\)", text)  # on a line of its own
    assert m and float(m.group(1)) == pytest.approx(sqnr[worst], abs=0.06) and m.group(2) in (worst, short_label(worst))
    assert f"{len(changed)} changed" in text and "cos 1.0" not in text
    record = json.loads((tmp_path / "c.json").read_text())["weights"]
    for name, (a, b) in changed.items():
        cos = (a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum())
        assert record[name]["cosine_similarity"] <= 1.0
        assert record[name]["cosine_distance"] == pytest.approx(1 - cos, rel=2e-3)


def test_weight_delta_cosine_never_passes_one():
    from decimal import Decimal, getcontext

    from streamscope.analyses.compare import weight_delta

    a = torch.full((4, 256), 0.1)
    b = a.clone()
    b[0, 0] += 1e-6  # cos rounds to 1 (or past it) in float sums
    pairs = lambda report=False: iter([(0, 4, a, b)])  # noqa: E731
    d = weight_delta(pairs, (4, 256), k=2)
    getcontext().prec = 60  # exact sums of float32 products, then 1 - cos to many digits
    xs, ys = [Decimal(float(v)) for v in a.flatten()], [Decimal(float(v)) for v in b.flatten()]
    ab, aa, bb = sum(x * y for x, y in zip(xs, ys)), sum(x * x for x in xs), sum(y * y for y in ys)
    ref = float(1 - ab / (aa * bb).sqrt())
    assert d["cosine_similarity"] <= 1.0 and ref > 0
    assert d["cosine_distance"] == pytest.approx(ref, rel=1e-3)


def test_compare_of_unlike_models_says_nothing_matched(minilm_dir, llama_dir, tmp_path):
    result = runner.invoke(app, ["compare", str(minilm_dir), str(llama_dir), "--weights", "--device", "cpu"])
    assert result.exit_code == 1
    text = result.output
    assert "no weight was compared" in text and "identical" not in text and "reduced:" not in text
    before, after = streamscope.params(minilm_dir)["total_params"], streamscope.params(llama_dir)["total_params"]
    assert f"{before:,} → {after:,} ({(after - before) / before * 100:+.2f}%)" in text
    assert "(+" not in text  # every part shrank: one sign, the change relative to before


# -- params ---------------------------------------------------------------------------------------------------------


def test_params_verbose_collapses_identical_layers(tmp_path):
    from tests.conftest import build_causal_lm
    from safetensors import safe_open

    ckpt = build_causal_lm(tmp_path / "m", "llama", num_hidden_layers=6)
    result = runner.invoke(app, ["params", str(ckpt), "--verbose"])
    assert result.exit_code == 0, result.output
    per_layer = 0
    for f in ckpt.glob("*.safetensors"):
        with safe_open(f, "pt") as s:
            per_layer += sum(int(np.prod(s.get_slice(k).get_shape())) for k in s.keys() if ".layers.0." in k)
    assert f"Layers 0-5 (6, each): {per_layer:,}" in result.output
    assert result.output.count("Attention:") == 1 and "Other norms / other" not in result.output
    assert "Norms outside layers: 64" in result.output  # model.norm.weight, hidden size 64


def test_params_of_a_gguf_without_output_says_tied(tmp_path):
    gguf = pytest.importorskip("gguf")
    w = gguf.GGUFWriter(str(tmp_path / "t.gguf"), "llama")
    w.add_block_count(1)
    w.add_head_count(2)
    w.add_head_count_kv(2)
    w.add_embedding_length(32)
    for name, shape in (("token_embd.weight", (16, 32)), ("blk.0.attn_q.weight", (32, 32)), ("output_norm.weight", (32,))):
        w.add_tensor(name, np.zeros(shape, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    result = runner.invoke(app, ["params", str(tmp_path / "t.gguf")])
    assert result.exit_code == 0, result.output
    assert re.search(r"LM head: +0 +\(tied: no output.weight, llama.cpp reads token_embd\)", result.output)


# -- batch ----------------------------------------------------------------------------------------------------------


def test_batch_summary_says_not_computed(llama_dir, qwen2_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "multi"
    result = runner.invoke(app, ["scan", str(llama_dir), str(qwen2_dir), str(tmp_path / "empty"), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 1
    assert "1 of 3 models failed" in result.output and (out / llama_dir.name / "model.json").is_file()
    assert "not computed: health grades, condition numbers (κ), INT8 SQNR" in result.output
    assert "Excellent" not in result.output and "0/0/0/0" not in result.output


def test_batch_table_at_80_columns(llama_dir, tmp_path):
    from streamscope.report.batch import print_batch, summary_row

    r = streamscope.scan(llama_dir, out=tmp_path / "o", analyses="all", device="cpu")
    row = summary_row("a-model-with-a-long-name-like-SmolLM2-135M-Instruct", r)
    console = _console(80)
    print_batch([row, {**row, "model": "second"}], console)
    text = console.export_text()
    assert "…" not in text and "a-model-with-a-long-name-like-SmolLM2-135M-Instruct".replace("-", "")[:10] in text.replace("-", "").replace("\n", "")
    assert f"{r.model['checkpoint']['total_params']:,}" in text
    counts = r.model["health"]["counts"]
    assert "/".join(str(counts[g]) for g in ("Excellent", "Good", "Warning", "Critical")) in text


# -- bench ----------------------------------------------------------------------------------------------------------


def test_bench_builds_the_size_asked_and_prints_once(tmp_path):
    result = runner.invoke(app, ["bench", "--size", "64MB", "--layout", "llama-7b", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 1 and "below the smallest llama-7b checkpoint" in result.output
    result = runner.invoke(app, ["bench", "--size", "12MB", "--device", "cpu", "--analyses", "basic", "--no-naive", "--repeat", "2",
                                 "--cache-dir", str(tmp_path), "--out", str(tmp_path / "b.json")])  # fmt: skip
    assert result.exit_code == 0, result.output
    fig = json.loads((tmp_path / "b.json").read_text())
    assert fig["checkpoint"]["layout"] == "small" and fig["checkpoint"]["bytes"] <= 12 * 2**20 * 1.2
    assert result.output.count("median") == 1 + 1  # the run's plan line, and the table's header
    assert "[1/" in result.output and all(len(r["runs"]) == (2 if r["cache"] == "warm" else 1) for r in fig["rows"])


# -- help -----------------------------------------------------------------------------------------------------------


def _help(*command: str) -> str:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
    assert result.exit_code == 0, result.output
    return result.output


def _flat(text: str) -> str:
    """Help text with the panel borders and line breaks gone, so that a wrapped phrase reads whole."""
    return re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", text))


def test_help_shows_defaults_groups_and_readable_metavars():
    text = _help("scan")
    for panel in ("Input", "Analyses", "Memory, device and workers"):
        assert f"─ {panel} " in text
    flat = _flat(text)
    assert "[default: (results/NAME" in flat and "[default: (2)]" in flat and "[default: (auto when spectral runs" in flat
    for command in ((), ("scan",), ("params",), ("compare",), ("bench",), ("embeddings",), ("report",), ("download",), ("activations",)):
        text = _help(*command)
        assert not re.search(r"<(bool|str|list\[str\]|int|path)>", text), command


def test_analysis_names_in_errors_are_those_of_the_help(llama_dir):
    help_text = _help("scan")
    result = runner.invoke(app, ["scan", str(llama_dir), "--analyses", "basic,magic"])
    assert result.exit_code == 1
    names = re.search(r"choose from ([\w, ]+), or all", result.output).group(1).split(", ")
    assert names == ["basic", "sparsity", "quant", "spectral"]
    for n in names:
        assert re.search(rf"\b{n}\b( \(default\))?:", _flat(help_text)), n


def test_compare_with_its_gguf_matches_names(tmp_path):
    gguf = pytest.importorskip("gguf")
    from tests.conftest import build_causal_lm
    from tests.test_formats import to_gguf

    src = build_causal_lm(tmp_path / "hf", "llama", dtype=torch.float32, intermediate_size=192)  # rows of whole Q8_0 blocks
    to_gguf(src, tmp_path / "q8.gguf", gguf.GGMLQuantizationType.Q8_0)
    result = runner.invoke(app, ["compare", str(src), str(tmp_path / "q8.gguf")])
    assert result.exit_code == 0, result.output
    from streamscope.io.checkpoint import CheckpointIndex

    matrices = sum(1 for t in CheckpointIndex.from_path(src).tensors.values() if len(t.shape) == 2)  # to_gguf quantizes these
    assert "only in" not in result.output  # llama.cpp's names are matched to the Hugging Face ones
    assert "structure identical: 3 layers" in result.output and f"tensors with a new dtype: {matrices} (F32 → Q8_0: {matrices})" in result.output
