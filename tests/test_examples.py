"""The examples run and agree with the scan."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
from safetensors.torch import load_file

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_custom_analysis_example(minilm_dir, capsys):
    main = runpy.run_path(str(EXAMPLES / "custom_analysis.py"))["main"]
    out = main(str(minilm_dir), "embeddings.word_embeddings.weight")
    ref = load_file(str(minilm_dir / "model.safetensors"))["embeddings.word_embeddings.weight"]
    assert out["row_absmax"].shape == (30522,)
    assert float((out["row_absmax"] - ref.abs().amax(dim=1)).abs().max()) == 0.0
    assert out["std"] == pytest.approx(float(ref.double().std()), rel=1e-4)
    assert set(out["table"]["block_type"]) == {"q_proj", "k_proj", "v_proj", "bias"}
    assert "row |w| max" in capsys.readouterr().out
