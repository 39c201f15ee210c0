"""Results and names that could break the report or the terminal: math text in figure labels, HTML injection
from an edited results directory, rich markup and control characters in tensor names; and the grade of an
all-zero matrix."""

from __future__ import annotations

import json

import pytest
import torch

import streamscope
from streamscope.synthetic import save_tensors


@pytest.mark.parametrize("spectral", ["auto", "off"])
def test_an_all_zero_matrix_is_critical_whatever_the_spectrum(tmp_path, spectral):
    g = torch.Generator().manual_seed(0)
    path = save_tensors(tmp_path / "m.safetensors", {"zero.weight": torch.zeros(32, 16), "live.weight": torch.randn(32, 16, generator=g) * 0.02,
                                                     "zero.bias": torch.zeros(32)})  # fmt: skip
    streamscope.scan(path, out=tmp_path / "out", analyses="all", spectral=spectral)
    tensors = json.loads((tmp_path / "out" / "tensors.json").read_text())
    health = tensors["zero.weight"]["health"]
    assert health["grade"] == "Critical" and health["levels"] == {"all_zero": 3}
    assert health["reasons"] == ["all values are zero: the matrix carries no information"]
    assert tensors["live.weight"]["health"]["grade"] != "Critical"
    assert not tensors["zero.bias"].get("health")  # a zero bias vector is ordinary, not graded
    model = json.loads((tmp_path / "out" / "model.json").read_text())
    assert model["health"]["riskiest"][0]["name"] == "zero.weight"


