"""Data-parallel activation runs: the samples split over dask workers give the files of a single run."""

from __future__ import annotations

import pytest

from streamscope.activation import config as config_mod
from streamscope.activation.parallel import shares
from tests import tiny_models
from tests.test_activation_resume import _assert_same, _files

pytest.importorskip("transformers")
pytest.importorskip("distributed")

CFG = {"data.num_samples": 5, "data.seq_len": 12, "data.batch_size": 1, "outlier.threshold": 3,
       "visualization.enabled.heatmap_3d": True, "heatmap_3d.sample_idx": 3, "visualization.enabled.distribution": True,
       "distribution.patterns": ["mlp"]}  # fmt: skip


def test_shares_are_whole_batches_of_the_single_run():
    assert shares(5, 12, 1, 2) == [(0, 2), (2, 5)]
    assert shares(10, 100, 2, 3) == [(0, 4), (4, 6), (6, 10)]  # batches of 2: 5 batches over 3 workers
    assert shares(3, 512, None, 4) == [(0, 1), (1, 2), (2, 3)]  # one sample per call: no more workers than batches
    assert shares(1, 12, None, 2) == [(0, 1)]


def test_two_workers_give_the_single_runs_files(tmp_path):
    from typer.testing import CliRunner

    from streamscope.activation.profile import profile
    from streamscope.cli import app

    model = tiny_models.build("llama", tmp_path / "llama")
    profile(model, config_mod.load(None, CFG), tmp_path / "one", echo=lambda s: None)
    args = [f"--{k}={v if not isinstance(v, list) else '[' + ','.join(v) + ']'}" for k, v in CFG.items()]
    r = CliRunner().invoke(app, ["activations", str(model), "--out", str(tmp_path / "two"), "--workers", "2", "-q", *args])
    assert r.exit_code == 0, r.output
    _assert_same(_files(tmp_path / "two"), _files(tmp_path / "one"))
    assert not (tmp_path / "two" / ".parts").exists()


def test_workers_with_a_scheduler_address_is_refused(tmp_path):
    from typer.testing import CliRunner

    from streamscope.cli import app

    r = CliRunner().invoke(app, ["activations", str(tmp_path), "--scheduler", "tcp://127.0.0.1:1", "--workers", "2"])
    assert r.exit_code == 1 and "--workers" in r.output
