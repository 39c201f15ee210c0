"""Header and index validation: every malformed input gets one clear error naming the file and the problem."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch

import streamscope
from streamscope.errors import CheckpointError, HeaderError
from streamscope.io.checkpoint import CheckpointIndex
from streamscope.io.safetensors import MAX_HEADER_BYTES, SafetensorsFile
from streamscope.synthetic import save_tensors


def raw_file(path: Path, header: dict | bytes, data: bytes = b"", length: int | None = None) -> Path:
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(body) if length is None else length) + body + data)
    return path


def good_header(**entry) -> dict:
    t = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
    t.update(entry)
    return {"w": t}


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b"\x01\x02"), "shorter than the 8-byte header length"),
        (lambda p: raw_file(p, b"{}", length=4096), "runs past the end"),
        (lambda p: raw_file(p, b"{not json", b""), "not valid UTF-8 JSON"),
        (lambda p: raw_file(p, b"[1, 2]", b""), "expected an object"),
        (lambda p: raw_file(p, good_header(dtype="F12"), bytes(16)), "unknown dtype 'F12'"),
        (lambda p: raw_file(p, good_header(data_offsets=[0, 32]), bytes(16)), "run past the 16-byte data region"),
        (lambda p: raw_file(p, good_header(shape=[3, 2]), bytes(16)), "shape [3, 2] x 4 bytes = 24 bytes, but data_offsets span 16"),
        (lambda p: raw_file(p, good_header(shape=[2, -1]), bytes(16)), "not a list of non-negative integers"),
        (lambda p: raw_file(p, good_header(data_offsets=[8, 4]), bytes(16)), "is not [begin, end]"),
        (lambda p: raw_file(p, b"{}", b"", length=MAX_HEADER_BYTES + 1), "exceeds the safetensors limit"),
        (
            lambda p: raw_file(
                p,
                {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}},
                bytes(16),
            ),
            "overlap",
        ),
        (lambda p: raw_file(p, {"__metadata__": {"a": 1}}, b""), "__metadata__ must map strings to strings"),
    ],
)
def test_bad_headers_name_file_and_problem(tmp_path, make, message):
    path = tmp_path / "bad.safetensors"
    make(path)
    with pytest.raises(HeaderError) as info:
        SafetensorsFile.from_path(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_truncated_real_file_is_refused(tmp_path):
    path = save_tensors(tmp_path / "m.safetensors", {"a": torch.ones(64, 64), "b": torch.zeros(10)})
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(HeaderError, match="truncated"):
        streamscope.open(path)


def test_valid_header_parses_offsets(tmp_path):
    path = save_tensors(tmp_path / "m.safetensors", {"a": torch.ones(3, 5, dtype=torch.bfloat16), "s": torch.tensor(2.0), "e": torch.zeros(0, 4)})
    f = SafetensorsFile.from_path(path)
    assert f.tensors["a"].shape == (3, 5) and f.tensors["a"].nbytes == 30
    assert f.tensors["s"].shape == () and f.tensors["s"].numel == 1
    assert f.tensors["e"].numel == 0


def sharded(tmp_path: Path) -> Path:
    d = tmp_path / "ckpt"
    d.mkdir()
    save_tensors(d / "a.safetensors", {"x": torch.ones(4, 4)})
    save_tensors(d / "b.safetensors", {"y": torch.ones(2)})
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "a.safetensors", "y": "b.safetensors"}}))
    return d


def test_index_reads_all_shards(tmp_path):
    index = CheckpointIndex.from_path(sharded(tmp_path))
    assert list(index.tensors) == ["x", "y"]


@pytest.mark.parametrize(
    "weight_map, message",
    [
        ({"x": "../outside.safetensors"}, "outside the checkpoint directory"),
        ({"x": "/etc/passwd"}, "outside the checkpoint directory"),
        ({"x": "missing.safetensors"}, "does not exist"),
        ({"x": "a.safetensors", "zz": "a.safetensors"}, "not in their shard's header"),
    ],
)
def test_bad_index_entries(tmp_path, weight_map, message):
    d = sharded(tmp_path)
    (tmp_path / "outside.safetensors").write_bytes((d / "a.safetensors").read_bytes())
    index = d / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(CheckpointError) as info:
        CheckpointIndex.from_path(d)
    assert str(index) in str(info.value) and message in str(info.value)


def test_index_without_weight_map(tmp_path):
    d = sharded(tmp_path)
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}}))
    with pytest.raises(CheckpointError, match="no 'weight_map'"):
        CheckpointIndex.from_path(d)


def test_directory_without_index_and_duplicates(tmp_path):
    d = sharded(tmp_path)
    (d / "model.safetensors.index.json").unlink()
    assert sorted(CheckpointIndex.from_path(d).tensors) == ["x", "y"]
    save_tensors(d / "c.safetensors", {"x": torch.ones(1)})
    with pytest.raises(CheckpointError, match="'x' also appears"):
        CheckpointIndex.from_path(d)


def test_paths_that_are_not_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        CheckpointIndex.from_path(tmp_path / "nope")
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="holds no checkpoint file.*model.onnx"):
        CheckpointIndex.from_path(tmp_path)
    with pytest.raises(CheckpointError, match="not a checkpoint file streamscope can read"):
        CheckpointIndex.from_path(tmp_path / "model.onnx")
    (tmp_path / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="not a readable PyTorch zip checkpoint"):
        CheckpointIndex.from_path(tmp_path / "pytorch_model.bin")


def test_blocks_and_dask_match_the_stored_tensor(tmp_path):
    w = torch.randn(37, 11)
    path = save_tensors(tmp_path / "m.safetensors", {"w": w.to(torch.bfloat16), "v": torch.arange(10.0)})
    t = streamscope.open(path)["w"]
    blocks = list(t.blocks(max_bytes=5 * 11 * 4))
    assert [b.shape[0] for b in blocks] == [5] * 7 + [2]
    assert torch.equal(torch.cat(blocks), w.to(torch.bfloat16).float())
    arr = t.to_dask(max_bytes=5 * 11 * 4)
    assert arr.chunks[0] == (5,) * 7 + (2,)
    assert torch.equal(torch.from_numpy(arr.compute()), w.to(torch.bfloat16).float())
    assert float(arr.sum().compute()) == pytest.approx(float(w.to(torch.bfloat16).float().sum()), rel=1e-5)
    v = streamscope.open(path)["v"]
    assert v.to_dask(max_bytes=12).compute().tolist() == list(range(10))
    with pytest.raises(KeyError, match="no tensor named 'zz'"):
        streamscope.open(path)["zz"]
