"""Fuzzed headers and indexes: every outcome is a parsed checkpoint or streamscope's own error (seeded, fast)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from fuzz.cases import checkpoint_dirs, safetensors_bytes, write
from hypothesis import HealthCheck, given, settings

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
