"""Safetensors headers: parse, validate, describe. No tensor byte is read here.

Format: 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the data region. The JSON maps
tensor names to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to the data region)
and may hold a ``__metadata__`` map of strings.
"""

from __future__ import annotations

import json
import math
import os
import stat
import struct
from pathlib import Path

from streamscope.errors import HeaderError
from streamscope.io.tensor import ShardFile, TensorInfo, dtype_bits

#: Longest tensor name accepted, in UTF-8 bytes (a file name's limit: names become keys in the result store).
MAX_NAME_BYTES = 255

#: The safetensors library refuses headers above this size; so do we.
MAX_HEADER_BYTES = 100_000_000


def sniff(head: bytes) -> bool:
    """Whether the first bytes of a file look like safetensors: a plausible header length, then ``{``."""
    return len(head) >= 9 and int.from_bytes(head[:8], "little") <= MAX_HEADER_BYTES and head[8:9] == b"{"


class SafetensorsFile(ShardFile):
    """One parsed and validated safetensors file."""

    @classmethod
    def from_path(cls, path: str | os.PathLike) -> "SafetensorsFile":
        """Read and validate the header of ``path``.

        Raises:
            HeaderError: naming the file and the problem, for every malformed header.
        """
        path = Path(path)
        try:
            st = path.stat()
            if not stat.S_ISREG(st.st_mode):
                raise _error(path, "not a regular file (a FIFO, device or directory cannot be a shard)")
            size = st.st_size
            with open(path, "rb") as f:
                prefix = f.read(8)
                if len(prefix) < 8:
                    raise _error(path, f"the file is {size} bytes, shorter than the 8-byte header length")
                (n,) = struct.unpack("<Q", prefix)
                if n > MAX_HEADER_BYTES:
                    raise _error(path, f"header length {n} exceeds the safetensors limit of {MAX_HEADER_BYTES} bytes")
                if 8 + n > size:
                    raise _error(path, f"header length {n} runs past the end of the {size}-byte file (truncated?)")
                raw = f.read(n)
        except OSError as e:
            raise HeaderError(f"{path}: cannot read the safetensors header: {e.strerror or e}") from e
        return cls.from_header(path, raw, size)

    @classmethod
    def from_header(cls, path: Path, raw: bytes, size: int) -> "SafetensorsFile":
        """Validate header bytes ``raw`` (the JSON after the 8-byte length) of a ``size``-byte file at ``path``
        (a local path, or a remote file's name when only its header was fetched)."""
        n = len(raw)
        try:
            header = json.loads(raw.decode("utf-8"))
        except RecursionError as e:
            raise _error(path, "the header JSON is nested too deeply") from e
        except ValueError as e:  # bad UTF-8, bad JSON, an integer of thousands of digits
            raise _error(path, f"the header is not valid UTF-8 JSON ({str(e)[:200]})") from e
        if not isinstance(header, dict):
            raise _error(path, f"the header is a JSON {type(header).__name__}, expected an object")
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise _error(path, "__metadata__ must map strings to strings")
        data_start, data_len = 8 + n, size - 8 - n
        tensors = {name: _tensor(path, name, entry, data_start, data_len) for name, entry in header.items()}
        _check_layout(path, tensors, data_start)
        return cls(path=path, header_bytes=n, tensors=tensors, metadata=metadata, size=size, format="safetensors")


def _error(path: Path, problem: str) -> HeaderError:
    return HeaderError(f"{path}: invalid safetensors header: {problem}")


def _is_size(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _size(bits: int) -> str:
    return f"{bits // 8} bytes" if bits % 8 == 0 else f"{bits} bits"


def _check_name(path: Path, name: str) -> None:
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise _error(path, f"tensor name {name!r} holds a lone surrogate, which is not valid UTF-8") from None
    if "\0" in name:
        raise _error(path, f"tensor name {name!r} holds a NUL character")
    if not name or len(encoded) > MAX_NAME_BYTES:
        raise _error(path, f"tensor name {name[:60]!r}... is {len(encoded)} bytes; names must be 1 to {MAX_NAME_BYTES} bytes")


def _tensor(path: Path, name: str, entry: object, data_start: int, data_len: int) -> TensorInfo:
    _check_name(path, name)
    where = f"tensor {name!r}"
    if not isinstance(entry, dict):
        raise _error(path, f"{where}: entry is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    bits = dtype_bits(dtype) if isinstance(dtype, str) else None
    if bits is None:
        shown = repr(dtype[:40]) if isinstance(dtype, str) else f"of JSON type {type(dtype).__name__} ({str(dtype)[:40]})"
        raise _error(path, f"{where}: unknown dtype {shown} (safetensors dtypes: F64, F32, F16, BF16, F8_E4M3, F8_E5M2, "
                           "F8_E8M0, F6_E2M3, F6_E3M2, F4, C64, I64, I32, I16, I8, U64, U32, U16, U8, BOOL)")  # fmt: skip
    if not isinstance(shape, list) or not all(_is_size(d) for d in shape):
        raise _error(path, f"{where}: shape {str(shape)[:80]} is not a list of non-negative integers")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_size(o) for o in offsets) or offsets[0] > offsets[1]:
        raise _error(path, f"{where}: data_offsets {str(offsets)[:80]} is not [begin, end] with 0 <= begin <= end")
    begin, end = offsets
    if end > data_len:
        raise _error(
            path, f"{where}: data_offsets [{begin}, {end}] run past the {data_len}-byte data region (truncated file?)"
        )
    expected = -(-math.prod(shape) * bits // 8)
    if end - begin != expected:
        raise _error(
            path, f"{where}: shape {shape} x {_size(bits)} = {expected} bytes, but data_offsets span {end - begin}"
        )
    return TensorInfo(name, dtype, tuple(shape), path, data_start + begin, data_start + end)


def _check_layout(path: Path, tensors: dict[str, TensorInfo], data_start: int) -> None:
    previous = None
    for t in sorted((t for t in tensors.values() if t.nbytes), key=lambda t: t.begin):
        if previous is not None and t.begin < previous.end:
            raise _error(
                path,
                f"tensors {previous.name!r} and {t.name!r} overlap "
                f"(bytes {previous.begin - data_start}-{previous.end - data_start} "
                f"and {t.begin - data_start}-{t.end - data_start} of the data region)",
            )
        previous = t
