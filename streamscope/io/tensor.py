"""What every checkpoint format describes a tensor as, before a byte of it is read.

``TensorInfo`` says where a tensor's bytes lie (file, absolute byte range) and how to read them (dtype name,
shape); ``Block`` is a run of whole rows of it. The dtype table names torch dtypes as strings so that
parsing headers (``params``, ``--help``) never imports torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

#: dtype name (safetensors spelling) -> (itemsize in bytes, torch dtype attribute).
DTYPES: dict[str, tuple[int, str]] = {
    "F64": (8, "float64"),
    "F32": (4, "float32"),
    "F16": (2, "float16"),
    "BF16": (2, "bfloat16"),
    "F8_E4M3": (1, "float8_e4m3fn"),
    "F8_E5M2": (1, "float8_e5m2"),
    "I64": (8, "int64"),
    "I32": (4, "int32"),
    "I16": (2, "int16"),
    "I8": (1, "int8"),
    "U8": (1, "uint8"),
    "BOOL": (1, "bool"),
    "U16": (2, "uint16"),
    "U32": (4, "uint32"),
    "U64": (8, "uint64"),
    "F8_E8M0": (1, "float8_e8m0fnu"),
}
#: dtypes that safetensors defines and streamscope does not analyse (bits per element): their tensors are
#: indexed, counted by ``params`` and listed as skipped by ``scan``, with the reason.
UNREADABLE_DTYPES: dict[str, int] = {"C64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}


def dtype_bits(name: str) -> int | None:
    """Bits per element of a safetensors dtype name, None for a name safetensors does not define."""
    if name in DTYPES:
        return DTYPES[name][0] * 8
    return UNREADABLE_DTYPES.get(name)

#: How plain tensors are read (``--reader``): ``auto`` takes ``mmap`` on CPU and ``pread`` on GPUs.
READER_MODES = ("auto", "mmap", "pread")


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives: its file and the absolute byte range of its data in that file.

    ``format`` names the reader that understands the bytes (``safetensors``: a plain little-endian array of
    ``dtype``); ``byteorder`` is ``"big"`` for a file written big-endian (GGUF, PyTorch), whose plain tensors the
    readers byte-swap block by block.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    shard: Path
    begin: int  # absolute file offset of the first byte
    end: int  # absolute file offset one past the last byte
    format: str = "safetensors"
    byteorder: str = "little"  # "big": a plain dtype's elements are byte-swapped as they are read (io.reader.to_native)

    @property
    def plain(self) -> bool:
        """Stored as a little-endian array of one of ``DTYPES`` (read as is); else its format decodes it."""
        return self.dtype in DTYPES

    @property
    def itemsize(self) -> int:
        """Bytes per element of a plain dtype (sub-byte types round up; they are never read)."""
        if self.dtype in DTYPES:
            return DTYPES[self.dtype][0]
        return -(-UNREADABLE_DTYPES[self.dtype] // 8) if self.dtype in UNREADABLE_DTYPES else max(1, self.nbytes // max(self.numel, 1))

    @property
    def unreadable(self) -> str | None:
        """Why streamscope cannot analyse this tensor's values, or None when it can."""
        if self.dtype in UNREADABLE_DTYPES:
            kind = "complex" if self.dtype.startswith("C") else "sub-byte float"
            return f"dtype {self.dtype} ({kind}) is not analysed"
        if self.dtype not in DTYPES:  # a format's own encoding (GGUF quantization): the format says
            from streamscope.io.formats import FORMATS  # imported here: the formats' modules import this one

            undecoded = FORMATS[self.format].undecoded
            return undecoded(self) if undecoded else f"{self.format} type {self.dtype} has no decoder"
        import torch

        if not hasattr(torch, DTYPES[self.dtype][1]):
            return f"dtype {self.dtype} needs a newer torch (torch.{DTYPES[self.dtype][1]})"
        return None

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, DTYPES[self.dtype][1])

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    @property
    def rows(self) -> int:
        """Rows of the tensor seen as a matrix (first dim x the rest); 1 for scalars and vectors."""
        return self.shape[0] if len(self.shape) >= 2 else 1

    @property
    def cols(self) -> int:
        return self.numel // self.rows if self.rows else 0

    @property
    def is_matrix(self) -> bool:
        return len(self.shape) >= 2


@dataclass(frozen=True)
class Block:
    """Element range ``[start, stop)`` of a tensor; covers whole rows when the tensor has two or more dims."""

    start: int
    stop: int
    row_start: int
    row_stop: int

    @property
    def numel(self) -> int:
        return self.stop - self.start


def whole(info: TensorInfo) -> Block:
    """The one block that is the whole tensor."""
    return Block(0, info.numel, 0, info.rows if info.is_matrix else 1)


def plan_blocks(info: TensorInfo, max_elems: int, align: int = 1) -> list[Block]:
    """Split a tensor into blocks of at most ``max_elems`` elements (at least one whole row each; with ``align``,
    a multiple of that many rows, e.g. whole attention heads)."""
    n = info.numel
    if n == 0:
        return []
    if len(info.shape) < 2:
        step = max(1, max_elems)
        return [Block(s, min(n, s + step), 0, 1) for s in range(0, n, step)]
    cols = info.cols
    rows_per = max(align, max_elems // max(cols, 1) // align * align)
    return [
        Block(r * cols, min(info.rows, r + rows_per) * cols, r, min(info.rows, r + rows_per))
        for r in range(0, info.rows, rows_per)
    ]


@dataclass
class ShardFile:
    """One parsed file of a checkpoint: its tensors and what its header says besides."""

    path: Path
    header_bytes: int
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str] = field(default_factory=dict)
    size: int = 0
    format: str = "safetensors"
    config: dict | None = None  # what the file's own metadata says of the model (GGUF), used without a config.json