def _dollar_checkpoint(directory):
    """Tensor names holding ``$`` and a byte-level vocabulary whose largest-norm rows are SmolLM2's ``$$`` tokens."""
    directory.mkdir()
    g = torch.Generator().manual_seed(0)
    embed = torch.randn(64, 16, generator=g) * 0.02
    embed[[5, 6]] *= 40  # '$$' and 'Ġ$$': the largest norms
    embed[7] *= 0.01  # '$': the smallest
    tensors = {"model.embed_tokens.weight": embed, "model.norm$.weight": torch.ones(16)}
    for name in ("self_attn.q_proj$$", "self_attn.o_$proj", "mlp.down_proj$\\frac{"):
        tensors[f"model.layers.0.{name}.weight"] = torch.randn(16, 16, generator=g) * 0.02
    tensors["model.layers.0.mlp.down_proj$\\frac{.weight"][0, 0] = 5.0  # the riskiest: a detail figure of its own
    save_tensors(directory / "model.safetensors", tensors)
    vocab = {f"t{i}": i for i in range(64)}
    vocab = {("$$" if i == 5 else "Ġ$$" if i == 6 else "$" if i == 7 else t): i for t, i in vocab.items()}
    (directory / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    return directory


def test_dollar_signs_in_names_and_tokens_are_drawn_as_text(tmp_path):
    from typer.testing import CliRunner

    from streamscope.cli import app

    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["scan", str(_dollar_checkpoint(tmp_path / "ck")), "--out", str(out), "--analyses", "all",
                                      "--report", "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    model = json.loads((out / "model.json").read_text())
    assert [r["token"] for r in model["embedding"]["model.embed_tokens.weight"]["largest"][:2]] in (["$$", " $$"], [" $$", "$$"])
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "q_proj$$" in page and "&#x27;$$&#x27;" in page
    figures = {p.name for p in (out / "figures").rglob("*.png")}
    assert {"embedding_norms.png", "condition_heatmap.png", "health_dashboard.png"} <= figures
    assert "model.layers.0.mlp.down_proj__frac_.weight_distribution.png" in figures  # the detail figures, titled with the name


def test_a_figure_drawn_outside_the_report_is_saved_as_plain_text(tmp_path):
    from streamscope import plotstyle as style

    fig = style.figure(4, 2)  # drawn outside ``render``, as an API user would
    ax = fig.add_subplot()
    ax.set_title("q_proj$$ $\\frac{")
    ax.set_xticks([0, 1], ["$$", "Ġ$$"])
    ax.annotate("$", (0.5, 0.5))
    style.save(fig, tmp_path / "f.png")  # raised ValueError (math text) before
    assert ax.title.get_text() == "q_proj$$ $\\frac{" and not ax.title.get_parse_math()


#: A tensor name that rich would read as markup (a closing tag, a hyperlink) and a terminal as commands
#: (clear the screen, set the window title).
EVIL = "model.layers.0.mlp.[/bold]\x1b[2J\x1b]0;pwned\x07[link=https://evil.example]x[/link].weight"


def _recording_console():
    import io

    from rich.console import Console

    return Console(file=io.StringIO(), record=True, width=300, force_terminal=True, color_system="truecolor")


def _assert_printed_as_text(console):
    raw = console.file.getvalue()
    assert "\x1b[2J" not in raw and "\x1b]0;" not in raw and "\x1b]8;" not in raw and "\x07" not in raw  # no clear, title, link
    text = console.export_text()
    assert "mlp.[/bold]\\x1b[2J\\x1b]0;pwned\\x07[link=https://evil.example]x[/link].weight" in text
    return text


def test_scan_summary_prints_names_and_tokens_as_text(tmp_path):
    from streamscope.report.terminal import print_scan_summary

    ck = tmp_path / "ck"
    ck.mkdir()
    g = torch.Generator().manual_seed(0)
    embed = torch.randn(32, 8, generator=g) * 0.02
    embed[3] *= 50
    save_tensors(ck / "model.safetensors", {EVIL: torch.randn(64, 64, generator=g), "model.embed_tokens.weight": embed})
    vocab = {f"t{i}": i for i in range(32)}
    (ck / "vocab.json").write_text(json.dumps({("[/bold][link=x]" if i == 3 else t): i for t, i in vocab.items()}), encoding="utf-8")
    result = streamscope.scan(ck, out=tmp_path / "out", analyses="all")
    model = {**result.model, "skipped": [{"name": EVIL, "reason": "[/red]"}], "errors": [f"{EVIL}: failed"]}
    console = _recording_console()
    print_scan_summary(result.table, model, console)  # raised rich's MarkupError before
    text = _assert_printed_as_text(console)
    assert "'[/bold][link=x]'" in text and "skipped: model.layers.0" in text and "[/red]" in text


def test_activation_table_prints_module_names_as_text():
    from streamscope.report.activation_table import print_activations

    module = EVIL.removesuffix(".weight")
    stats = {"top1": 9.0, "top2": 8.0, "top3": 7.0, "median": 1.0, "min": 0.0, "mean_abs": 1.0}
    record = {"run": {"architecture": "[/bold]\x1b]0;t\x07", "num_samples": 2, "seq_len": 8, "source": "[link=x]", "dtype": "float32",
                      "device": "cpu", "decoder_layers": "model.layers", "bytes_read": 10, "checkpoint_bytes": 10, "seconds": 1.0,
                      "files": {"imatrix.gguf": "[/] skipped"}},
              "modules": {module: {"output": stats}}, "outliers": {"layers": {}, "pattern": "[/bold]"}}  # fmt: skip
    console = _recording_console()
    print_activations(record, console, out="out")
    raw, text = console.file.getvalue(), console.export_text()
    assert "\x1b]0;" not in raw and "\x1b]8;" not in raw and "\x07" not in raw
    assert "[/bold]\\x1b]0;t\\x07" in text and "[link=x] data" in text and "[/] skipped" in text
    assert "mlp.[/bold]\\x1b[2J" in text  # the module's short label, printed as written


def test_progress_label_is_text():
    from streamscope.progress import ScanProgress

    console = _recording_console()
    with ScanProgress(10, 1, console=console, label="[/bold]\x1b[2Jmodel") as bar:
        bar.advance(10)
        bar.tensor_done()
    assert "\x1b[2J" not in console.file.getvalue() and "[/bold]\\x1b[2Jmodel 1/1 tensors" in console.export_text()


def test_plain_shows_control_characters_and_escapes_markup():
    from rich.console import Console

    from streamscope.report.labels import plain

    assert plain("a\x1b[2Jb\x07\n\t\x9b\u202e") == "a\\x1b[2Jb\\x07\\n\\t\\x9b\\u202e"
    console = Console(record=True, width=200)
    ending = plain("a trailing backslash: \\")
    console.print(plain("[/bold][link=https://e]x[/link]"), f"[bold]{ending}[/]")
    assert console.export_text() == "[/bold][link=https://e]x[/link] a trailing backslash: \\\n"


@pytest.fixture(scope="module")
def small_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    g = torch.Generator().manual_seed(0)
    path = save_tensors(root / "m.safetensors", {"model.embed_tokens.weight": torch.randn(32, 8, generator=g),
                                                 "model.layers.0.mlp.up_proj.weight": torch.randn(16, 8, generator=g)})  # fmt: skip
    streamscope.scan(path, out=root / "out", analyses="basic,quantization", spectral="off")
    return root / "out"


def _edited(src, dst, file, edit):
    import shutil

    shutil.copytree(src, dst)
    data = json.loads((dst / file).read_text())
    edit(data)
    (dst / file).write_text(json.dumps(data))
    return dst


INJECT = '<img src=x onerror="alert(1)"><script>alert(2)</script>'


@pytest.mark.parametrize("file, key, edit", [
    ("model.json", "schema_version", lambda m: m.update(schema_version=INJECT)),
    ("model.json", 'embedding["model.embed_tokens.weight"].embedding_dim',
     lambda m: m["embedding"]["model.embed_tokens.weight"].update(embedding_dim=INJECT)),
    ("model.json", 'embedding["model.embed_tokens.weight"].vocab_size', lambda m: m["embedding"]["model.embed_tokens.weight"].update(vocab_size="32")),
    ("model.json", "checkpoint.total_params", lambda m: m["checkpoint"].update(total_params="1,000")),
    ("model.json", "health.riskiest[0].reasons", lambda m: m["health"]["riskiest"][0].update(reasons=INJECT)),
    ("tensors.json", '["model.layers.0.mlp.up_proj.weight"].info.shape[1]', lambda t: t["model.layers.0.mlp.up_proj.weight"]["info"].update(shape=[16, "8"])),
])  # fmt: skip
def test_a_value_of_the_wrong_type_is_one_error_naming_file_and_key(small_results, tmp_path, file, key, edit):
    from typer.testing import CliRunner

    from streamscope.cli import app

    out = _edited(small_results, tmp_path / "edited", file, edit)
    result = CliRunner().invoke(app, ["report", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert f"{file}: {key} must be" in " ".join(result.output.split()), result.output
    assert not (out / "report.html").exists()


def test_every_value_in_the_page_is_escaped(small_results, tmp_path):
    """Values of the right type that hold markup (names, tokens, options, errors) are text on the page."""
    from streamscope.report.figures import render
    from streamscope.report.html import write_report
    from streamscope.results_dir import Results

    def edit(m):
        emb = m["embedding"].pop("model.embed_tokens.weight")
        emb["largest"][0]["token"] = INJECT
        m["embedding"][INJECT] = emb
        m["model_path"] = INJECT
        m["options"]["select"] = INJECT
        m["errors"] = [INJECT]
        m["health"]["riskiest"][0]["name"] = INJECT

    out = _edited(small_results, tmp_path / "edited", "model.json", edit)
    results = Results.open(out)
    results.model["schema_version"] = INJECT  # past the check on read, as an API caller could: the page escapes it anyway
    results.model["embedding"][INJECT]["embedding_dim"] = INJECT
    page = write_report(results, out / "figures", render(results, out / "figures", details=0), out / "report.html").read_text()
    assert "<script>alert" not in page and "<img src=x" not in page and 'onerror="' not in page
    assert page.count("&lt;script&gt;alert(2)&lt;/script&gt;") >= 7
    assert page.count("<script>") == 1  # the page's own sorting script
