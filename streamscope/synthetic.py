"""Synthetic checkpoints for tests, benchmarks and ``streamscope bench``.

``write_safetensors`` streams tensors to disk block by block, so a 2.5 GB embedding is written without ever
holding it in memory. Generated weights have realistic structure: a decaying spectrum (a low-rank part plus
noise) and a few heavy-tailed input channels, so spectral and quantization figures mean something.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from streamscope.io.tensor import DTYPES

_TORCH_TO_ST = {getattr(torch, v[1]): k for k, v in DTYPES.items()}


@dataclass
class Spec:
    """A tensor to write: ``fill(row_start, row_stop)`` returns those rows (any float dtype)."""

    dtype: str
    shape: tuple[int, ...]
    fill: Callable[[int, int], torch.Tensor]


def structured(shape: tuple[int, ...], seed: int = 0, scale: float = 0.02, rank: int = 16, heavy_channels: int = 4) -> Callable[[int, int], torch.Tensor]:
    """Rows of a weight-like matrix: noise + a decaying low-rank part, with a few heavy input channels."""
    rows, cols = (shape[0], math.prod(shape[1:])) if len(shape) >= 2 else (1, math.prod(shape))
    g = torch.Generator().manual_seed(seed)
    right = torch.randn(rank, cols, generator=g) * (0.7 ** torch.arange(rank, dtype=torch.float32))[:, None]
    col_scale = torch.ones(cols)
    col_scale[torch.randperm(cols, generator=g)[:heavy_channels]] = 20.0

    def fill(r0: int, r1: int) -> torch.Tensor:
        gb = torch.Generator().manual_seed(seed * 1_000_003 + r0)
        left = torch.randn(r1 - r0, rank, generator=gb)
        block = torch.randn(r1 - r0, cols, generator=gb)
        block.addmm_(left, right, alpha=2.0)
        block.mul_(col_scale).mul_(scale)
        return block

    return fill


def constant(value: float, shape: tuple[int, ...]) -> Callable[[int, int], torch.Tensor]:
    cols = math.prod(shape[1:]) if len(shape) >= 2 else math.prod(shape)
    return lambda r0, r1: torch.full((r1 - r0, cols), value)


def write_safetensors(path: str | Path, specs: dict[str, Spec], metadata: dict[str, str] | None = None, block_bytes: int = 64 << 20) -> Path:
    """Write a safetensors file, generating each tensor in row blocks of about ``block_bytes``."""
    path = Path(path)
    header: dict = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for name, spec in specs.items():
        nbytes = math.prod(spec.shape) * DTYPES[spec.dtype][0]
        header[name] = {"dtype": spec.dtype, "shape": list(spec.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for spec in specs.values():
            rows = spec.shape[0] if len(spec.shape) >= 2 else 1
            cols = math.prod(spec.shape[1:]) if len(spec.shape) >= 2 else math.prod(spec.shape)
            step = max(1, block_bytes // max(1, cols * 4))
            for r0 in range(0, rows, step):
                r1 = min(rows, r0 + step)
                block = spec.fill(r0, r1).reshape(-1).to(getattr(torch, DTYPES[spec.dtype][1]))
                f.write(block.contiguous().view(torch.uint8).numpy().tobytes())
    return path


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor]) -> Path:
    """Write in-memory tensors (any supported dtype) as one safetensors file."""
    specs = {
        n: Spec(_TORCH_TO_ST[t.dtype], tuple(t.shape), (lambda t: lambda r0, r1: t.reshape(max(1, t.shape[0] if t.dim() >= 2 else 1), -1)[r0:r1])(t))
        for n, t in tensors.items()
    }
    return write_safetensors(path, specs)


#: Layouts for benchmarks: name -> list of (tensor name, shape).
LAYOUTS: dict[str, list[tuple[str, tuple[int, ...]]]] = {
    "llama-7b": [
        ("model.layers.0.input_layernorm.weight", (4096,)),
        ("model.layers.0.self_attn.q_proj.weight", (4096, 4096)),
        ("model.layers.0.self_attn.k_proj.weight", (4096, 4096)),
        ("model.layers.0.self_attn.v_proj.weight", (4096, 4096)),
        ("model.layers.0.self_attn.o_proj.weight", (4096, 4096)),
        ("model.layers.0.post_attention_layernorm.weight", (4096,)),
        ("model.layers.0.mlp.gate_proj.weight", (11008, 4096)),
        ("model.layers.0.mlp.up_proj.weight", (11008, 4096)),
        ("model.layers.0.mlp.down_proj.weight", (4096, 11008)),
    ],
    "qwen2.5-72b-embedding": [("model.embed_tokens.weight", (152064, 8192))],
    "qwen2.5-0.5b-embedding": [("model.embed_tokens.weight", (151936, 896))],
    "small": [
        ("model.embed_tokens.weight", (8192, 512)),
        ("model.layers.0.input_layernorm.weight", (512,)),
        ("model.layers.0.self_attn.q_proj.weight", (512, 512)),
        ("model.layers.0.mlp.down_proj.weight", (512, 1408)),
        ("model.norm.weight", (512,)),
    ],
}


def write_layout(directory: str | Path, layout: str, dtype: str = "BF16", seed: int = 0) -> Path:
    """Write the named layout as ``model.safetensors`` in ``directory`` (reused if already there)."""
    directory = Path(directory)
    path = directory / "model.safetensors"
    if path.exists():
        return path
    specs = {}
    for i, (name, shape) in enumerate(LAYOUTS[layout]):
        fill = constant(1.0, shape) if "norm" in name else structured(shape, seed=seed + i)
        specs[name] = Spec(dtype, shape, fill)
    tmp = write_safetensors(directory / "model.safetensors.tmp", specs)
    tmp.rename(path)
    return path


def write_sized(directory: str | Path, layout: str, size: int, dtype: str = "BF16", seed: int = 0) -> Path:
    """A sharded checkpoint of about ``size`` bytes: the layout's tensors repeated as layers, one shard each.

    Reused when ``directory`` already holds it (the index JSON is written last). Layer-free layouts (one
    embedding) are written once, whatever the size.
    """
    directory = Path(directory)
    index_path = directory / "model.safetensors.index.json"
    if index_path.exists():
        return directory
    tensors = LAYOUTS[layout]
    nbytes = lambda keep: sum(math.prod(shape) for name, shape in tensors if keep(name)) * DTYPES[dtype][0]  # noqa: E731
    per_layer, fixed = nbytes(lambda n: ".layers.0." in n), nbytes(lambda n: ".layers.0." not in n)
    layers = max(1, math.ceil((size - fixed) / per_layer)) if per_layer else 1
    weight_map = {}
    for layer in range(layers):
        shard = f"model-{layer + 1:05d}-of-{layers:05d}.safetensors"
        specs = {}
        for i, (name, shape) in enumerate(tensors):
            if ".layers.0." not in name and layer > 0:
                continue  # embeddings and the final norm live in the first shard only
            name = name.replace(".layers.0.", f".layers.{layer}.")
            fill = constant(1.0, shape) if "norm" in name else structured(shape, seed=seed + 100 * layer + i)
            specs[name] = Spec(dtype, shape, fill)
            weight_map[name] = shard
        write_safetensors(directory / shard, specs)
    index_path.write_text(json.dumps({"metadata": {"total_size": fixed + per_layer * layers}, "weight_map": weight_map}))
    return directory
