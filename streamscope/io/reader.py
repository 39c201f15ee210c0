"""Every place tensor bytes are read: blocks of whole rows, zero-copy from a memory map or into buffers.

Two ways, one interface (``RawReader.blocks``):
- ``mmap`` (CPU): each block is a view of a private map of the shard, so kernels read the page cache
  directly with no copy. Pages touched through a map count in the process's RSS until they are unmapped, so
  after each block its pages are released with ``madvise(MADV_DONTNEED)`` (the page cache keeps them) and
  the next block is announced with ``MADV_WILLNEED`` so the kernel reads ahead on a cold cache.
- ``pread`` (GPU staging, or where ``madvise`` is missing): blocks are read into two reused (pinned)
  buffers, the next one on a helper thread while the current one is computed on.
Either way RSS stays at the size of one or two blocks, whatever the size of the file. ``--reader`` chooses
(``io.tensor.READER_MODES``); ``auto`` takes ``mmap`` on CPU and ``pread`` on GPUs.

Those two ways read plain dtypes (``io.tensor.DTYPES``: arrays as stored). Every other encoding (GGUF's quantized
blocks) is decoded to float32 by its format (``io.formats.Format.read_float``), behind the same calls: callers
never ask which kind a tensor is. ``read_rows`` reads one block on its own, for handles and the forward pass.
"""

from __future__ import annotations

import errno
import mmap
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

import numpy as np
import torch

from streamscope.io.tensor import Block, TensorInfo, plan_blocks


def end_of_file(path, at: int, size: int | None = None) -> OSError:
    """The error of every reader when a file ends before a tensor's bytes do (truncated after it was indexed)."""
    where = f"{path}: " if path is not None else ""
    length = f" (the file is {size} bytes)" if size is not None else ""
    return OSError(errno.EIO, f"{where}unexpected end of file at byte {at}{length}: the file is shorter than its header says "
                              "(truncated or still being written?); re-download or re-save it")  # fmt: skip


def read_exact(fd: int, buf: memoryview, offset: int, path=None) -> None:
    """Fill ``buf`` from ``fd`` at ``offset``, looping over short reads.

    Raises:
        OSError: the file ends first (``end_of_file``, naming ``path``).
    """
    done = 0
    while done < len(buf):
        got = os.preadv(fd, [buf[done:]], offset + done)
        if got <= 0:
            raise end_of_file(path, offset + done)
        done += got


def to_native(info: TensorInfo, raw: torch.Tensor) -> torch.Tensor:
    """``raw`` (a writable CPU tensor of ``info``'s stored bytes) in the host's byte order, swapped in place when the
    file is big-endian; returned for chaining."""
    if info.byteorder != sys.byteorder and raw.element_size() > 1 and raw.numel():
        flat = raw.reshape(-1).view(torch.uint8).numpy()
        flat.view(f"u{raw.element_size()}").byteswap(inplace=True)
    return raw


_PAGE = mmap.PAGESIZE
_CAN_MADVISE = hasattr(mmap.mmap, "madvise") and hasattr(mmap, "MADV_DONTNEED")


