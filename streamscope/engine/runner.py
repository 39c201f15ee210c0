"""One tensor's single pass through every active analysis, or two tensors side by side (``compare``).

A ``TensorRunner`` holds the per-process working state that is reused across tensors: the reader's buffers,
the device, the kernel's block buffers. ``run`` streams a tensor's blocks once: each block is folded into the
statistics accumulator and handed to every block analysis; then tensor analyses run on the accumulator, in
registry order. ``run_pair`` streams two tensors of equal shape block by block for the weight comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from streamscope.engine.budget import MemoryBudget
from streamscope.engine.options import ScanOptions, resolve_device
from streamscope.io.names import NameInfo, classify
from streamscope.io.reader import RawReader
from streamscope.io.tensor import Block, TensorInfo, plan_blocks
from streamscope.kernels.blockstats import BlockKernel, TensorAccumulator, working_dtype


@dataclass
class TensorResult:
    """What one tensor's pass produced: the JSON record and the arrays for the zarr store."""

    name: str
    record: dict
    arrays: dict[str, np.ndarray]


@dataclass
class TensorContext:
    """What an analysis sees of the tensor it runs on (see ``analyses.registry``): the fields and methods below;
    ``runner`` is the engine's own."""

    info: TensorInfo
    name_info: NameInfo
    device: torch.device
    memory: MemoryBudget
    tokenizer: Path | None
    acc: TensorAccumulator | None = None
    record: dict | None = None
    arrays: dict | None = None
    native: bool = False  # the C kernels may be used (``--native``; whether they are built is the analysis's to ask)
    runner: "TensorRunner | None" = None

    def buffer(self, key: str, n: int, dtype: torch.dtype) -> torch.Tensor:
        """``n`` values of ``dtype`` on the device, contents undefined, reused from tensor to tensor under ``key``
        (fresh pages fault slowly: a visible share of a small tensor's time)."""
        if self.runner is None:
            return torch.empty(n, dtype=dtype, device=self.device)
        return self.runner.kernel.buffer(key, n, dtype)

    def row_blocks(self):
        """Stream the tensor again as ``(row_start, row_stop, (rows, cols) block)`` on the device."""
        return self.runner.row_blocks(self.info)

    def column_slabs(self):
        """Stream a matrix as column slabs ``(rows, width)`` float32, each at most one block of elements."""
        return self.runner.column_slabs(self.info)


