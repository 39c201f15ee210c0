"""The format seam: which reader understands a file, chosen by suffix, then by its first bytes.

A format is a ``Format`` entry in ``FORMATS``: how to recognise its files (``suffixes``, ``sniff`` on the first
16 bytes), how to parse one file's header into a ``ShardFile`` (``open_file``: tensor infos, metadata, no
tensor byte read), and the suffix of its shard index (``index_suffix``: a JSON ``weight_map`` from tensor
name to file). A tensor whose dtype is one of ``io.tensor.DTYPES`` is a little-endian array, which
``io.reader.RawReader`` reads zero-copy whatever the format; any other encoding (GGUF's quantized blocks) is
decoded by its format's ``read_float(info, block) -> float32 tensor`` (``undecoded(info)`` says why a tensor
cannot be decoded). ``io.reader`` makes that choice for every caller.

Adding a format is one file with its header parser plus one ``Format`` line below.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from streamscope.errors import CheckpointError
from streamscope.io import gguf, pytorch, safetensors
from streamscope.io.tensor import Block, ShardFile, TensorInfo


@dataclass(frozen=True)
class Format:
    name: str
    suffixes: tuple[str, ...]
    index_suffix: str
    sniff: Callable[[bytes], bool]
    open_file: Callable[[Path], ShardFile]
    read_float: Callable[[TensorInfo, Block], object] | None = None
    #: why a tensor of the format's own encoding cannot be decoded (``TensorInfo.unreadable``), None when it can
    undecoded: Callable[[TensorInfo], str | None] | None = None


FORMATS: dict[str, Format] = {
    "safetensors": Format("safetensors", (".safetensors",), ".safetensors.index.json", safetensors.sniff,
                          safetensors.SafetensorsFile.from_path),  # fmt: skip
    "gguf": Format("gguf", (".gguf",), ".gguf.index.json", gguf.sniff, gguf.open_file, read_float=gguf.read_float,
                   undecoded=gguf.undecoded),  # fmt: skip
    "pytorch": Format("pytorch", (".bin", ".pt", ".pth"), ".bin.index.json", pytorch.sniff, pytorch.open_file),
}

#: Recognised by its first bytes but not readable: what to tell the user (a file with a PyTorch suffix is the
#: pytorch reader's to refuse).
_OTHER = (
    (lambda head: head[:1] == b"\x80",
     "a legacy (pre-zip) PyTorch pickle, which streamscope does not unpickle; re-save it with torch.save or "
     "transformers' save_pretrained(safe_serialization=True)"),
)


def detect(path: Path) -> Format:
    """The format of one file: by suffix first, then by its first bytes.

    Raises:
        CheckpointError: naming the file and what it seems to be instead.
    """
    for fmt in FORMATS.values():
        if path.name.endswith(fmt.suffixes):
            return fmt
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read the file: {e.strerror or e}") from e
    for fmt in FORMATS.values():
        if fmt.sniff(head):
            return fmt
    for matches, what in _OTHER:
        if matches(head):
            raise CheckpointError(f"{path}: not a checkpoint file streamscope can read but {what}")
    known = ", ".join(s for f in FORMATS.values() for s in f.suffixes)
    raise CheckpointError(f"{path}: not a checkpoint file streamscope can read (known formats: {known})")


def shards_in(directory: Path) -> tuple[Format, list[Path], Path | None] | None:
    """The first format with files in ``directory``: ``(format, shard files sorted, index file or None)``."""
    for fmt in FORMATS.values():
        indexes = sorted(directory.glob(f"*{fmt.index_suffix}"))
        files = sorted(p for s in fmt.suffixes for p in directory.glob(f"*{s}"))
        if indexes or files:
            return fmt, files, (indexes[0] if indexes else None)
    return None


def other_files(directory: Path) -> list[str]:
    """Names of files in ``directory`` that look like checkpoints of other kinds (for hints)."""
    return sorted(p.name for p in directory.iterdir() if p.suffix in (".ckpt", ".h5", ".msgpack", ".onnx"))
