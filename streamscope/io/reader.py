"""Every place tensor bytes are read: blocks of whole rows, read with ``pread`` into reused buffers.

Why ``pread`` and not a memory map: pages touched through a map count in the process's RSS until the map is
dropped, so a scan through a map shows an RSS as large as the file. Reading into a reused buffer keeps RSS at
the size of the buffers while the kernel's page cache still serves repeated reads at memory speed.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from streamscope.io.safetensors import TensorInfo


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


def plan_blocks(info: TensorInfo, max_elems: int) -> list[Block]:
    """Split a tensor into blocks of at most ``max_elems`` elements (at least one whole row each)."""
    n = info.numel
    if n == 0:
        return []
    if len(info.shape) < 2:
        step = max(1, max_elems)
        return [Block(s, min(n, s + step), 0, 1) for s in range(0, n, step)]
    cols = info.cols
    rows_per = max(1, max_elems // max(cols, 1))
    return [
        Block(r * cols, min(info.rows, r + rows_per) * cols, r, min(info.rows, r + rows_per))
        for r in range(0, info.rows, rows_per)
    ]


def read_exact(fd: int, buf: memoryview, offset: int) -> None:
    """Fill ``buf`` from ``fd`` at ``offset``, looping over short reads."""
    done = 0
    while done < len(buf):
        got = os.preadv(fd, [buf[done:]], offset + done)
        if got <= 0:
            raise OSError(f"unexpected end of file at byte {offset + done}")
        done += got


class RawReader:
    """Reads blocks of one or more tensors into a pair of reused byte buffers, one block ahead.

    The next block is read on a helper thread while the caller computes on the current one (``pread`` releases
    the GIL), so disk and compute overlap on a cold cache. A yielded buffer is valid until the next one is
    requested.
    """

    def __init__(self, max_block_bytes: int, pin_memory: bool = False):
        self.capacity = max_block_bytes
        self._buffers = [
            torch.empty(max_block_bytes, dtype=torch.uint8, pin_memory=pin_memory) for _ in range(2)
        ]
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="streamscope-read")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __enter__(self) -> "RawReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def blocks(self, info: TensorInfo, blocks: list[Block]) -> Iterator[tuple[Block, torch.Tensor]]:
        """Yield ``(block, raw)`` where ``raw`` is a typed view (the tensor's dtype) of the block's bytes."""
        if not blocks:
            return
        fd = os.open(info.shard, os.O_RDONLY)
        try:
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, info.begin, info.nbytes, os.POSIX_FADV_SEQUENTIAL)
            pending = self._pool.submit(self._read, fd, info, blocks[0], 0)
            for i, block in enumerate(blocks):
                raw = pending.result()
                if i + 1 < len(blocks):
                    pending = self._pool.submit(self._read, fd, info, blocks[i + 1], (i + 1) % 2)
                yield block, raw
        finally:
            try:
                pending.result()
            finally:
                os.close(fd)

    def _read(self, fd: int, info: TensorInfo, block: Block, slot: int) -> torch.Tensor:
        nbytes = block.numel * info.itemsize
        buf = self._buffers[slot][:nbytes]
        read_exact(fd, memoryview(buf.numpy()), info.begin + block.start * info.itemsize)
        return buf.view(info.torch_dtype)


def read_block_float(info: TensorInfo, block: Block, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Read one block into a fresh tensor of ``dtype``, shaped ``(rows, cols)`` (or flat for vectors)."""
    raw = np.empty(block.numel * info.itemsize, dtype=np.uint8)
    fd = os.open(info.shard, os.O_RDONLY)
    try:
        read_exact(fd, memoryview(raw), info.begin + block.start * info.itemsize)
    finally:
        os.close(fd)
    out = torch.from_numpy(raw).view(info.torch_dtype).to(dtype)
    if len(info.shape) >= 2:
        out = out.view(block.row_stop - block.row_start, info.cols)
    return out
