"""Options are declared once: the command line, the API's defaults and the resume fingerprint come from the
declarations (``optionspec``), so a flag, a keyword default and the value a run uses cannot drift apart."""

from __future__ import annotations

import inspect
import json

import pytest
import torch
from typer.testing import CliRunner

import streamscope
from streamscope.analyses import REGISTRY
from streamscope.analyses.clusters import ClusterOptions
from streamscope.cli import app
from streamscope.engine.options import ENGINE, EngineOptions, ScanOptions
from streamscope.optionspec import specs
from streamscope.synthetic import save_tensors

runner = CliRunner()
WIDE = {"COLUMNS": "240", "TERMINAL_WIDTH": "240"}


def _help(*command: str) -> str:
    result = runner.invoke(app, [*command, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("spec", REGISTRY.option_specs(), ids=lambda s: s.name)
def test_every_analysis_option_is_a_scan_flag_with_its_declared_default(spec):
    text = _help("scan")
    line = next((ln for ln in text.splitlines() if f" {spec.flag} " in ln), None)
    assert line is not None, f"{spec.flag} missing from scan --help"
    assert spec.help.split()[0] in text
    if spec.shown is None:  # a list of values is shown spaced, so that it wraps at 80 columns
        shown = ", ".join(map(str, spec.default)) if spec.kind is tuple and spec.sep == "," else spec.text(spec.default)
        assert f"[default: {shown}" in " ".join(text.split()).replace("[default: (", "[default: ")


def test_engine_and_clustering_defaults_are_the_declared_ones():
    for name, parameter in inspect.signature(streamscope.scan).parameters.items():
        if name in {s.name for s in specs(EngineOptions)}:
            assert parameter.default == getattr(ENGINE, name), name
    for fn in (streamscope.embeddings, streamscope.scan):
        sig = inspect.signature(fn).parameters
        assert sig["memory_budget"].default == ENGINE.memory_budget and sig["device"].default == ENGINE.device
    for command, names in (("scan", ("memory_budget", "device", "reader", "select", "scheduler", "workers")),
                           ("embeddings", ("memory_budget", "device")), ("compare", ("memory_budget", "device", "select")),
                           ("bench", ("memory_budget", "device"))):  # fmt: skip
        text = _help(command)
        for name in names:
            assert "--" + name.replace("_", "-") in text, (command, name)
    text = _help("embeddings")
    for spec in specs(ClusterOptions):
        assert spec.flag in text, spec.flag
    assert "2:32" in text and "euclidean" in text


def test_block_elems_is_no_api_option(tmp_path):
    path = save_tensors(tmp_path / "m.safetensors", {"w": torch.ones(4, 4)})
    with pytest.raises(streamscope.OptionError, match="block_elems"):
        streamscope.scan(path, out=tmp_path / "o", block_elems=64)


def test_generated_flags_reach_the_analyses_and_the_fingerprint(tmp_path):
    torch.manual_seed(0)
    w = torch.randn(40, 24)
    path = save_tensors(tmp_path / "m.safetensors", {"w": w})
    out = tmp_path / "o"
    args = ["scan", str(path), "--out", str(out), "-q", "--spectral", "exact", "--rank", "3", "--histogram-bins", "16"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "tensors.json").read_text())["w"]
    expected = torch.linalg.svdvals(w.double())[:3]
    assert record["spectral"]["top_singular_values"] == pytest.approx(expected.tolist(), rel=1e-5)
    model = json.loads((out / "model.json").read_text())
    assert model["options"]["histogram_bins"] == 16 and model["options"]["rank"] == 3
    assert "spectral" in model["options"]["analyses"]  # --spectral METHOD adds the analysis
    built = ScanOptions.build(["spectral"], spectral="exact", rank=3, histogram_bins=16).fingerprint()
    assert built != ScanOptions.build(["spectral"], spectral="exact", rank=3).fingerprint()


def test_bool_flags_and_words(tmp_path):
    path = save_tensors(tmp_path / "m.safetensors", {"w": torch.ones(4, 4)})
    out = tmp_path / "o"
    result = runner.invoke(app, ["scan", str(path), "--out", str(out), "-q", "--no-native", "--no-resume"])
    assert result.exit_code == 0, result.output
    bad = runner.invoke(app, ["scan", str(path), "--out", str(out), "-q", "--option", "histogram_bins=many"])
    assert bad.exit_code != 0 and "histogram_bins takes a whole number" in bad.output


def test_no_command_declares_a_flag_twice():
    import click
    import typer.main

    group = typer.main.get_command(app)
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        flags = [f for p in command.get_params(ctx) for f in (*p.opts, *p.secondary_opts)]
        assert len(flags) == len(set(flags)), (name, sorted(f for f in flags if flags.count(f) > 1))
        assert "--debug" in flags and "--help" in flags, name


def test_a_registered_analysis_option_becomes_a_scan_flag(tmp_path):
    """The recipe's promise: an analysis registered before the command line is built (as every line of
    ``analyses/__init__.py`` is) gets its ``--flag``, its help and its default with no line in ``cli/``."""
    import subprocess
    import sys
    from pathlib import Path

    path = save_tensors(tmp_path / "m.safetensors", {"w": torch.tensor([[1.0, -4.0], [2.5, 0.5]])})
    script = (
        "import sys, json; sys.path.insert(0, sys.argv[1]); import toy_analysis\n"
        "from typer.testing import CliRunner; from streamscope.cli import app\n"
        "r = CliRunner(); h = r.invoke(app, ['scan', '--help'], env={'COLUMNS': '200'})\n"
        "s = r.invoke(app, ['scan', sys.argv[2], '--out', sys.argv[3], '-q', '--analyses', 'basic,toy', '--toy-scale', '3'])\n"
        "print(json.dumps([h.output, s.exit_code, s.output]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(Path(__file__).parent), str(path), str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    help_text, code, output = json.loads(done.stdout.splitlines()[-1])
    assert "--toy-scale" in help_text and "What the largest value is multiplied by." in help_text and "2.0" in help_text
    assert code == 0, output
    assert json.loads((tmp_path / "o" / "tensors.json").read_text())["w"]["toy"] == {"scaled_max": 7.5}


def test_clustering_options_out_of_range_are_one_line(tmp_path):
    path = save_tensors(tmp_path / "m.safetensors", {"model.embed_tokens.weight": torch.randn(64, 8)})
    for flag, value, said in (("--silhouette-rows", "0", "--silhouette-rows must be at least 2"),
                              ("--max-iter", "0", "--max-iter must be at least 1"), ("--tol", "-1", "--tol must be 0 or more")):  # fmt: skip
        result = runner.invoke(app, ["embeddings", str(path), "--out", str(tmp_path / "o"), "-q", flag, value])
        assert result.exit_code == 1 and said in result.output, result.output
