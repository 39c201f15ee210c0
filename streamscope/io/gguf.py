"""GGUF files (llama.cpp), read through the ``gguf`` package: its reader for the header, its dequantizers for data.

Plain tensors (F32, F16, BF16, F64, I8-I64) are arrays in the file's byte order (the reader detects it) and
stream like safetensors, byte-swapped per block in a big-endian file; quantized ones of a big-endian file are listed
as skipped. Quantized ones
(Q4_0, Q8_0, Q4_K, ...) are dequantized one block of rows at a time (``read_float``): a row of ``cols`` values
is ``cols / block_size`` quantization blocks of ``type_size`` bytes, so rows are byte ranges and a block of rows
is read with one ``pread``. GGUF lists dimensions innermost first; shapes here are the usual outermost first
(``token_embd.weight``: vocab x hidden). The metadata's architecture, heads, context and layer count become the
checkpoint's config, so ``params`` works without a ``config.json``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from streamscope.errors import HeaderError
from streamscope.io.tensor import Block, ShardFile, TensorInfo

#: GGUF plain types -> safetensors dtype names.
PLAIN = {"F32": "F32", "F16": "F16", "BF16": "BF16", "F64": "F64", "I8": "I8", "I16": "I16", "I32": "I32", "I64": "I64"}
#: GGUF metadata keys (after ``{arch}.``) -> config.json names.
CONFIG_KEYS = {"block_count": "num_hidden_layers", "attention.head_count": "num_attention_heads",
               "attention.head_count_kv": "num_key_value_heads", "embedding_length": "hidden_size",
               "feed_forward_length": "intermediate_size", "context_length": "max_position_embeddings",
               "vocab_size": "vocab_size", "expert_count": "num_local_experts", "attention.key_length": "head_dim"}  # fmt: skip


class GGUFError(HeaderError):
    """A GGUF file cannot be indexed."""

    hint = "the file may be truncated or not a GGUF file; re-download it or convert it again (llama.cpp's convert_hf_to_gguf.py)"


class GGUFMissingError(GGUFError):
    hint = "pip install 'streamscope[gguf]' (the gguf package reads GGUF headers and dequantizes)"


def sniff(head: bytes) -> bool:
    return head[:4] == b"GGUF"


def _value(field):
    try:
        return field.contents()
    except Exception:  # noqa: BLE001 - an odd field is skipped, not fatal
        return None


def open_file(path: Path) -> ShardFile:
    """Parse a GGUF header; no tensor data is read.

    Raises:
        GGUFError: the file is not a readable GGUF file, naming it and the problem.
    """
    try:
        from gguf import GGUFReader, quants
    except ImportError as e:
        raise GGUFMissingError(f"{path}: reading GGUF needs the gguf package: pip install 'streamscope[gguf]'") from e
    try:
        reader = GGUFReader(path, "r")
    except Exception as e:  # noqa: BLE001 - the reader raises ValueError, IndexError, struct errors...
        raise GGUFError(f"{path}: invalid GGUF file: {type(e).__name__}: {str(e)[:200]}") from e
    meta = {k: _value(f) for k, f in reader.fields.items() if not k.startswith("GGUF.") and not k.startswith("tokenizer.ggml.")}
    arch = meta.get("general.architecture") if isinstance(meta.get("general.architecture"), str) else None
    config = {"model_type": arch, "gguf": True} if arch else {"gguf": True}
    if "tokenizer.ggml.tokens" in reader.fields:
        config["vocabulary"] = True  # token texts in the metadata: io.tokenizer decodes ids with them
    for key, name in CONFIG_KEYS.items():
        v = meta.get(f"{arch}.{key}")
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            config[name] = int(v)
    size = path.stat().st_size
    byteorder = "big" if getattr(reader, "endianess", None) is not None and reader.endianess.name == "BIG" else "little"
    tensors = {}
    for t in reader.tensors:
        qtype = t.tensor_type.name
        dtype = PLAIN.get(qtype, qtype)
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        begin, end = int(t.data_offset), int(t.data_offset) + int(t.n_bytes)
        if end > size:
            raise GGUFError(f"{path}: tensor {t.name!r} runs past the end of the {size}-byte file (truncated?)")
        if dtype not in PLAIN.values() and not hasattr(quants, qtype):
            dtype = f"GGUF_{qtype}"  # no dequantizer in this gguf version: listed as skipped
        tensors[t.name] = TensorInfo(t.name, dtype, shape, path, begin, end, format="gguf", byteorder=byteorder)
    metadata = {k: str(v)[:200] for k, v in meta.items() if isinstance(v, (str, int, float))}
    return ShardFile(path=path, header_bytes=min((t.begin for t in tensors.values()), default=size), tensors=tensors,
                     metadata=metadata, size=size, format="gguf", config=config)  # fmt: skip


def undecoded(info: TensorInfo) -> str | None:
    """Why a tensor of a GGUF encoding cannot be decoded here, or None when it can."""
    kind = info.dtype.removeprefix("GGUF_")
    if info.byteorder != "little":
        return f"big-endian gguf type {kind} is not decoded (only plain dtypes are byte-swapped)"
    return f"gguf type {kind} has no decoder here" if info.dtype.startswith("GGUF_") else None


def read_float(info: TensorInfo, block: Block):
    """Rows ``[row_start, row_stop)`` of a quantized tensor, dequantized to a float32 torch tensor (rows, cols)."""
    import torch
    from gguf import GGMLQuantizationType, quants

    qtype = GGMLQuantizationType[info.dtype]
    rows = info.rows if info.is_matrix else 1
    row_bytes = info.nbytes // max(rows, 1)
    if info.is_matrix:
        start, count = info.begin + block.row_start * row_bytes, (block.row_stop - block.row_start) * row_bytes
        shape = (block.row_stop - block.row_start, row_bytes)
    else:  # a quantized vector: whole tensor at once (vectors are small)
        start, count, shape = info.begin, info.nbytes, (1, info.nbytes)
    from streamscope.io.reader import read_exact

    raw = np.empty(count, np.uint8)
    fd = os.open(info.shard, os.O_RDONLY)
    try:
        read_exact(fd, memoryview(raw), start, info.shard)
    finally:
        os.close(fd)
    values = quants.dequantize(raw.reshape(shape), qtype).astype(np.float32, copy=False)  # (rows, cols)
    if not info.is_matrix:
        values = values.reshape(-1)[block.start : block.stop]
    return torch.from_numpy(np.ascontiguousarray(values))


#: Architectures whose converter (llama.cpp's convert_hf_to_gguf) interleaves the two rotary halves of each
#: q and k head: rows (h, c, j) of the original become (h, j, c) in the GGUF file.
PERMUTED_QK = ("llama",)


def original_names(index, other_names) -> dict[str, tuple[str, int | None]]:
    """Match a GGUF checkpoint's tensors to another checkpoint's names (Hugging Face naming).

    Returns:
        ``{original name: (gguf name, heads)}``; ``heads`` is the number of heads whose rows llama.cpp permuted
        (q: attention heads, k: KV heads), None where the rows are in the original order.
    """
    import gguf as gg

    config = index.config or {}
    arch_name = config.get("model_type")
    arch = {v: k for k, v in gg.MODEL_ARCH_NAMES.items()}.get(arch_name)
    if arch is None:
        return {}
    layers = int(config.get("num_hidden_layers") or 0) or 1 + max((i.layer_index for i in index.names.values() if i.layer_index is not None), default=0)
    names = gg.get_tensor_name_map(arch, layers)
    heads, kv = config.get("num_attention_heads"), config.get("num_key_value_heads") or config.get("num_attention_heads")
    out = {}
    for name in other_names:
        mapped = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if mapped not in index.tensors:
            continue
        permuted = None
        if arch_name in PERMUTED_QK and mapped.endswith(".weight"):
            permuted = heads if ".attn_q." in mapped else kv if ".attn_k." in mapped else None
        out[name] = (mapped, permuted)
    return out
