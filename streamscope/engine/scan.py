"""Schedule a scan: stream each tensor's blocks once through every requested analysis, under a memory budget.

Tensors run one after another in the order their bytes lie on disk; inside a tensor, the next block is read
while the current one is computed on (``RawReader``). Each finished tensor is written to the result store at
once, so a killed scan resumes where it stopped. With ``scheduler=`` the tensors are tasks on a
``dask.distributed`` cluster instead, whose workers must see the same checkpoint path.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from streamscope.analyses import BLOCK_ANALYSES, TENSOR_ANALYSES
from streamscope.analyses.embedding import embedding_norms
from streamscope.analyses.health import grade_tensor
from streamscope.engine.options import ScanOptions, resolve_device
from streamscope.io.checkpoint import CheckpointIndex
from streamscope.io.names import NameInfo, classify, compile_select
from streamscope.io.reader import RawReader, plan_blocks
from streamscope.io.safetensors import TensorInfo
from streamscope.kernels import patterns
from streamscope.kernels.blockstats import BlockKernel, TensorAccumulator, working_dtype

ROW_NORM_TYPES = ("embedding", "output")


@dataclass
class TensorResult:
    """What one tensor's pass produced: the JSON record and the arrays for the zarr store."""

    name: str
    record: dict
    arrays: dict[str, np.ndarray]


