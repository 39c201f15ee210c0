"""Handles for reading tensors yourself: ``Checkpoint`` (an opened index) and ``Tensor`` (one tensor's blocks).

Nothing is read until a handle is asked for blocks; each block is read on its own, so any tensor can be
streamed under a fixed amount of memory.
"""

from __future__ import annotations

from collections.abc import ItemsView, KeysView, Mapping, ValuesView
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from streamscope.io.checkpoint import CheckpointIndex
from streamscope.io.names import NameInfo, classify
from streamscope.io.tensor import Block, TensorInfo, plan_blocks
from streamscope.units import parse_bytes

if TYPE_CHECKING:
    import pandas as pd
    import torch


@dataclass(repr=False)
class Tensor:
    """A handle on one tensor of a checkpoint; reading happens only when asked."""

    info: TensorInfo

    def __repr__(self) -> str:
        return f"<Tensor {self.info.name!r} {self.info.dtype} {tuple(self.info.shape)}>"

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def shape(self) -> tuple[int, ...]:
        return self.info.shape

    @property
    def dtype(self) -> str:
        return self.info.dtype

    @property
    def kind(self) -> NameInfo:
        """Layer index, block type and module of the tensor, from its name."""
        return classify(self.info.name)

    def blocks(self, max_bytes: int | str = "64MB", dtype: "torch.dtype | None" = None) -> Iterator["torch.Tensor"]:
        """Yield the tensor as blocks of whole rows in ``dtype`` (float32 by default), each at most ``max_bytes``.

        Tensors with two or more dims come as ``(rows, cols)`` matrices (trailing dims flattened); vectors
        and scalars as flat pieces. Each block is a fresh tensor.

        Example:
            >>> total = sum(float(b.double().square().sum()) for b in t.blocks("16MB"))  # doctest: +SKIP
        """
        import torch

        dtype = dtype or torch.float32
        max_elems = max(1, parse_bytes(max_bytes, "max_bytes") // torch.empty((), dtype=dtype).element_size())
        for block in plan_blocks(self.info, max_elems):
            yield read_rows(self.info, block, dtype)

    def read(self, dtype: "torch.dtype | None" = None) -> "torch.Tensor":
        """The whole tensor in ``dtype`` (float32 by default) with its own shape, for tensors that fit in memory."""
        import torch

        dtype = dtype or torch.float32
        if self.info.numel == 0:
            return torch.empty(self.info.shape, dtype=dtype)
        parts = list(self.blocks(max_bytes=max(1, self.info.numel) * 8, dtype=dtype))
        return parts[0].reshape(self.info.shape)

    def to_dask(self, max_bytes: int | str = "64MB"):
        """A lazy dask array of float32 values, chunked by rows; nothing is read until computed.

        Example:
            >>> t.to_dask().std().compute()  # doctest: +SKIP
        """
        import dask.array as da

        arr = LazyRows(self.info)
        step = parse_bytes(max_bytes, "max_bytes") // 4
        chunks = (max(1, step // max(arr.shape[1], 1)), -1) if arr.ndim == 2 else (max(1, step),)
        return da.from_array(arr, chunks=chunks, asarray=True, fancy=False, name=f"streamscope-{self.info.name}-{self.info.begin}")


class LazyRows:
    """Array-like over a tensor's rows for ``dask.array.from_array``; picklable (path and offsets only)."""

    def __init__(self, info: TensorInfo):
        import numpy as np

        self.info = info
        self.shape = (info.rows, info.cols) if info.is_matrix else (info.numel,)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.float32)

    def __getitem__(self, key):
        import numpy as np

        key = key if isinstance(key, tuple) else (key,)
        rows = key[0] if isinstance(key[0], slice) else slice(key[0], key[0] + 1)
        start, stop, _ = rows.indices(self.shape[0])
        stop = max(start, stop)
        if self.ndim == 2:
            cols = self.shape[1]
            if stop == start:
                return np.empty((0, cols), np.float32)[(slice(None), *key[1:])]
            out = read_rows(self.info, Block(start * cols, stop * cols, start, stop)).numpy().reshape(stop - start, cols)
            return out[(slice(None), *key[1:])]
        if stop == start:
            return np.empty(0, np.float32)
        return read_rows(self.info, Block(start, stop, 0, 1)).numpy().reshape(-1)


def read_rows(info: TensorInfo, block: Block, dtype=None):
    """One block as a fresh float tensor (``dtype``, float32 by default), ``(rows, cols)`` for matrices
    (``io.reader.read_rows``, imported on first use: it brings torch)."""
    import torch

    from streamscope.io.reader import read_rows as read

    return read(info, block, dtype or torch.float32)


@dataclass(repr=False, eq=False)
class Checkpoint(Mapping):
    """An opened checkpoint: a read-only mapping of tensor names to ``Tensor`` handles, in the order the bytes
    lie on disk. Opening reads headers only; a handle reads its tensor only when asked.

    Example:
        >>> ckpt = streamscope.open("SmolLM2-135M/")  # doctest: +SKIP
        >>> ckpt  # doctest: +SKIP
        <Checkpoint 'SmolLM2-135M' safetensors, 272 tensors, 134.5M params, 1 shard>
        >>> "model.embed_tokens.weight" in ckpt, len(ckpt), next(iter(ckpt))  # doctest: +SKIP
        (True, 272, 'model.embed_tokens.weight')
        >>> {name: t.shape for name, t in ckpt.items() if "layers.0." in name}  # doctest: +SKIP
    """

    index: CheckpointIndex

    @property
    def path(self) -> Path:
        return self.index.path

    @property
    def config(self) -> dict | None:
        return self.index.config

    def __len__(self) -> int:
        return len(self.index)

    def __iter__(self) -> Iterator[str]:
        return iter(self.index.tensors)

    def __contains__(self, name: object) -> bool:
        return name in self.index.tensors

    def __getitem__(self, name: str) -> Tensor:
        try:
            return Tensor(self.index.tensors[name])
        except (KeyError, TypeError):
            raise KeyError(f"{self.index.path}: no tensor named {name!r}") from None

    def keys(self) -> KeysView[str]:
        return KeysView(self)

    def items(self) -> ItemsView[str, Tensor]:
        return ItemsView(self)

    def values(self) -> ValuesView[Tensor]:
        return ValuesView(self)

    def names(self) -> list[str]:
        return list(self.index.tensors)

    def __repr__(self) -> str:
        return f"<Checkpoint {self.index.summary()}>"

    def metadata(self) -> "pd.DataFrame":
        """One row per tensor: name, shape, dtype, numel, bytes, shard, layer index, block type."""
        import pandas as pd

        rows = []
        for t in self.index:
            k = self.index.names[t.name]
            rows.append({"tensor": t.name, "shape": t.shape, "dtype": t.dtype, "numel": t.numel, "nbytes": t.nbytes,
                         "shard": t.shard.name, "layer_index": k.layer_index, "block_type": k.block_type})  # fmt: skip
        return pd.DataFrame(rows)
