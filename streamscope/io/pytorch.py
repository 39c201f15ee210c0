"""PyTorch checkpoints (``pytorch_model.bin`` shards, ``.pt``): zip archives read with ``weights_only=True``.

The header step loads the state dict with ``torch.load(weights_only=True, mmap=True)``: only tensors and plain
containers are unpickled (anything else is refused with one line), and no tensor byte is read. Each storage of
the archive is a stored (uncompressed) zip member, so every contiguous tensor is a byte range of the file: its
offset is found from the zip directory and the storage addresses of the memory-mapped load, and from then on it
streams like a safetensors tensor.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

from streamscope.errors import HeaderError
from streamscope.io.tensor import DTYPES, ShardFile, TensorInfo


class PyTorchError(HeaderError):
    """A PyTorch checkpoint cannot be indexed."""

    hint = "the file may be truncated or not a torch.save zip checkpoint; re-download it, or re-save it as safetensors"


class UnsupportedDtypeError(PyTorchError):
    """A tensor's dtype has no reader here (complex, quantized torch dtypes)."""

    hint = "convert or drop that tensor (e.g. torch.view_as_real for complex values) and save the checkpoint again"


def sniff(head: bytes) -> bool:
    return head[:4] == b"PK\x03\x04"


def _members(path: Path) -> list[int]:
    """File offsets of the archive's stored data members (``<name>/data/<key>``)."""
    offsets = []
    with zipfile.ZipFile(path) as z, open(path, "rb") as f:
        for info in z.infolist():
            if "/data/" in info.filename and info.compress_type == zipfile.ZIP_STORED:
                f.seek(info.header_offset)
                local = f.read(30)
                name_len, extra_len = struct.unpack("<HH", local[26:30])
                offsets.append(info.header_offset + 30 + name_len + extra_len)
    return sorted(offsets)


def _byteorder(path: Path) -> str:
    """The archive's ``byteorder`` record (``little`` or ``big``); little when absent, as ``torch.load`` assumes."""
    with zipfile.ZipFile(path) as z:
        name = next((n for n in z.namelist() if n == "byteorder" or n.endswith("/byteorder")), None)
        value = z.read(name).decode("ascii", "replace").strip() if name else "little"
    if value not in ("little", "big"):
        raise PyTorchError(f"{path}: the archive's byteorder record says {value[:20]!r}, expected 'little' or 'big'")
    return value


def open_file(path: Path) -> ShardFile:
    """Index a PyTorch zip checkpoint's tensors by their byte ranges.

    Raises:
        PyTorchError: not a zip checkpoint, a pickle that needs more than ``weights_only``, or no state dict;
            ``UnsupportedDtypeError`` for a dtype streamscope does not read (complex).
    """
    import pickle

    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as e:
        raise PyTorchError(f"{path}: refused: the pickle holds more than tensors, and only weights_only=True loading is "
                          f"allowed ({str(e).splitlines()[0][:160]})") from e  # fmt: skip
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError, zipfile errors, EOFError...
        raise PyTorchError(f"{path}: not a readable PyTorch zip checkpoint: {type(e).__name__}: {str(e)[:200]}") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PyTorchError(f"{path}: holds no flat state dict of tensors (name -> tensor)")
    to_name = {getattr(torch, attr): name for name, (_, attr) in DTYPES.items() if hasattr(torch, attr)}
    members = _members(path)
    byteorder = _byteorder(path)  # torch.load swapped its own map of a big-endian archive; the readers swap per block
    pointers = {t.untyped_storage().data_ptr() for t in state.values() if t.numel()}
    base = (min(pointers) - members[0]) if pointers and members else 0
    if pointers and not all(p - base in set(members) for p in pointers):
        raise PyTorchError(f"{path}: cannot locate the tensors' bytes in the archive (compressed or unusual layout)")
    tensors = {}
    for name, t in state.items():
        if not isinstance(name, str):
            raise PyTorchError(f"{path}: a state-dict key is not a string: {name!r}")
        dtype = to_name.get(t.dtype)
        if dtype is None:
            kind = "complex " if t.is_complex() else ""
            raise UnsupportedDtypeError(f"{path}: tensor {name!r} has {kind}dtype {t.dtype}, which streamscope does not support")
        if not t.is_contiguous():
            raise PyTorchError(f"{path}: tensor {name!r} is a non-contiguous view, which streamscope cannot stream; re-save it contiguous")
        begin = (t.untyped_storage().data_ptr() - base + t.storage_offset() * t.element_size()) if t.numel() else 0
        tensors[name] = TensorInfo(name, dtype, tuple(t.shape), path, begin, begin + t.numel() * t.element_size(), format="pytorch",
                                   byteorder=byteorder)  # fmt: skip
    return ShardFile(path=path, header_bytes=members[0] if members else 0, tensors=tensors, size=path.stat().st_size, format="pytorch")
