"""Hypothesis strategies for malformed and odd checkpoints: safetensors headers and shard indexes.

Used by ``tests/test_fuzz.py`` (seeded, a few thousand cases in CI) and ``tests/fuzz/run.py`` (long runs that
also scan what parses). Every case is written as real files: a safetensors file, and sometimes an index and a
config beside it.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from hypothesis import strategies as st

DTYPES = ["F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "F8_E8M0", "I64", "I32", "I16", "I8", "U64", "U32", "U16",
          "U8", "BOOL", "C64", "F4", "F6_E2M3", "F6_E3M2"]  # fmt: skip
BITS = {"F64": 64, "F32": 32, "F16": 16, "BF16": 16, "I64": 64, "I32": 32, "I16": 16, "U64": 64, "U32": 32, "U16": 16,
        "C64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}  # fmt: skip

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
                      st.text(max_size=8))  # fmt: skip
json_value = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)), max_leaves=12)
names = st.one_of(st.text(min_size=1, max_size=20), st.sampled_from(["model.embed_tokens.weight", "lm_head.weight", "model.layers.0.mlp.up_proj.weight",
                  "model.norm.weight", "encoder.layer.0.attention.self.query.weight", "__x", ".", "..", "a/b", "w" * 300]))  # fmt: skip
dims = st.one_of(st.integers(0, 6), st.integers(0, 2**41), st.sampled_from([True, -1, 2.0, "3", None]))


@st.composite
def entries(draw, offset: int):
    """One tensor entry, mostly consistent (so that parsing goes deep), sometimes broken in one field."""
    dtype = draw(st.one_of(st.sampled_from(DTYPES), json_value)) if draw(st.integers(0, 9)) == 0 else draw(st.sampled_from(DTYPES))
    shape = draw(st.lists(st.integers(0, 6), max_size=3))
    if draw(st.integers(0, 6)) == 0:
        shape = draw(st.one_of(st.lists(dims, max_size=3), json_value))
    bits = BITS.get(dtype, 8) if isinstance(dtype, str) else 8
    n = 1
    for d in shape if isinstance(shape, list) else []:
        n *= d if isinstance(d, int) and not isinstance(d, bool) and d >= 0 else 1
    size = -(-n * bits // 8) if n < 2**20 else 0
    offsets = [offset, offset + size]
    if draw(st.integers(0, 6)) == 0:
        offsets = draw(st.one_of(st.lists(st.one_of(st.integers(-5, 2**40), json_leaf), max_size=3), json_value))
    entry = {"dtype": dtype, "shape": shape, "data_offsets": offsets}
    if draw(st.integers(0, 15)) == 0:
        entry = draw(json_value)
    return entry, size


@st.composite
def safetensors_bytes(draw) -> bytes:
    """A whole file: length prefix, header JSON (or broken bytes), data region."""
    header: dict = {}
    offset = 0
    for _ in range(draw(st.integers(0, 5))):
        entry, size = draw(entries(offset))
        header[draw(names)] = entry
        offset += size
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.one_of(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3), json_value))
    body = json.dumps(header, allow_nan=True).encode()
    mutation = draw(st.integers(0, 7))
    if mutation == 0 and body:  # flip bytes
        raw = bytearray(body)
        for _ in range(draw(st.integers(1, 4))):
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
        body = bytes(raw)
    elif mutation == 1:  # truncate the header
        body = body[: draw(st.integers(0, len(body)))]
    elif mutation == 2:  # deep nesting or a huge number
        body = draw(st.sampled_from([b"[" * 20000 + b"]" * 20000, b'{"a": ' + b"9" * 5000 + b"}", b'{"w\\ud800": 1}', b"\xff\xfe{}"]))
    data = bytes(draw(st.integers(0, offset + 8)))
    length = len(body)
    if draw(st.integers(0, 9)) == 0:
        length = draw(st.one_of(st.integers(0, 2**64 - 1), st.integers(0, len(body) + 64)))
    return struct.pack("<Q", length) + body + data


@st.composite
def checkpoint_dirs(draw):
    """(files to write: name -> bytes) for a directory: shards, maybe an index, maybe a config."""
    files = {"model-1.safetensors": draw(safetensors_bytes())}
    if draw(st.booleans()):
        files["model-2.safetensors"] = draw(safetensors_bytes())
    if draw(st.booleans()):
        shard = st.one_of(st.sampled_from(["model-1.safetensors", "./model-2.safetensors", "../x.safetensors", "/etc/hosts",
                                           "missing.safetensors", "a\0b", ""]), st.text(max_size=10))  # fmt: skip
        weight_map = draw(st.one_of(st.dictionaries(names, shard, max_size=4), json_value))
        index = draw(st.one_of(st.just({"weight_map": weight_map}), json_value))
        files["model.safetensors.index.json"] = json.dumps(index).encode()
    if draw(st.booleans()):
        files["config.json"] = json.dumps(draw(st.one_of(json_value, st.fixed_dictionaries({"text_config": json_value}),
                                                         st.fixed_dictionaries({"num_hidden_layers": json_value, "num_attention_heads": json_value})))).encode()  # fmt: skip
    return files


def write(directory: Path, files: dict[str, bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return directory
