"""The terminal table of ``streamscope activations``, rendered from real runs on tiny models at 80 columns (a
redirected log's width): short names, whole numbers, each value once, what was read in words."""

from __future__ import annotations

import io
import math
import re

import pytest
from rich.console import Console

from streamscope.report.activation_table import LAYOUTS, activation_rows, module_label, number, print_activations
from tests import tiny_models

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

SMALL = {"data.num_samples": 2, "data.seq_len": 12}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``family -> activations record`` of a real run: llama (untied head), gemma (head tied to the embeddings)."""
    import streamscope

    root = tmp_path_factory.mktemp("act-table")
    cache = {}

    def run(family: str) -> dict:
        if family not in cache:
            d = tiny_models.build(family, root / family)
            cache[family] = streamscope.activations(d, out=root / f"{family}-out", overrides=SMALL, echo=lambda s: None)
        return cache[family]

    return run


def render(record: dict, width: int = 80, **kw) -> str:
    console = Console(width=width, file=io.StringIO(), record=True)
    print_activations(record, console, **kw)
    return console.export_text()


def table_rows(text: str) -> list[tuple[str, str, list[str]]]:
    """``(module, dir, number cells)`` of the table: the lines between its header rule and its caption."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if set(line.strip()) == {"─"})
    end = next(i for i, line in enumerate(lines) if line.startswith("statistics of"))
    return [(p[0], p[1], p[2:]) for p in (line.split() for line in lines[start + 1 : end])]


def test_table_at_80_columns_reads_whole(runs):
    record = runs("llama")
    text = render(record, top=100)
    assert max(map(len, text.splitlines())) <= 80, text
    assert "…" not in text, text  # neither a number nor a name is cut
    header = next(line for line in text.splitlines() if line.startswith("module"))
    assert header.split() == ["module", "dir", "top-1", "top-2", "top-3", "median", "min", "mean"]  # all fit at 80
    rows = table_rows(text)
    assert rows and all(re.fullmatch(r"L[01](\.[a-z_]+)*", m) for m, _, _ in rows), rows
    stats = {(module_label(n), "in" if d == "input" else "out"): r for n, dirs in record["modules"].items() for d, r in dirs.items()}
    for module, direction, cells in rows:
        r = stats[(module, direction)]
        for cell, key in zip(cells, ("top1", "top2", "top3", "median", "min", "mean_abs")):
            assert float(cell) == pytest.approx(r[key], rel=5e-3), (module, direction, key)  # 3 or 4 significant digits
    tops = [float(cells[0]) for _, _, cells in rows]
    assert tops == sorted(tops, reverse=True) and "largest top-1 |x| first" in text


def test_each_value_once(runs):
    """A decoder layer's input is the previous layer's output: that value is one row, ``L0 out``."""
    record = runs("llama")
    assert record["modules"]["model.layers.1"]["input"] == record["modules"]["model.layers.0"]["output"]  # what makes rows repeat
    rows = table_rows(render(record, top=100))
    keys = [(m, d) for m, d, _ in rows]
    values = [tuple(cells) for _, _, cells in rows]
    assert len(set(keys)) == len(keys) and len(set(values)) == len(values), rows
    assert ("L0", "out") in keys and ("L1", "in") not in keys and ("L0", "in") in keys and ("L1", "out") in keys
    shown, left_out = activation_rows(record)
    assert len(shown) + len(left_out) == sum(len(d) for d in record["modules"].values())
    assert [(a, b, c, d) for a, b, c, d in left_out] == [("model.layers.1", "input", "model.layers.0", "output")]
    assert "not repeated: L1 in = L0 out" in render(record)


