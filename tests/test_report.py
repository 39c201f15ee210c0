"""Figures and the offline HTML report, from scans of small real and random checkpoints; a real browser opens it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import streamscope
from streamscope.cli import app
from streamscope.synthetic import save_tensors

runner = CliRunner()
SEED_FIGURES = ("condition_heatmap.png", "quantization_risk.png", "rank_efficiency.png", "health_dashboard.png")
MORE_FIGURES = ("layer_trends.png", "quantization_schemes.png", "embedding_norms.png", "norm_layers.png", "alpha_histogram.png")


@pytest.fixture(scope="module")
def minilm_report(minilm_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("minilm")
    streamscope.scan(minilm_dir, out=out, analyses="all")
    return streamscope.build_report(out, details=3)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_every_figure_from_the_real_model(minilm_report):
    figures = minilm_report.parent / "figures"
    for name in SEED_FIGURES + MORE_FIGURES:
        w, h = _png_size(figures / name)
        assert w >= 600 and h >= 200, name
    details = sorted(p.name for p in (figures / "layer_details").iterdir())
    assert len(details) == 6 and sum(n.endswith("_distribution.png") for n in details) == 3
    assert sum(n.endswith("_singular_values.png") for n in details) == 3
    assert "encoder.layer.2.output.dense.weight_distribution.png" in details  # the riskiest tensor of this model


def test_report_is_self_contained(minilm_report):
    page = minilm_report.read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 9 + 6
    assert not re.search(r"(?:src|href)=\"(?:https?:)?//", page) and "http://" not in page and "https://" not in page
    for section in ('id="summary"', 'id="weights"', 'id="embeddings"', 'id="details"', 'id="table"', 'id="run"'):
        assert section in page
    assert 'id="activations"' not in page  # no activation results in this directory
    assert page.count("<tr><td class=name data-v=") == 104  # every tensor in the table
    assert "encoder.layer.2.output.dense.weight" in page and "INT8 SQNR 10.7 dB" in page


def test_figures_for_random_llama_and_determinism(llama_dir, tmp_path):
    out = tmp_path / "llama"
    streamscope.scan(llama_dir, out=out, analyses="all")
    first = streamscope.build_report(out, details=2)
    names = {p.name: p.read_bytes() for p in (out / "figures").rglob("*.png")}
    assert set(SEED_FIGURES + MORE_FIGURES) <= set(names)
    again = streamscope.build_report(out, out=tmp_path / "again", details=2)
    for p in (tmp_path / "again" / "figures").rglob("*.png"):
        assert p.read_bytes() == names[p.name], f"{p.name} differs between two renders of the same results"
    assert first.read_text() == again.read_text()  # same results, same page, byte for byte


def test_six_hundred_matrices_stay_legible_and_small(tmp_path):
    """An 86-layer, 600-matrix results directory: the heatmap becomes a layer x type grid, the report stays < 20 MB."""
    g = torch.Generator().manual_seed(0)
    tensors = {}
    for layer in range(86):
        for proj, shape in (("self_attn.q_proj", (32, 32)), ("self_attn.k_proj", (16, 32)), ("self_attn.v_proj", (16, 32)),
                            ("self_attn.o_proj", (32, 32)), ("mlp.gate_proj", (48, 32)), ("mlp.up_proj", (48, 32)), ("mlp.down_proj", (32, 48))):  # fmt: skip
            if len(tensors) < 600:
                tensors[f"model.layers.{layer}.{proj}.weight"] = (torch.randn(*shape, generator=g) * 0.02).to(torch.bfloat16)
    path = save_tensors(tmp_path / "m.safetensors", tensors)
    out = tmp_path / "big"
    r = streamscope.scan(path, out=out, analyses="all", spectral="exact", quant_schemes="int8,int8_channel")
    assert len(r.tensors) == 600
    page = streamscope.build_report(out)
    assert page.stat().st_size < 20 << 20
    w, h = _png_size(out / "figures" / "condition_heatmap.png")
    assert h < 2000  # a grid of 86 layers x 7 types, not 600 bars


def test_report_cli_and_bad_directory(tmp_path, llama_dir):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 1 and "not a finished scan's results directory" in result.output and "Traceback" not in result.output
    out = tmp_path / "r"
    result = runner.invoke(app, ["scan", str(llama_dir), "--out", str(out), "--select", "layers.0", "--report", "--quiet"])
    assert result.exit_code == 0 and (out / "report.html").is_file()
    result = runner.invoke(app, ["report", str(out), "--details", "many"])
    assert result.exit_code == 1 and "--details" in result.output


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


# Flags that keep the browser itself off the network: every host resolves to nothing and any request goes
# to a closed local port, so only the page's own behaviour is observed.
_OFFLINE = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
            "--virtual-time-budget=8000"]  # fmt: skip


def test_report_in_a_real_headless_browser(minilm_report, tmp_path):
    browser = _chromium()
    if browser is None:
        print("chromium is not installed (and could not be installed by .ci/run): browser test skipped")
        pytest.skip("chromium is not installed; .ci/run installs it with apt-get when run as root")
    url = minilm_report.resolve().as_uri()
    shot = tmp_path / "shot.png"
    subprocess.run([browser, *_OFFLINE, "--hide-scrollbars", "--window-size=1280,1600", f"--screenshot={shot}", url],
                   capture_output=True, timeout=120, check=True)  # fmt: skip
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[0] == 1600 and pixels.std() > 0.05  # not blank
    dom = subprocess.run([browser, *_OFFLINE, "--dump-dom", url + "#sort=-std"], capture_output=True, text=True, timeout=120, check=True).stdout
    loaded = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom)
    assert loaded and loaded.group(1) == loaded.group(2) == "15"
    assert re.search(r'data-fetched="0"', dom), "the page fetched something"
    assert 'data-sorted="std:desc"' in dom
    body = dom[dom.index("<tbody>") :]
    stds = [float(v) for v in re.findall(r'<tr><td class="name" data-v="[^"]*">[^<]*</td>(?:<td[^>]*>[^<]*</td>){4}<td data-v="([^"]+)"', body)]
    assert len(stds) == 104 and stds == sorted(stds, reverse=True) and np.isfinite(stds).all()