class TensorRunner:
    """Per-process working state (reader buffers, device buffers) reused across tensors."""

    def __init__(self, options: ScanOptions, tokenizer: Path | None = None):
        self.options = options
        self.memory = options.memory
        self.device = resolve_device(options.device)
        self.kernel = BlockKernel(self.memory.block_elems, self.device, use_native=options.native)
        self.mode = options.reader if options.reader != "auto" else ("pread" if self.device.type != "cpu" else "mmap")
        self.reader = self._new_reader()
        self._second: RawReader | None = None
        self.tokenizer = tokenizer
        self.active = options.active()

    def _new_reader(self) -> RawReader:
        return RawReader(self.memory.block_elems * 8, pin_memory=self.device.type == "cuda", mode=self.mode)

    def close(self) -> None:
        self.reader.close()
        if self._second is not None:
            self._second.close()

    def context(self, info: TensorInfo) -> TensorContext:
        return TensorContext(info, classify(info.name), self.device, self.memory, self.tokenizer, native=self.options.native, runner=self)

    def run(self, info: TensorInfo, on_bytes: Callable[[int], None] | None = None) -> TensorResult:
        ctx = self.context(info)
        block_types = {t for a in self.active for t in a.row_norms_for}
        blocks = plan_blocks(info, self.memory.block_elems)
        acc = TensorAccumulator.start(info, row_norms=ctx.name_info.block_type in block_types, max_row_bytes=self.memory.analysis_bytes,
                                      row_maxima=any(a.row_maxima for a in self.active),
                                      histogram=any(a.histogram for a in self.active if a.kind != "model"))
        acc.keep_block = len(blocks) == 1 and not acc.exact
        numeric = info.dtype != "BOOL" and info.numel > 0
        block_analyses = [a for a in self.active if a.kind == "block"] if numeric else []
        states = {a.name: a.start(ctx, self.options.options_for(a)) for a in block_analyses}
        need_float = any(a.float_blocks(states[a.name]) if callable(a.float_blocks) else a.float_blocks for a in block_analyses)
        for block, raw in self.reader.blocks(info, blocks):
            x = self.kernel.update(acc, raw, block, values=need_float)
            if block_analyses:
                if x is not None or need_float:
                    x = _matrix(x if x is not None else self.kernel.convert(raw, info), info, block)
                for a in block_analyses:
                    if a.stored:
                        a.update(states[a.name], x, block, self._scratch, stored=raw)
                    else:
                        a.update(states[a.name], x, block, self._scratch)
            if on_bytes:
                on_bytes(info.nbytes * block.numel // max(info.numel, 1))
        ctx.acc, ctx.record, ctx.arrays = acc, {"info": tensor_info_dict(info, ctx.name_info)}, {}
        for a in self.active:
            if a.kind == "block" and a.name in states:
                result = a.finish(states[a.name], ctx)
            elif a.kind == "tensor":
                result = a.compute(ctx, self.options.options_for(a))
            else:
                continue
            if result is not None:
                ctx.record[a.key] = result
        return TensorResult(info.name, ctx.record, ctx.arrays)

    def run_pair(self, a: TensorInfo, b: TensorInfo, rank: int, on_bytes: Callable[[int], None] | None = None,
                 heads: int | None = None) -> TensorResult:  # fmt: skip
        """Weight change from ``a`` to ``b`` (equal shapes), both streamed side by side within the budget.

        ``heads``: ``b`` stores each head's rows with the two rotary halves interleaved (llama.cpp's q/k
        permutation); blocks then hold whole heads and ``b``'s rows are put back in ``a``'s order.
        """
        from streamscope.analyses.compare import weight_delta

        half = self.memory.halves().block_elems
        head_dim = a.rows // heads if heads and a.is_matrix and a.rows % heads == 0 and (a.rows // heads) % 2 == 0 else None
        blocks = plan_blocks(a, half, align=head_dim or 1)
        if self._second is None:
            self._second = self._new_reader()

        def pairs(report: bool = False) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor]]:
            for (block, raw_a), (_, raw_b) in zip(self.reader.blocks(a, blocks), self._second.blocks(b, blocks)):
                xa = _matrix(self._to_device(raw_a, "pair_a"), a, block)
                xb = _matrix(self._to_device(raw_b, "pair_b"), b, block)
                if head_dim:  # (heads, j, c) -> (heads, c, j): the rotary halves back in place
                    rows = xb.shape[0]
                    xb = xb.view(rows // head_dim, head_dim // 2, 2, -1).transpose(1, 2).reshape(rows, -1)
                yield block.row_start, block.row_stop, xa, xb
                if report and on_bytes:
                    # each side's share of its stored bytes: a block format's bits per value are no whole byte
                    on_bytes(block.numel * (a.nbytes / max(a.numel, 1) + b.nbytes / max(b.numel, 1)))

        record = weight_delta(pairs, a.shape, k=rank, scratch=self._scratch, device=self.device)
        return TensorResult(a.name, record, {})

    def _to_device(self, raw: torch.Tensor, key: str) -> torch.Tensor:
        x = self.kernel.buffer(key, raw.numel(), torch.float32)
        x.copy_(raw, non_blocking=self.device.type == "cuda")
        return x

    def _scratch(self, key: str, n: int) -> torch.Tensor:
        return self.kernel.buffer(key, n, torch.float32)

    def row_blocks(self, info: TensorInfo):
        for block, raw in self.reader.blocks(info, plan_blocks(info, self.memory.block_elems)):
            x = self.kernel.buffer("again", raw.numel(), working_dtype(info))
            x.copy_(raw)
            yield block.row_start, block.row_stop, _matrix(x, info, block)

    def column_slabs(self, info: TensorInfo):
        width = max(1, self.memory.block_elems // max(info.rows, 1))
        for c0 in range(0, info.cols, width):
            c1 = min(info.cols, c0 + width)
            yield self.reader.column_slab(info, c0, c1, self.memory.block_elems).to(torch.float32)


def _matrix(x: torch.Tensor, info: TensorInfo, block: Block) -> torch.Tensor:
    rows = block.row_stop - block.row_start if info.is_matrix else 1
    return x.view(rows, -1)


def tensor_info_dict(info: TensorInfo, name_info: NameInfo) -> dict:
    return {
        "shape": list(info.shape),
        "dtype": info.dtype,
        "numel": info.numel,
        "nbytes": info.nbytes,
        "layer_index": name_info.layer_index,
        "block_type": name_info.block_type,
        "module": name_info.module,
        "tower": name_info.tower,
        "shard": info.shard.name,
    }
