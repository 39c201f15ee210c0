"""The report's Sensitivity section, from `streamscope sensitivity` runs on a tiny hub llama and the real MiniLM:
figures, the numbers on the page (recomputed here from sensitivity.json with plain numpy), a directory with
only sensitivity.json, and one beside activation results."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from streamscope.cli import app

runner = CliRunner()
FIGURES = ("sensitivity_screening.png", "sensitivity_smoothquant.png", "sensitivity_divergence.png", "sensitivity_plan.png")


def small(samples: int = 4) -> list[str]:
    return ["--data.source", "random", "--data.num_samples", str(samples), "--data.seq_len", "16", "--quiet"]


def _invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def llama_run(hub_checkpoint, tmp_path_factory):
    """Sensitivity of the tiny llama with a target between the plan's extremes (some Linears kept, not all), then
    the report through the CLI."""
    out = tmp_path_factory.mktemp("sens_llama")
    _invoke("sensitivity", hub_checkpoint("llama"), *small(), "--target-kl", "1e-5", "--out", out)
    _invoke("report", out)
    return out, json.loads((out / "sensitivity.json").read_text())


def _average_ranks(x) -> np.ndarray:
    """Ranks 1..n, tied values sharing the mean of their ranks (as Spearman's coefficient wants)."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):
        tied = x == v
        ranks[tied] = ranks[tied].mean()
    return ranks


def _spearman(record: dict, scheme: str) -> tuple[float, int]:
    pairs = [(r[scheme]["weight_sqnr_db"], r[scheme]["sqnr_db"]) for r in record["local"].values()
             if r.get(scheme) and r[scheme]["weight_sqnr_db"] is not None and r[scheme]["sqnr_db"] is not None]  # fmt: skip
    w, o = (_average_ranks(c) for c in zip(*pairs))
    return float(np.corrcoef(w, o)[0, 1]), len(pairs)


def _text(page: str) -> str:
    """The page's visible text around the section, images left out, entities as a reader sees them."""
    import html

    return html.unescape(re.sub(r"<img[^>]*>", "", page))


def test_sensitivity_alone_makes_a_report_with_its_numbers(llama_run):
    out, record = llama_run
    assert not (out / "tensors.json").exists() and not (out / "activations.json").exists()
    for f in FIGURES:
        assert (out / "figures" / f).stat().st_size > 5000, f
    page = (out / "report.html").read_text(encoding="utf-8")
    text = _text(page)
    assert '<section id="sensitivity"><h2>Sensitivity</h2>' in page and '<a href="#sensitivity">' in page
    assert page.count("<img ") == len(FIGURES)
    for scheme in ("int8_channel", "int4_g128"):
        rho, n = _spearman(record, scheme)
        want = f"{scheme}: Spearman rank correlation of weight-only SQNR with measured output SQNR {rho:.3g} over {n} Linears"
        assert want in text
    assert "weight-only screening) misranks them" in text
    plan = record["plan"]
    assert 0 < len(plan["keep"]) < record["run"]["linears"]  # the target sits between keeping none and keeping all
    assert f"Plan: keep {len(plan['keep'])} Linears at int8_channel" in text
    assert f"{plan['bits_per_weight']:.2f} bits per weight" in text
    assert f"the target {plan['target_kl']:g}" in text
    kl = record["propagated"]["int4_g128"]["kl_mean"]
    assert f"int4_g128: KL {kl:.3g} nats" in text
    assert "<td class=name>n_layers</td><td class=text>2</td>" in page  # the run facts of the sensitivity run


def _results(out):
    from streamscope.report.sensitivity_data import open_results

    return open_results(out)


def test_figures_draw_what_the_file_holds(llama_run):
    """Each figure against the file: the titles carry the Spearman values, the bold line is the median over the
    smoothed Linears, the divergence lines are the stream's per-layer values, and the plan frames the kept."""
    from matplotlib.patches import Rectangle

    from streamscope.report.figures import (
        sensitivity_divergence, sensitivity_plan, sensitivity_screening, sensitivity_smoothquant,
    )  # fmt: skip

    out, record = llama_run
    results = _results(out)
    titles = [ax.get_title() for ax in sensitivity_screening.draw(results).axes]
    assert titles == [f"{s}: Spearman ρ = {_spearman(record, s)[0]:.3f}" for s in ("int8_channel", "int4_g128")]
    fig = sensitivity_smoothquant.draw(results)
    bold = [l for l in fig.axes[0].lines if l.get_linewidth() > 2]
    alphas = sorted((k for k in next(iter(record["smoothquant"].values()))["w8a8_sqnr_db"] if k != "none"), key=float)
    want = [np.median([s["w8a8_sqnr_db"][a] for s in record["smoothquant"].values()]) for a in alphas]
    np.testing.assert_allclose(bold[0].get_ydata(), want, rtol=1e-12)
    np.testing.assert_allclose(bold[0].get_xdata(), [float(a) for a in alphas])
    drawn = [l for l in fig.axes[0].lines if len(l.get_xdata())]  # the legend's colour keys hold no data
    assert len(drawn) == len(record["smoothquant"]) + 2  # a line each, the median, no smoothing
    drift, sqnr = sensitivity_divergence.draw(results).axes[:2]
    layers = record["propagated"]["int4_g128"]["layers"]
    np.testing.assert_allclose(drift.lines[0].get_ydata(), [np.log10(1 - l["cos"]) for l in layers], rtol=1e-12)
    np.testing.assert_allclose(sqnr.lines[0].get_ydata(), [l["sqnr_db"] for l in layers], rtol=1e-12)
    frames = [p for p in sensitivity_plan.draw(results).axes[0].patches if isinstance(p, Rectangle) and not p.get_fill()]
    assert len(frames) == len(record["plan"]["keep"])


def test_encoder_report_has_no_kl_and_no_plan_figure(minilm_dir, tmp_path):
    out = tmp_path / "minilm"
    _invoke("sensitivity", minilm_dir, *small(2), "--schemes", "int8_channel,int4_g128", "--out", out)
    _invoke("report", out)
    record = json.loads((out / "sensitivity.json").read_text())
    assert record["propagated"]["int4_g128"]["kl_mean"] is None and record["plan"]["keep"] is None
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == sorted(FIGURES[:3])  # no plan to draw for an encoder
    text = _text((out / "report.html").read_text(encoding="utf-8"))
    cos = record["propagated"]["int4_g128"]["output"]["cos"]
    assert f"int4_g128: last hidden state cosine {cos:.6g}" in text and "(an encoder: no KL)" in text
    assert "Plan: none (the model gives no next-token distribution" in text
    rho, n = _spearman(record, "int4_g128")
    assert n == 36 and f"{rho:.3g} over 36 Linears" in text


def test_activations_and_sensitivity_side_by_side(hub_checkpoint, tmp_path):
    out = tmp_path / "both"
    model = hub_checkpoint("llama")
    _invoke("activations", model, *small(), "--out", out)
    _invoke("sensitivity", model, *small(), "--schemes", "int8_channel,int4_g128", "--no-plan", "--out", out)
    _invoke("report", out)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert '<section id="activations">' in page and '<section id="sensitivity">' in page
    assert page.index('id="activations"') < page.index('id="sensitivity"')
    assert (out / "figures" / "magnitude_input.png").is_file() and (out / "figures" / "sensitivity_screening.png").is_file()
    assert not (out / "figures" / "sensitivity_plan.png").exists()  # --no-plan: nothing to draw, nothing claimed


def test_damaged_sensitivity_file_is_one_line(llama_run, tmp_path):
    out, record = llama_run
    bad = tmp_path / "bad"
    bad.mkdir()
    record = json.loads(json.dumps(record))
    record["plan"]["bits_per_weight"] = "8.4"  # a hand edit
    (bad / "sensitivity.json").write_text(json.dumps(record))
    result = runner.invoke(app, ["report", str(bad)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = " ".join(result.output.split())
    assert "sensitivity.json" in line and "plan.bits_per_weight must be a number or null" in line


def test_sensitivity_page_in_a_real_headless_browser(llama_run):
    """A page without the tensor table still runs its script: every figure decoded, nothing fetched."""
    import subprocess

    from tests.test_report import _OFFLINE, _chromium

    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed")
    out, _ = llama_run
    url = (out / "report.html").resolve().as_uri()
    dom = subprocess.run([browser, *_OFFLINE, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True).stdout
    assert f'data-images-loaded="{len(FIGURES)}/{len(FIGURES)}"' in dom and 'data-fetched="0"' in dom