def test_what_was_read_in_words(runs):
    untied, tied = runs("llama")["run"], runs("gemma")["run"]
    assert untied["bytes_read"] == untied["checkpoint_bytes"]
    text = " ".join(render(runs("llama")).split())  # lines joined where the console wrapped them
    assert re.search(r"read the \d+\.\d KiB checkpoint once", text), text
    assert tied["bytes_read"] > tied["checkpoint_bytes"]  # the tied head reads the embedding table again
    text = " ".join(render(runs("gemma")).split())
    extra = (tied["bytes_read"] - tied["checkpoint_bytes"]) / 1024
    assert f"read {tied['bytes_read'] / 1024:.1f} KiB from a {tied['checkpoint_bytes'] / 1024:.1f} KiB checkpoint" in text, text
    assert f"every weight once and the embeddings ({extra:.1f} KiB) a second time, for the head tied to them" in text, text
    less = {**runs("llama"), "run": {**untied, "bytes_read": untied["checkpoint_bytes"] // 2}}
    assert "of a 104.6 KiB checkpoint: only the weights the forward pass uses" in " ".join(render(less).split())


@pytest.mark.parametrize("width", [60, 66, 100, 160])
def test_narrower_consoles_get_fewer_columns_never_cut_numbers(runs, width):
    text = render(runs("gemma"), width=width)
    assert max(map(len, text.splitlines())) <= width
    for module, _, cells in table_rows(text):
        assert all(math.isfinite(float(c)) for c in cells), (module, cells)  # "2.436e…" would not parse
    header = next(line for line in text.splitlines() if line.startswith("module")).split()
    assert len(header) - 2 == (len(LAYOUTS[-1][0]) if width < 77 else 6)


def test_number_is_compact_and_whole():
    for digits in (3, 4):
        for exp in range(-12, 9):
            for mantissa in (1.0, 2.43567, 9.9996):
                v = mantissa * 10.0**exp
                s = number(v, digits)
                assert len(s) <= digits + 4 + (exp <= -10), s
                assert float(s) == pytest.approx(v, rel=10 ** (1 - digits)), (v, s)
    assert number(0.0) == "0" and number(float("nan")) == "-" and number(None) == "-" and number(float("inf")) == "inf"
    assert number(2.436e-5, 4) == "2.436e-5" and number(12345.6, 3) == "12346" and number(0.06240, 4) == "0.06240" and number(3.0016, 3) == "3.00" and number(425.0, 3) == "425"


def test_short_names_as_the_figures_use():
    assert module_label("model.layers.3.mlp.down_proj") == "L3.mlp.down_proj"
    assert module_label("model.layers.12.self_attn.q_proj") == "L12.attn.q_proj"
    assert module_label("model.layers.3") == "L3" and module_label("transformer.h.7") == "h7"
    assert module_label("model.layers.2.mlp.experts.5.down_proj") == "L2.experts.5.down_proj"
    assert module_label("lm_head") == "lm_head"


def test_cli_table_at_80_columns(runs, tmp_path):
    from typer.testing import CliRunner

    from streamscope.cli import app

    d = tiny_models.build("llama", tmp_path / "llama")
    args = ["activations", str(d), "--out", str(tmp_path / "o"), "--data.num_samples", "2", "--data.seq_len", "12"]
    r = CliRunner().invoke(app, args, env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    assert max(map(len, r.output.splitlines())) <= 80 and "…" not in r.output, r.output
    assert "largest top-1 |x| first" in r.output and "L0.attn.q_proj" in r.output and "read the" in r.output
    assert "model.layers.0.self_attn.q_proj" not in r.output  # the module list only with --verbose
    r = CliRunner().invoke(app, [*args, "-v"], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    assert "First 20 module names" in r.output and "model.layers.0.self_attn.q_proj" in r.output


def test_cli_help_has_an_example_and_the_defaults():
    from typer.testing import CliRunner

    from streamscope.activation.config import DEFAULTS
    from streamscope.cli import app

    r = CliRunner().invoke(app, ["activations", "--help"], env={"COLUMNS": "100"})
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "Example: streamscope activations" in text and "--verbose" in text
    assert f"--data.num_samples {DEFAULTS['data']['num_samples']}" in text and f"--data.seq_len {DEFAULTS['data']['seq_len']}" in text
    assert f"--outlier.threshold {DEFAULTS['visualization']['outlier']['threshold']}" in text
    assert "[mlp\\.down_proj, mlp\\.up_proj" in text  # the list survives rich markup
    assert "[default: (auto)]" in text and "[default: (results/NAME-activations)]" in text
