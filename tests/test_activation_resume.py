"""A killed activation run continues from its last finished decoder layer, and its files equal those of a run
that was never interrupted; a changed input or option starts afresh."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from streamscope.activation import config as config_mod
from tests import tiny_models

pytest.importorskip("transformers")

CFG = {"data.num_samples": 3, "data.seq_len": 12, "data.batch_size": 2, "outlier.threshold": 3,
       "visualization.enabled.heatmap_3d": True, "heatmap_3d.sample_idx": 1, "visualization.enabled.distribution": True,
       "distribution.patterns": ["mlp"]}  # fmt: skip
VARYING = ("seconds", "forward_seconds", "peak_rss_bytes", "bytes_read", "tokens_per_second", "resumed_after_layer", "files", "workers")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_models.build("llama", tmp_path_factory.mktemp("resume") / "llama")


def _kill_after_layer(model, out, layer: int) -> subprocess.CompletedProcess:
    """Run the profile in a child process that SIGKILLs itself once layer ``layer``'s checkpoint is written."""
    code = textwrap.dedent(f"""
        import os, signal
        from streamscope.activation import config as config_mod, resume
        from streamscope.activation.profile import profile
        save = resume.LayerCheckpoint.save_layer
        def dying(self, i, *a):
            save(self, i, *a)
            if i == {layer}:
                os.kill(os.getpid(), signal.SIGKILL)
        resume.LayerCheckpoint.save_layer = dying
        profile({str(model)!r}, config_mod.load(None, {CFG!r}), {str(out)!r}, echo=lambda s: None)
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def _files(out) -> dict:
    import zarr

    record = json.loads((out / "activations.json").read_text())
    for key in VARYING:
        record["run"].pop(key, None)
    record["config"]["model"]["path"] = None  # the command line fills it in
    g = zarr.open_group(str(out / "arrays.zarr"), mode="r")["activations"]
    heat = {a.attrs["module"]: a[:] for _, a in g["heatmap"].arrays()}
    from gguf import GGUFReader

    imatrix = {t.name: np.array(t.data) for t in GGUFReader(out / "imatrix.gguf").tensors}
    return {"json": record, "csv": (out / "activations.csv").read_text(), "outliers": (out / "outliers.csv").read_text(),
            "scales": torch.load(out / "act_scales.pt", weights_only=True), "heat": heat, "ids": g["input_ids"][:], "imatrix": imatrix}  # fmt: skip


def _assert_same(a: dict, b: dict) -> None:
    assert a["json"] == b["json"]
    assert a["csv"] == b["csv"] and a["outliers"] == b["outliers"]
    assert a["scales"].keys() == b["scales"].keys() and all(torch.equal(a["scales"][k], b["scales"][k]) for k in a["scales"])
    assert a["heat"].keys() == b["heat"].keys() and all(np.array_equal(a["heat"][k], b["heat"][k]) for k in a["heat"])
    assert np.array_equal(a["ids"], b["ids"])
    assert a["imatrix"].keys() == b["imatrix"].keys() and all(np.array_equal(a["imatrix"][k], b["imatrix"][k]) for k in a["imatrix"])


@pytest.mark.parametrize("layer", [0, 1])
def test_killed_run_resumes_and_equals_an_uninterrupted_run(model, tmp_path, layer):
    from streamscope.activation.profile import profile

    whole = tmp_path / "whole"
    profile(model, config_mod.load(None, CFG), whole, echo=lambda s: None)
    out = tmp_path / "killed"
    child = _kill_after_layer(model, out, layer)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert not (out / "activations.json").exists() and (out / ".activations-resume" / "state.json").is_file()
    said = []
    r = profile(model, config_mod.load(None, CFG), out, echo=said.append)
    assert r["run"]["resumed_after_layer"] == layer + 1
    assert any(f"resuming: {layer + 1} of 2 decoder layers ({'L0' if layer == 0 else 'L0-L1'}) were finished" in s for s in said), said
    _assert_same(_files(out), _files(whole))
    assert not (out / ".activations-resume").exists() and not (out / ".probes").exists()


def test_changed_option_or_input_starts_afresh(model, tmp_path):
    from streamscope.activation.profile import profile

    out = tmp_path / "o"
    assert _kill_after_layer(model, out, 0).returncode == -signal.SIGKILL
    said = []
    changed = {**CFG, "data.seed": 7}
    r = profile(model, config_mod.load(None, changed), out, echo=said.append)
    assert r["run"]["resumed_after_layer"] is None and not any("resuming" in s for s in said)
    fresh = tmp_path / "fresh"
    profile(model, config_mod.load(None, changed), fresh, echo=lambda s: None)
    _assert_same(_files(out), _files(fresh))


def test_ctrl_c_says_how_far_and_how_to_resume(model, tmp_path, monkeypatch):
    from streamscope.activation import resume
    from streamscope.activation.profile import profile
    from streamscope.errors import Interrupted

    save = resume.LayerCheckpoint.save_layer

    def interrupted(self, i, *a):
        save(self, i, *a)
        raise KeyboardInterrupt

    monkeypatch.setattr(resume.LayerCheckpoint, "save_layer", interrupted)
    with pytest.raises(Interrupted, match=r"with 1 of 2 decoder layers finished \(L0\), kept in .*run the same command to resume"):
        profile(model, config_mod.load(None, CFG), tmp_path / "o", echo=lambda s: None)
    assert not os.path.exists(tmp_path / "o" / ".activations.lock")  # the lock is released


def test_ctrl_c_before_any_layer_says_nothing_was_kept(model, tmp_path, monkeypatch):
    from streamscope.activation import collect
    from streamscope.activation.profile import profile
    from streamscope.errors import Interrupted

    def interrupted(self, prefix, modules):
        raise KeyboardInterrupt

    monkeypatch.setattr(collect.Collector, "on_weights", interrupted)
    with pytest.raises(Interrupted, match="before the first of 2 decoder layers finished; nothing was kept"):
        profile(model, config_mod.load(None, CFG), tmp_path / "o", echo=lambda s: None)
