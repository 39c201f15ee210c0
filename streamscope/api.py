"""The Python API: ``open`` a checkpoint to stream its tensors yourself, or ``scan`` it."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch

from streamscope.analyses.health import model_health
from streamscope.analyses.norms import norm_layers
from streamscope.engine import scan as engine
from streamscope.engine.options import ScanOptions, parse_bytes
from streamscope.io.checkpoint import CheckpointIndex
from streamscope.io.names import NameInfo, classify
from streamscope.io.reader import plan_blocks, read_block_float
from streamscope.io.safetensors import TensorInfo
from streamscope.report.progress import ScanProgress
from streamscope.results import ResultStore


@dataclass
class Tensor:
    """A handle on one tensor of a checkpoint; reading happens only when asked."""

    info: TensorInfo

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

    def blocks(self, max_bytes: int | str = "64MB", dtype: torch.dtype = torch.float32) -> Iterator[torch.Tensor]:
        """Yield the tensor as float32 blocks of whole rows, each at most ``max_bytes`` (in ``dtype``).

        Tensors with two or more dims come as ``(rows, cols)`` matrices (trailing dims flattened); vectors
        and scalars as flat pieces. Each block is a fresh tensor.

        Example:
            >>> total = sum(float(b.double().square().sum()) for b in t.blocks("16MB"))  # doctest: +SKIP
        """
        max_elems = max(1, parse_bytes(max_bytes, "max_bytes") // torch.empty((), dtype=dtype).element_size())
        for block in plan_blocks(self.info, max_elems):
            yield read_block_float(self.info, block, dtype)

    def read(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The whole tensor in ``dtype`` with its own shape (for tensors that fit in memory)."""
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

        arr = _LazyRows(self.info)
        rows_per = max(1, parse_bytes(max_bytes, "max_bytes") // 4 // max(arr.shape[1] if arr.ndim == 2 else 1, 1))
        chunks = (rows_per, -1) if arr.ndim == 2 else (max(1, parse_bytes(max_bytes, "max_bytes") // 4),)
        return da.from_array(arr, chunks=chunks, asarray=True, fancy=False, name=f"streamscope-{self.info.name}-{self.info.begin}")


class _LazyRows:
    """Array-like over a tensor's rows for ``dask.array.from_array``; picklable (path and offsets only)."""

    def __init__(self, info: TensorInfo):
        self.info = info
        self.shape = (info.rows, info.cols) if len(info.shape) >= 2 else (info.numel,)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.float32)

    def __getitem__(self, key) -> np.ndarray:
        from streamscope.io.reader import Block

        key = key if isinstance(key, tuple) else (key,)
        rows = key[0] if isinstance(key[0], slice) else slice(key[0], key[0] + 1)
        start, stop, _ = rows.indices(self.shape[0])
        stop = max(start, stop)
        if self.ndim == 2:
            cols = self.shape[1]
            block = Block(start * cols, stop * cols, start, stop)
            out = read_block_float(self.info, block).numpy().reshape(stop - start, cols) if stop > start else np.empty((0, cols), np.float32)
            return out[(slice(None), *key[1:])]
        block = Block(start, stop, 0, 1)
        return read_block_float(self.info, block).numpy().reshape(-1) if stop > start else np.empty(0, np.float32)


@dataclass
class Checkpoint:
    """An opened checkpoint: its index and a handle per tensor."""

    index: CheckpointIndex

    @property
    def path(self) -> Path:
        return self.index.path

    @property
    def config(self) -> dict | None:
        return self.index.config

    def __len__(self) -> int:
        return len(self.index)

    def __iter__(self) -> Iterator[Tensor]:
        return (Tensor(t) for t in self.index)

    def __getitem__(self, name: str) -> Tensor:
        try:
            return Tensor(self.index.tensors[name])
        except KeyError:
            raise KeyError(f"{self.index.path}: no tensor named {name!r}") from None

    def names(self) -> list[str]:
        return list(self.index.tensors)

    def metadata(self) -> pd.DataFrame:
        """One row per tensor: name, shape, dtype, numel, bytes, shard, layer index, block type."""
        rows = []
        for t in self.index:
            k = self.index.names[t.name]
            rows.append({"tensor": t.name, "shape": t.shape, "dtype": t.dtype, "numel": t.numel, "nbytes": t.nbytes,
                         "shard": t.shard.name, "layer_index": k.layer_index, "block_type": k.block_type})  # fmt: skip
        return pd.DataFrame(rows)


def open(path: str | os.PathLike) -> Checkpoint:  # noqa: A001 - mirrors the builtin on purpose
    """Open a checkpoint from its headers alone.

    Example:
        >>> ckpt = streamscope.open("model.safetensors")  # doctest: +SKIP
        >>> for block in ckpt["model.embed_tokens.weight"].blocks("32MB"):  # doctest: +SKIP
        ...     print(block.shape)
    """
    return Checkpoint(CheckpointIndex.from_path(path))


@dataclass
class ScanResult:
    """What ``scan`` produced: per-tensor records, the table of them, model-level results."""

    tensors: dict[str, dict]
    table: pd.DataFrame
    model: dict
    out: Path | None
    errors: list[str] = field(default_factory=list)


def scan(
    path: str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    analyses=("basic", "sparsity"),
    select: str | None = None,
    memory_budget: int | str = "1GB",
    device: str = "auto",
    resume: bool = True,
    progress: bool = False,
    scheduler: str | None = None,
    workers: int | None = None,
    **extra,
) -> ScanResult:
    """Stream every (selected) tensor of a checkpoint once through the requested analyses.

    Args:
        path: checkpoint file or directory (see ``CheckpointIndex.from_path``).
        out: directory for ``tensors.json/csv/parquet``, ``model.json`` and ``arrays.zarr``; a temporary
            directory when None.
        analyses: names (``basic``, ``sparsity``, ...) or a comma-separated string.
        select: regex; only tensors whose name it matches (``re.search``) are scanned.
        memory_budget: bound on working memory, e.g. ``"512MB"``; larger tensors stream in row blocks.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        resume: reuse results of an earlier, interrupted scan in ``out`` with the same options.
        progress: show a progress bar on the terminal.
        spectral: with the ``spectral`` analysis: ``auto``, ``exact``, ``gram``, ``randomized`` or ``off``.
        rank: number of top singular values reported (default 32).
        quant_schemes: with ``quantization``: any of ``int8, int8_channel, int4_g128, int4_g128_asym, fp8_e4m3``.
        scheduler: a ``dask.distributed`` scheduler address, or ``"local"`` for a local cluster of
            ``workers`` processes.

    Returns:
        ScanResult with ``tensors`` (name -> record), ``table`` (DataFrame), ``model`` (model-level dict).

    Example:
        >>> r = streamscope.scan("model.safetensors", out="results", memory_budget="512MB")  # doctest: +SKIP
        >>> r.table.sort_values("basic_stats.abs_max").tail()  # doctest: +SKIP
    """
    import tempfile

    known = {k: extra.pop(k) for k in ("block_elems", "spectral", "rank", "quant_schemes") if k in extra}
    options = ScanOptions(analyses=analyses, select=select, memory_budget=memory_budget, device=device, extra=extra, **known)
    engine.resolve_device(options.device)  # fail before any work
    index = CheckpointIndex.from_path(path)
    tensors = engine.select_tensors(index, select)
    if out is None:
        out = tempfile.mkdtemp(prefix="streamscope-")
    store = ResultStore(out, str(index.path), options.fingerprint(), resume=resume)
    errors: list[str] = []
    todo = []
    for info in tensors:
        fp = engine.shard_fingerprint(info)
        if not store.done(info.name, fp):
            todo.append((info, fp))
    fingerprints = dict((info.name, fp) for info, fp in todo)

    def on_result(info: TensorInfo, result, error: str | None) -> None:
        bar.tensor_done()
        if error:
            errors.append(error)
        else:
            store.add(info.name, fingerprints[info.name], result.record, result.arrays)

    t0 = engine.now()
    engine.default_threads()
    bar = ScanProgress(sum(i.nbytes for i, _ in todo), len(todo), enabled=progress)
    with bar:
        try:
            run_args = ([i for i, _ in todo], options, index.tokenizer_path, on_result, bar.advance)
            if scheduler:
                engine.run_distributed(*run_args, scheduler=scheduler, workers=workers)
            else:
                engine.run_local(*run_args)
        finally:
            store.close()
    elapsed = engine.now() - t0
    order = [t.name for t in tensors]
    model = model_results(index, store.records, order, errors)
    model["timing"] = {"seconds": elapsed, "bytes_scanned": sum(i.nbytes for i, _ in todo), "tensors_reused": len(tensors) - len(todo)}
    model["options"] = {"analyses": list(options.result_keys), "select": select, "memory_budget": options.memory_budget, "device": str(engine.resolve_device(device))}
    table = store.write_tables(model, order)
    return ScanResult({n: store.records[n] for n in order if n in store.records}, table, model, Path(out), errors)


def model_results(index: CheckpointIndex, records: dict[str, dict], order: list[str], errors: list[str]) -> dict:
    """Model-level results from the per-tensor records: checkpoint summary, embeddings, norm layers."""
    scanned = {n: records[n] for n in order if n in records}
    dtypes = Counter()
    for t in index:
        dtypes[t.dtype] += t.numel
    return {
        "model_path": str(index.path),
        "checkpoint": {
            "shards": [f.path.name for f in index.files],
            "num_tensors": len(index),
            "num_scanned": len(scanned),
            "total_params": index.total_params,
            "total_bytes": index.total_bytes,
            "params_by_dtype": dict(dtypes),
            "model_type": (index.config or {}).get("model_type"),
            "tokenizer": index.tokenizer_path.name if index.tokenizer_path else None,
        },
        "embedding": {n: r["embedding"] for n, r in scanned.items() if "embedding" in r},
        "norm_layers": norm_layers(scanned, index.names, set(index.tensors)),
        "health": model_health(scanned),
        "errors": errors,
    }


def params(path: str | os.PathLike, *, name: str | None = None) -> dict:
    """Parameter accounting from headers and ``config.json`` alone (no tensor byte is read).

    Returns:
        ``total_params, embedding_params, lm_head_params, tied_embeddings, layer_summary, layers, ...``
        (see ``streamscope.analyses.params.count_params``); ``params_frame`` turns ``layers`` into a DataFrame.

    Example:
        >>> p = streamscope.params("Llama-2-7b-hf/")  # doctest: +SKIP
        >>> p["layers"][0]["attention"]["num_kv_heads"]  # doctest: +SKIP
        32
    """
    from streamscope.analyses.params import count_params

    return count_params(CheckpointIndex.from_path(path), name=name)


def params_frame(result: dict) -> pd.DataFrame:
    """One row per layer of a ``params`` result, nested fields flattened (``attention.num_heads``, ...)."""
    return pd.json_normalize(result["layers"])


def compare(
    a: str | os.PathLike,
    b: str | os.PathLike,
    *,
    weights: bool = False,
    select: str | None = None,
    memory_budget: int | str = "1GB",
    rank: int = 8,
    progress: bool = False,
) -> dict:
    """Compare two checkpoints (e.g. before and after pruning or fine-tuning).

    Args:
        a, b: the original and the changed checkpoint.
        weights: also stream every tensor present in both with equal shapes, side by side, and report its
            relative Frobenius change, cosine similarity, max |change| and the top ``rank`` singular values and
            stable rank of the difference.
        select: regex restricting the weight comparison to matching tensor names.
        memory_budget: bound on working memory for the weight comparison.

    Returns:
        ``total_params / layer_params {original, pruned, reduced, reduction_ratio}``, ``layers`` (per layer,
        with head and intermediate sizes before and after), ``emptied_layers``, ``missing_layers``,
        ``tensors`` (only on one side, changed shape), and ``weights`` when asked.
    """
    from streamscope.analyses.compare import compare_structure, tensor_changes, weight_delta
    from streamscope.analyses.params import count_params, is_buffer
    from streamscope.io.names import compile_select

    ia, ib = CheckpointIndex.from_path(a), CheckpointIndex.from_path(b)
    result = compare_structure(count_params(ia), count_params(ib))
    result["tensors"] = tensor_changes(ia, ib)
    if weights:
        options = ScanOptions(memory_budget=memory_budget)
        max_elems = max(1 << 16, options.max_block_elems // 2)  # two tensors' blocks at once
        pattern = compile_select(select)
        common = [n for n, t in ia.tensors.items() if n in ib.tensors and ib.tensors[n].shape == t.shape and not is_buffer(t)
                  and (pattern is None or pattern.search(n))]  # fmt: skip
        bar = ScanProgress(sum(ia.tensors[n].nbytes + ib.tensors[n].nbytes for n in common), len(common), enabled=progress)
        deltas = {}
        engine.default_threads()
        with bar:
            for n in common:
                deltas[n] = weight_delta(ia.tensors[n], ib.tensors[n], max_elems, k=rank)
                bar.advance(ia.tensors[n].nbytes + ib.tensors[n].nbytes)
                bar.tensor_done()
        result["weights"] = deltas
        for row in result["layers"]:  # a layer whose remaining weights are all zero is emptied too
            names = [n for n in common if ib.names[n].layer_index == row["layer_idx"] and ib.names[n].block_type != "norm"]
            if names and all(deltas[n]["pruned_all_zero"] for n in names) and row["layer_idx"] not in result["emptied_layers"]:
                row["is_zero_layer"] = True
                result["emptied_layers"].append(row["layer_idx"])
        result["emptied_layers"].sort()
    return result


def compare_frame(result: dict) -> pd.DataFrame:
    """One row per layer of a ``compare`` result, nested fields flattened."""
    return pd.json_normalize(result["layers"])
