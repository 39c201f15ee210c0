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
