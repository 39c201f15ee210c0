"""Bad input at the io layer: big-endian files, shards truncated mid-read, malformed vocabularies, hub revisions
that name paths, and hints that fit the format. Each case fails on the code before its fix."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from streamscope.cli import app
from streamscope.errors import CheckpointError
from streamscope.io import hub

runner = CliRunner()


# --- hub revisions ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("revision", ["/any/file", "../../x", "main/../../x", "a\\b", "ma\x00in", "a//b", ""])
def test_hub_revision_that_names_a_path_is_refused(revision):
    with pytest.raises(CheckpointError, match="invalid revision"):
        hub.parse(f"hf://a/b@{revision}")
    with pytest.raises(CheckpointError, match="invalid revision"):
        hub.resolve("hf://a/b", revision=revision or "..")


@pytest.mark.parametrize("revision", ["main", "v1.0", "refs/pr/1", "0123456789abcdef0123456789abcdef01234567"])
def test_hub_revisions_that_are_refs_are_kept(revision):
    assert hub.parse(f"hf://a/b@{revision}") == ("a/b", revision)


def test_scan_of_a_revision_naming_a_file_is_one_error(tmp_path, monkeypatch):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "ref").write_text(str(target))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    result = runner.invoke(app, ["scan", f"hf://a/b@{tmp_path / 'ref'}", "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert result.exit_code == 1, result.output
    assert "invalid revision" in result.output
    assert not (tmp_path / "out" / "model.json").exists()


# --- a malformed vocabulary --------------------------------------------------------------------------------------


def test_malformed_vocab_json_keeps_the_embedding_records(llama_dir, tmp_path):
    import json
    import shutil

    ckpt = tmp_path / "ckpt"
    shutil.copytree(llama_dir, ckpt)
    for name in ("tokenizer.json", "vocab.txt"):
        (ckpt / name).unlink(missing_ok=True)
    (ckpt / "vocab.json").write_text("[1, 2, 3]")
    out = tmp_path / "out"
    result = runner.invoke(app, ["scan", str(ckpt), "--out", str(out), "--memory-budget", "64MB", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    model = json.loads((out / "model.json").read_text())
    assert not model.get("errors"), model.get("errors")
    tensors = json.loads((out / "tensors.json").read_text())
    records = tensors if isinstance(tensors, dict) else {r["name"]: r for r in tensors}
    embedded = {n: r["embedding"] for n, r in records.items() if isinstance(r, dict) and "embedding" in r}
    assert "model.embed_tokens.weight" in embedded and "lm_head.weight" in embedded, sorted(embedded)
    for record in embedded.values():
        assert record["tokens"].startswith("not decoded: ") and "vocab.json" in record["tokens"]
        assert [r["token"] for r in record["largest"]] == [None] * len(record["largest"])
        assert len(record["largest"]) > 0


# --- a shard truncated while it is read ------------------------------------------------------------------------

_TRUNCATE_CHILD = r"""
import json, os, sys
import torch
from safetensors.torch import save_file
from streamscope.io.checkpoint import CheckpointIndex
from streamscope.io.reader import RawReader
from streamscope.io.tensor import plan_blocks

path, mode, when = sys.argv[1], sys.argv[2], sys.argv[3]
save_file({"w": torch.randn(1024, 256)}, path)  # 1 MiB, 64 blocks of 16 rows
info = CheckpointIndex.from_path(path).tensors["w"]
if when == "before":
    os.truncate(path, info.begin + info.nbytes // 2)
out = {"blocks": 0}
try:
    with RawReader(16 * 256 * 4, mode=mode) as reader:
        for block, raw in reader.blocks(info, plan_blocks(info, 16 * 256)):
            float(raw.float().sum())
            out["blocks"] += 1
            if out["blocks"] == 2 and when == "during":
                os.truncate(path, info.begin + info.nbytes // 2)
except OSError as e:
    out["error"] = str(e)
print(json.dumps(out))
"""


@pytest.mark.parametrize("when", ["during", "before"])
@pytest.mark.parametrize("mode", ["mmap", "pread"])
def test_truncated_shard_is_one_clean_error_on_every_reader(tmp_path, mode, when):
    import json
    import subprocess
    import sys

    path = tmp_path / "model.safetensors"
    proc = subprocess.run([sys.executable, "-c", _TRUNCATE_CHILD, str(path), mode, when], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"exit {proc.returncode} (a SIGBUS is -7): {proc.stderr[-2000:]}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert str(path) in out.get("error", ""), out
    assert "unexpected end of file" in out["error"] and "truncated" in out["error"]
    assert out["blocks"] < 64
