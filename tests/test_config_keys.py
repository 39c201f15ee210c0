"""Keys of the seed's activation config that streamscope honours (``visualization.dpi``,
``distribution.plot_types``) or refuses with one line (``save_dir``, ``offload_device``, ``auto_offload``)."""

from __future__ import annotations

import matplotlib.image
import pytest
from typer.testing import CliRunner

from streamscope.activation import config
from streamscope.cli import app
from streamscope.errors import OptionError

runner = CliRunner()


@pytest.mark.parametrize("key, value, says", [
    ("visualization.save_dir", "figs", "save_dir is not used"),
    ("memory.offload_device", "cuda", "offload_device must be cpu"),
    ("memory.auto_offload", "false", "auto_offload must be true"),
    ("visualization.dpi", "0", "dpi must be an integer from 20 to 1200"),
    ("distribution.plot_types", "[violin]", "plot_types must be a non-empty list of boxplot, histogram"),
])  # fmt: skip
def test_unsupported_values_are_refused(key, value, says):
    with pytest.raises(OptionError, match=says):
        config.load(overrides={key: value})


def test_refused_in_a_file_names_the_file(tmp_path, llama_dir):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("memory:\n  offload_device: cuda\n")
    result = runner.invoke(app, ["activations", str(llama_dir), "--config", str(cfg), "--out", str(tmp_path / "o"), "-q"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(cfg) in result.output and "offload_device" in errors[0]


def test_defaults_of_the_seed_are_accepted():
    c = config.load(overrides={"memory.offload_device": "cpu", "memory.auto_offload": "true"})
    assert c["visualization"]["save_dir"] is None and c["visualization"]["dpi"] == 100


def test_dpi_and_plot_types_shape_the_figure(tmp_path, llama_dir):
    """One panel (the histogram) at 50 dpi: 4 inches high is 200 pixels; both panels at the default 100 dpi: 800."""
    out = tmp_path / "o"
    args = ["activations", str(llama_dir), "--out", str(out), "-q", "--data.num_samples", "2", "--data.seq_len", "8",
            "--visualization.enabled.distribution", "true", "--report"]  # fmt: skip
    result = runner.invoke(app, [*args, "--distribution.plot_types", "[histogram]", "--visualization.dpi", "50"])
    assert result.exit_code == 0, result.output
    assert matplotlib.image.imread(out / "figures" / "distribution.png").shape[0] == 200
    result = runner.invoke(app, [*args[:3], str(tmp_path / "d"), *args[4:]])
    assert result.exit_code == 0, result.output
    assert matplotlib.image.imread(tmp_path / "d" / "figures" / "distribution.png").shape[0] == 800
