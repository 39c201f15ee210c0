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


# --- big-endian files ------------------------------------------------------------------------------------------


def _write_gguf(path, tensors, big: bool):
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFEndian, GGUFWriter, quants

    writer = GGUFWriter(path, "llama", endianess=GGUFEndian.BIG if big else GGUFEndian.LITTLE)
    writer.add_block_count(1)
    for name, value in tensors.items():
        if name.endswith("q8"):
            writer.add_tensor(name, quants.quantize(value, GGMLQuantizationType.Q8_0), raw_dtype=GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, np.array(value))  # the writer swaps it to the file's byte order
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _torch_save_big_endian(state: dict, path):
    """``torch.save`` as a big-endian host writes it: each storage's bytes swapped, the archive's ``byteorder``
    record "big" (the installed torch writes ``sys.byteorder`` there, so the module sees a big-endian ``sys``)."""
    import sys
    import types

    import torch
    import torch.serialization as ser

    swapped = {}
    for name, t in state.items():  # (numel, itemsize) bytes, each element's reversed
        raw = t.contiguous().view(torch.uint8).view(-1, t.element_size()).flip(1).contiguous()
        swapped[name] = raw.view(t.dtype).view(t.shape)
    big_sys = types.SimpleNamespace(**{k: getattr(sys, k) for k in dir(sys) if not k.startswith("__")})
    big_sys.byteorder = "big"
    saved, ser.sys = ser.sys, big_sys
    try:
        torch.save(swapped, path)
    finally:
        ser.sys = saved
    loaded = torch.load(path, weights_only=True)  # torch itself reads the true values back
    assert all(torch.equal(loaded[n], t) for n, t in state.items())


def _read_all(info, mode):
    import torch

    from streamscope.io.reader import RawReader
    from streamscope.io.tensor import plan_blocks

    with RawReader(max(info.nbytes // 3, 64), mode=mode) as reader:
        parts = [raw.to(torch.float64).clone() for _, raw in reader.blocks(info, plan_blocks(info, max(info.numel // 3, 1)))]
        slab = reader.column_slab(info, 0, info.cols).to(torch.float64) if info.is_matrix else None
    return torch.cat(parts).view(info.shape), slab


@pytest.mark.parametrize("mode", ["mmap", "pread"])
def test_big_endian_gguf_reads_the_true_values(tmp_path, mode):
    import numpy as np
    import torch

    from streamscope.io.checkpoint import CheckpointIndex
    from streamscope.io.handles import read_rows
    from streamscope.io.tensor import Block

    rng = np.random.default_rng(0)
    truth = {"token_embd.weight": (rng.standard_normal((48, 32)) * 0.02 - 0.027).astype(np.float32),
             "blk.0.attn_norm.weight": rng.standard_normal(32).astype(np.float16),
             "blk.0.ffn_up.q8": rng.standard_normal((8, 64)).astype(np.float32)}  # fmt: skip
    path = tmp_path / "big.gguf"
    _write_gguf(path, {k: v.copy() for k, v in truth.items()}, big=True)
    index = CheckpointIndex.from_path(path)
    for name in ("token_embd.weight", "blk.0.attn_norm.weight"):
        info = index.tensors[name]
        assert info.byteorder == "big" and info.unreadable is None
        values, slab = _read_all(info, mode)
        np.testing.assert_array_equal(values.numpy(), truth[name].astype(np.float64))  # exact: a byte swap only
        if slab is not None:
            np.testing.assert_array_equal(slab.numpy(), truth[name].astype(np.float64))
        whole = Block(0, info.numel, 0, info.rows)
        np.testing.assert_array_equal(read_rows(info, whole, torch.float64).reshape(info.shape).numpy(), truth[name].astype(np.float64))
    assert "big-endian" in index.tensors["blk.0.ffn_up.q8"].unreadable


@pytest.mark.parametrize("mode", ["mmap", "pread"])
def test_big_endian_pytorch_zip_reads_the_true_values(tmp_path, mode):
    import numpy as np
    import torch

    from streamscope.io.checkpoint import CheckpointIndex

    torch.manual_seed(0)
    truth = {"w": torch.randn(40, 24) * 4.1 / 4, "h": torch.randn(24).to(torch.bfloat16), "i": torch.arange(-30, 30, dtype=torch.int64)}
    path = tmp_path / "pytorch_model.bin"
    _torch_save_big_endian(truth, path)
    index = CheckpointIndex.from_path(path)
    for name, t in truth.items():
        info = index.tensors[name]
        assert info.byteorder == "big"
        values, _ = _read_all(info, mode)
        np.testing.assert_array_equal(values.numpy(), t.to(torch.float64).numpy())


def test_big_endian_scan_statistics(tmp_path):
    import json

    import numpy as np

    rng = np.random.default_rng(1)
    emb = (rng.standard_normal((64, 32)) * 0.01 - 0.027).astype(np.float32)
    path = tmp_path / "big.gguf"
    _write_gguf(path, {"token_embd.weight": emb.copy()}, big=True)
    out = tmp_path / "out"
    result = runner.invoke(app, ["scan", str(path), "--out", str(out), "--memory-budget", "64MB", "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "tensors.json").read_text())["token_embd.weight"]["basic_stats"]
    # float64 sums of 2048 float32 values: agreement to ~1e-12 relative; 1e-9 leaves room
    assert stats["mean"] == pytest.approx(float(emb.astype(np.float64).mean()), rel=1e-9)
    assert stats["abs_max"] == pytest.approx(float(np.abs(emb).max()), rel=1e-9)


# --- hints that fit the format -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "model.gguf"])
def test_a_broken_non_safetensors_file_gets_its_own_hint(tmp_path, name):
    path = tmp_path / name
    path.write_bytes((b"GGUF" if name.endswith(".gguf") else b"PK\x03\x04") + b"\x00" * 60)
    result = runner.invoke(app, ["scan", str(path), "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert result.exit_code == 1, result.output
    assert str(path) in result.output.replace("\n", "")
    hint = result.output[result.output.index("hint:"):]
    assert "safetensors file" not in hint
    assert ("GGUF" if name.endswith(".gguf") else "torch.save") in hint


def test_complex_dtype_is_told_unsupported_not_to_resave_contiguous(tmp_path):
    import torch

    path = tmp_path / "model.pt"
    torch.save({"w": torch.randn(4, 4), "c": torch.randn(4, 4, dtype=torch.complex64)}, path)
    result = runner.invoke(app, ["scan", str(path), "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "complex dtype torch.complex64" in text and "does not support" in text
    assert "contiguous" not in text
