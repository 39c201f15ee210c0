"""The format seam: which reader understands a file, chosen by suffix, then by its first bytes.

A format is a ``Format`` entry in ``FORMATS``: how to recognise its files (``suffixes``, ``sniff`` on the first
16 bytes), how to parse one file's header into a ``ShardFile`` (``open_file``: tensor infos, metadata, no
tensor byte read), and the suffix of its shard index (``index_suffix``: a JSON ``weight_map`` from tensor
name to file). ``plain`` formats store each tensor as a little-endian array of its dtype, which
``io.reader.RawReader`` reads zero-copy; a format that stores blocks otherwise (quantized GGUF, say) sets
``plain=False`` and gives ``read_float(info, block) -> float tensor``.

Adding a format is one file with its header parser plus one ``Format`` line below.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from streamscope.errors import CheckpointError
from streamscope.io import safetensors
from streamscope.io.tensor import Block, ShardFile, TensorInfo


@dataclass(frozen=True)
class Format:
    name: str
    suffixes: tuple[str, ...]
    index_suffix: str
    sniff: Callable[[bytes], bool]
    open_file: Callable[[Path], ShardFile]
    plain: bool = True
    read_float: Callable[[TensorInfo, Block], object] | None = None


FORMATS: dict[str, Format] = {
    "safetensors": Format("safetensors", (".safetensors",), ".safetensors.index.json", safetensors.sniff,
                          safetensors.SafetensorsFile.from_path),  # fmt: skip
}

#: Recognised but not readable yet: first bytes or suffix -> what to tell the user.
_OTHER = (
    (lambda head, p: head[:4] == b"GGUF" or p.suffix == ".gguf", "a GGUF file, which streamscope does not read yet"),
    (lambda head, p: head[:4] == b"PK\x03\x04" or p.suffix in (".bin", ".pt", ".pth"),
     "a PyTorch checkpoint, which streamscope does not read yet; save it with "
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
        if matches(head, path):
            raise CheckpointError(f"{path}: not a .safetensors file but {what}")
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
    """Names of files in ``directory`` that look like checkpoints of formats not read yet (for hints)."""
    return sorted(p.name for p in directory.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".gguf"))
