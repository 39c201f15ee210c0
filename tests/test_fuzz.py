"""Fuzzed headers and indexes: every outcome is a parsed checkpoint or streamscope's own error (seeded, fast)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from fuzz.cases import checkpoint_dirs, safetensors_bytes, write
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamscope.errors import CheckpointError, StreamscopeError
from streamscope.io.checkpoint import CheckpointIndex
from streamscope.io.safetensors import SafetensorsFile

FAST = settings(max_examples=1500, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)


@FAST
@given(safetensors_bytes())
def test_header_parser_never_raises_anything_else(data):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.safetensors"
        path.write_bytes(data)
        try:
            parsed = SafetensorsFile.from_path(path)
        except CheckpointError as e:
            assert str(path) in str(e)
            return
        for t in parsed.tensors.values():  # what parses is consistent with the file
            assert parsed.header_bytes + 8 <= t.begin <= t.end <= parsed.size


@settings(max_examples=600, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)
@given(checkpoint_dirs())
def test_index_and_config_never_raise_anything_else(files):
    d = Path(tempfile.mkdtemp())
    try:
        root = write(d / "ckpt", files)
        try:
            index = CheckpointIndex.from_path(root)
        except StreamscopeError:
            return
        assert all(t.shard.is_file() for t in index)
        index.text_config()
    finally:
        shutil.rmtree(d)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)
@given(st.data())
def test_mutated_gguf_files_parse_or_fail_cleanly(data):
    """Bytes of a small valid GGUF flipped or cut: a parsed file scans to records or per-tensor errors, never a crash."""
    import streamscope

    base = _gguf_bytes()
    raw = bytearray(base)
    for _ in range(data.draw(st.integers(1, 6))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.gguf"
        path.write_bytes(bytes(raw))
        try:
            streamscope.scan(path, out=Path(d) / "o", analyses="all", memory_budget="16MB")
        except StreamscopeError:
            pass


_GGUF: list[bytes] = []


def _gguf_bytes() -> bytes:
    if not _GGUF:
        import numpy as np
        import gguf

        with tempfile.TemporaryDirectory() as d:
            w = gguf.GGUFWriter(str(Path(d) / "m.gguf"), "llama")
            w.add_block_count(1)
            w.add_head_count(2)
            rng = np.random.default_rng(0)
            w.add_tensor("blk.0.attn_q.weight", rng.normal(size=(4, 32)).astype(np.float32))
            q = gguf.quants.quantize(rng.normal(size=(4, 64)).astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor("blk.0.ffn_up.weight", q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_tensors_to_file()
            w.close()
            _GGUF.append((Path(d) / "m.gguf").read_bytes())
    return _GGUF[0]