class RawReader:
    """Yields the blocks of a tensor as typed views; a yielded block is valid until the next is requested.

    Args:
        max_block_bytes: the largest block, in stored bytes (sizes the ``pread`` buffers).
        mode: ``"mmap"`` (zero-copy, CPU) or ``"pread"`` (copies into reused buffers, pinned for GPU staging).
    """

    def __init__(self, max_block_bytes: int, pin_memory: bool = False, mode: str = "mmap"):
        self.capacity = max_block_bytes
        self.mode = mode if _CAN_MADVISE or mode == "pread" else "pread"
        self._pin = pin_memory
        self._buffers: list[torch.Tensor] = []
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="streamscope-read") if self.mode == "pread" else None

    def close(self) -> None:
        if self._pool:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> "RawReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def blocks(self, info: TensorInfo, blocks: list[Block]) -> Iterator[tuple[Block, torch.Tensor]]:
        """Yield ``(block, values)``, flat: a typed view (the tensor's dtype) of a plain tensor's stored bytes, or the
        float32 values its format decodes."""
        if not blocks:
            return
        if not info.plain:
            decode = _decoder(info)
            for block in blocks:
                yield block, decode(info, block).reshape(-1)
            return
        if self.mode == "mmap":
            yield from self._mapped(info, blocks)
            return
        if not self._buffers:
            self._buffers = [torch.empty(self.capacity, dtype=torch.uint8, pin_memory=self._pin) for _ in range(2)]
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

    def _mapped(self, info: TensorInfo, blocks: list[Block]) -> Iterator[tuple[Block, torch.Tensor]]:
        lo = info.begin // _PAGE * _PAGE  # map only this tensor's pages
        length = info.end - lo
        fd = os.open(info.shard, os.O_RDONLY)
        try:
            _check_size(fd, info, info.end)  # the map covers the whole tensor
            mm = mmap.mmap(fd, length, access=mmap.ACCESS_COPY, offset=lo)
            # the descriptor stays open for one fstat per block: a page past the end of a file truncated under the
            # map would kill the process with SIGBUS, so each block is checked against the file's size first
            try:
                spans = [(info.begin - lo + b.start * info.itemsize, info.begin - lo + b.stop * info.itemsize) for b in blocks]
                _advise(mm, *spans[0], mmap.MADV_WILLNEED)
                for i, (block, (a, b)) in enumerate(zip(blocks, spans)):
                    _check_size(fd, info, lo + b)
                    if i + 1 < len(blocks):
                        _advise(mm, *spans[i + 1], mmap.MADV_WILLNEED)
                    raw = torch.frombuffer(mm, dtype=torch.uint8, count=b - a, offset=a).view(info.torch_dtype)
                    yield block, to_native(info, raw)  # a private map: a big-endian block is swapped in its own pages
                    del raw
                    _advise(mm, a, b, mmap.MADV_DONTNEED)
            finally:
                try:
                    mm.close()
                except BufferError:  # a caller still holds a view; the map goes when that view does
                    pass
        finally:
            os.close(fd)

    def column_slab(self, info: TensorInfo, c0: int, c1: int, block_elems: int | None = None) -> torch.Tensor:
        """Columns ``[c0, c1)`` of a matrix as a new contiguous tensor.

        A plain tensor's slab has its stored dtype: every row's slice is read through a map (strided), whose pages
        are then released. A decoded format's slab is float32: its rows are decoded whole, ``block_elems`` values
        at a time (by default as many float32 values as one buffer holds), and the slab is cut from them.
        """
        if not info.plain:
            decode, step = _decoder(info), block_elems or max(1, self.capacity // 4)
            return torch.cat([decode(info, b).view(b.row_stop - b.row_start, -1)[:, c0:c1].clone() for b in plan_blocks(info, step)])
        lo = info.begin // _PAGE * _PAGE
        with open(info.shard, "rb") as fh:
            _check_size(fh.fileno(), info, info.end)
            mm = mmap.mmap(fh.fileno(), info.end - lo, access=mmap.ACCESS_COPY, offset=lo)
        try:
            whole = torch.frombuffer(mm, dtype=torch.uint8, count=info.nbytes, offset=info.begin - lo).view(info.torch_dtype)
            # a copy even when the slab is every column: the map is released below
            slab = to_native(info, whole.view(info.rows, info.cols)[:, c0:c1].clone(memory_format=torch.contiguous_format))
            del whole
            if _CAN_MADVISE:
                mm.madvise(mmap.MADV_DONTNEED)
            return slab
        finally:
            try:
                mm.close()
            except BufferError:
                pass

    def _read(self, fd: int, info: TensorInfo, block: Block, slot: int) -> torch.Tensor:
        nbytes = block.numel * info.itemsize
        buf = self._buffers[slot][:nbytes]
        read_exact(fd, memoryview(buf.numpy()), info.begin + block.start * info.itemsize, info.shard)
        return to_native(info, buf.view(info.torch_dtype))


def _check_size(fd: int, info: TensorInfo, end: int) -> None:
    size = os.fstat(fd).st_size
    if size < end:
        raise end_of_file(info.shard, size, size)


def _advise(mm: mmap.mmap, start: int, stop: int, advice: int) -> None:
    a = start // _PAGE * _PAGE
    b = min(len(mm), -(-stop // _PAGE) * _PAGE)
    if b > a:
        mm.madvise(advice, a, b - a)


def read_rows(info: TensorInfo, block: Block, dtype: torch.dtype | None = torch.float32) -> torch.Tensor:
    """One block on its own, as a fresh tensor shaped ``(rows, cols)`` for matrices (flat otherwise).

    Args:
        dtype: the values' dtype; None keeps a plain tensor's stored dtype (a decoded format's values are float32).
    """
    if info.plain:
        raw = np.empty(block.numel * info.itemsize, dtype=np.uint8)
        fd = os.open(info.shard, os.O_RDONLY)
        try:
            read_exact(fd, memoryview(raw), info.begin + block.start * info.itemsize, info.shard)
        finally:
            os.close(fd)
        out = to_native(info, torch.from_numpy(raw).view(info.torch_dtype))
    else:
        out = _decoder(info)(info, block)
    out = out if dtype is None else out.to(dtype)
    return out.view(block.row_stop - block.row_start, info.cols) if info.is_matrix else out.reshape(-1)


def _decoder(info: TensorInfo):
    from streamscope.io.formats import FORMATS  # imported here: the format modules read through this one

    return FORMATS[info.format].read_float


def read_into(info: TensorInfo, out: torch.Tensor, stage: Callable[[torch.dtype, int], torch.Tensor], step_bytes: int) -> None:
    """Read a plain tensor's stored values into ``out`` (its number of elements, any dtype) with ``pread``.

    Stored in ``out``'s dtype, the bytes land in ``out`` directly; else ``stage(stored dtype, n)`` gives a reused
    buffer that at most ``step_bytes`` of stored values pass through, each piece converted into ``out``.
    """
    flat = out.view(-1)
    fd = os.open(info.shard, os.O_RDONLY)
    try:
        if info.torch_dtype == out.dtype:
            if info.nbytes:
                read_exact(fd, memoryview(flat.view(torch.uint8).numpy()), info.begin, info.shard)
                to_native(info, flat)
            return
        item = info.nbytes // max(info.numel, 1)
        step = max(1, step_bytes // max(item, 1))
        buffer = stage(info.torch_dtype, min(step, info.numel))
        for s0 in range(0, info.numel, step):
            n = min(step, info.numel - s0)
            read_exact(fd, memoryview(buffer[:n].view(torch.uint8).numpy()), info.begin + s0 * item, info.shard)
            flat[s0 : s0 + n].copy_(to_native(info, buffer[:n]))
    finally:
        os.close(fd)


def prefetch(info: TensorInfo, chunk_bytes: int) -> None:
    """Have the operating system read a tensor's bytes into the page cache, holding no process memory; where
    ``posix_fadvise`` is missing, the bytes are read through a buffer of ``chunk_bytes`` instead, to that effect."""
    if not info.nbytes:
        return
    fd = os.open(info.shard, os.O_RDONLY)
    try:
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, info.begin, info.nbytes, os.POSIX_FADV_WILLNEED)
            return
        chunk = bytearray(min(info.nbytes, chunk_bytes))
        for at in range(0, info.nbytes, len(chunk)):
            os.preadv(fd, [memoryview(chunk)[: min(len(chunk), info.nbytes - at)]], info.begin + at)
    finally:
        os.close(fd)