class TensorRunner:
    """Per-process working state (reader buffers, device buffers) reused across tensors."""

    def __init__(self, options: ScanOptions, tokenizer: Path | None = None):
        self.options = options
        self.device = resolve_device(options.device)
        self.kernel = BlockKernel(options.max_block_elems, self.device)
        on_gpu = self.device.type != "cpu"
        mode = os.environ.get("STREAMSCOPE_READER") or ("pread" if on_gpu else "mmap")  # pread: pinned staging for GPUs
        self.reader = RawReader(options.max_block_elems * 8, pin_memory=self.device.type == "cuda", mode=mode)
        self.tokenizer = tokenizer

    def close(self) -> None:
        self.reader.close()

    def run(self, info: TensorInfo, on_bytes: Callable[[int], None] | None = None) -> TensorResult:
        name_info = classify(info.name)
        blocks = plan_blocks(info, self.options.max_block_elems)
        acc = TensorAccumulator.start(info, row_norms=name_info.block_type in ROW_NORM_TYPES)
        acc.keep_block = len(blocks) == 1 and not acc.exact
        params = self.options.analysis_params()
        numeric = info.dtype != "BOOL" and info.numel > 0
        block_analyses = {k: BLOCK_ANALYSES[k] for k in self.options.result_keys if k in BLOCK_ANALYSES} if numeric else {}
        states = {k: a.start(info, params) for k, a in block_analyses.items()}
        for block, raw in self.reader.blocks(info, blocks):
            x = self.kernel.update(acc, raw, block)
            if block_analyses:
                x = self._matrix(x if x is not None else self.kernel.convert(raw, info), info, block)
                for key, analysis in block_analyses.items():
                    analysis.update(states[key], x, block, self._scratch)
            if on_bytes:
                on_bytes(block.numel * info.itemsize)
        record: dict = {"info": tensor_info_dict(info, name_info)}
        for key in self.options.result_keys:
            if key in TENSOR_ANALYSES:
                record[key] = TENSOR_ANALYSES[key](acc)
        arrays = {}
        ctx = TensorContext(self, info, params, arrays)
        for key, analysis in block_analyses.items():
            result = analysis.finish(states[key], acc, ctx)
            if result is not None:
                record[key] = result
        health = grade_tensor(record)
        if health:
            record["health"] = health
        s = acc.summary()
        if s["n"]:
            counts, edges = patterns.rebin(acc.kind, acc.hist, self.options.histogram_bins, s["min"], s["max"])
            arrays["histogram_counts"], arrays["histogram_edges"] = counts, edges
        if acc.row_sumsq is not None:
            norms = np.sqrt(acc.row_sumsq)
            arrays["row_norms"] = norms
            record["embedding"] = embedding_norms(info.name, info.shape, norms, self.tokenizer)
        return TensorResult(info.name, record, arrays)


    def _scratch(self, key: str, n: int) -> torch.Tensor:
        return self.kernel.buffer(key, n, torch.float32)

    @staticmethod
    def _matrix(x: torch.Tensor, info: TensorInfo, block) -> torch.Tensor:
        rows = block.row_stop - block.row_start if len(info.shape) >= 2 else 1
        return x.view(rows, -1)

    def row_blocks(self, info: TensorInfo):
        """Stream ``info`` again as (row_start, row_stop, (rows, cols) float block) on the device."""
        for block, raw in self.reader.blocks(info, plan_blocks(info, self.options.max_block_elems)):
            x = self.kernel.buffer("again", raw.numel(), working_dtype(info))
            x.copy_(raw)
            yield block.row_start, block.row_stop, self._matrix(x, info, block)

    def column_slabs(self, info: TensorInfo):
        """Stream a matrix as column slabs ``(rows, width)`` float32, each at most one block of elements."""
        width = max(1, self.options.max_block_elems // max(info.rows, 1))
        for c0 in range(0, info.cols, width):
            c1 = min(info.cols, c0 + width)
            yield self.reader.column_slab(info, c0, c1).to(torch.float32)


class TensorContext:
    """What a block analysis's ``finish`` may use: more passes over the tensor, the device, its arrays."""

    def __init__(self, runner: TensorRunner, info: TensorInfo, params: dict, arrays: dict):
        self.info, self.params, self.arrays, self.device = info, params, arrays, runner.device
        self._runner = runner

    def row_blocks(self):
        return self._runner.row_blocks(self.info)

    def column_slabs(self):
        return self._runner.column_slabs(self.info)


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


def shard_fingerprint(info: TensorInfo) -> str:
    st = os.stat(info.shard)
    return f"{info.shard.name}:{st.st_size}:{st.st_mtime_ns}:{info.begin}:{info.end}:{info.dtype}:{info.shape}"


def select_tensors(index: CheckpointIndex, select: str | None) -> list[TensorInfo]:
    pattern = compile_select(select)
    return [t for t in index if pattern is None or pattern.search(t.name)]


def run_local(
    tensors: list[TensorInfo],
    options: ScanOptions,
    tokenizer: Path | None,
    on_result: Callable[[TensorInfo, TensorResult | None, str | None], None],
    on_bytes: Callable[[int], None] | None = None,
) -> None:
    """Run tensors in this process; a tensor that fails is reported and the scan goes on."""
    runner = TensorRunner(options, tokenizer)
    try:
        for info in tensors:
            try:
                result = runner.run(info, on_bytes)
            except (OSError, RuntimeError, ValueError) as e:
                on_result(info, None, f"{info.shard}: tensor {info.name!r}: {type(e).__name__}: {e}")
                continue
            on_result(info, result, None)
    finally:
        runner.close()


_WORKER_RUNNERS: dict[str, TensorRunner] = {}


def _run_on_worker(info: TensorInfo, options: ScanOptions, tokenizer: Path | None) -> tuple[TensorResult | None, str | None]:
    key = options.fingerprint() + repr(options.memory_budget) + options.device
    runner = _WORKER_RUNNERS.get(key)
    if runner is None:
        runner = _WORKER_RUNNERS[key] = TensorRunner(options, tokenizer)
    try:
        return runner.run(info), None
    except (OSError, RuntimeError, ValueError) as e:
        return None, f"{info.shard}: tensor {info.name!r}: {type(e).__name__}: {e}\n{traceback.format_exc(limit=2)}"


def run_distributed(
    tensors: list[TensorInfo],
    options: ScanOptions,
    tokenizer: Path | None,
    on_result: Callable[[TensorInfo, TensorResult | None, str | None], None],
    on_bytes: Callable[[int], None] | None,
    scheduler: str,
    workers: int | None = None,
) -> None:
    """Run tensors as tasks on a dask.distributed cluster (``scheduler`` address, or ``"local"``).

    Each worker streams its tensors with its own budget-sized buffers; results come back as they finish.
    """
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler == "local":
        cluster = LocalCluster(n_workers=workers or 2, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        futures = {client.submit(_run_on_worker, info, options, tokenizer, pure=False): info for info in tensors}
        for future in as_completed(futures):
            info = futures[future]
            result, error = future.result()
            on_result(info, result, error)
            if on_bytes:
                on_bytes(info.nbytes)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def default_threads() -> None:
    """Use every core for torch's intra-op work unless the user chose otherwise."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(os.cpu_count() or 1)


def now() -> float:
    return time.perf_counter()
