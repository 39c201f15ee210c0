"""The one pipeline every streamed command goes through.

plan (which tensors, which jobs) -> skip what resume already holds -> run (local or dask.distributed) ->
store each result as it finishes -> model-level analyses -> summary. ``scan`` here and ``engine.compare`` are
its two uses; ``api.scan`` and ``api.compare`` are thin wrappers over them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from streamscope.analyses import REGISTRY
from streamscope.engine.executors import TensorJob, run_distributed, run_local
from streamscope.engine.options import ScanOptions, resolve_device
from streamscope.engine.threads import default_threads
from streamscope.errors import Interrupted, OptionError
from streamscope.io.checkpoint import CheckpointIndex
from streamscope.io.names import compile_select
from streamscope.io.fingerprint import SAMPLE_BYTES, tensor_fingerprint  # noqa: F401  (resume keys; tests name them here)
from streamscope.io.tensor import TensorInfo
from streamscope.results_dir import Results
from streamscope.schema import SCHEMA_VERSION

if TYPE_CHECKING:
    from streamscope.results import ResultStore


#: What ``scan`` returns: the ``Results`` a user also opens from a directory (``tensors``, ``table``, ``model``, ``out``,
#: ``errors``); the older name is kept.
ScanResult = Results


@dataclass
class RunStats:
    errors: list[str]
    seconds: float
    bytes_streamed: int
    reused: int


@dataclass
class ModelContext:
    """What a model-level analysis sees (see ``analyses.registry``)."""

    index: CheckpointIndex
    records: dict[str, dict]
    errors: list[str]


def select_tensors(index: CheckpointIndex, select: str | None) -> list[TensorInfo]:
    pattern = compile_select(select)
    return [t for t in index if pattern is None or pattern.search(t.name)]


def run_jobs(jobs: list, options: ScanOptions, store: "ResultStore", *, tokenizer: Path | None = None, progress: bool = False,
             scheduler: str | None = None, workers: int | None = None, label: str = "scan") -> RunStats:  # fmt: skip
    """Run every job whose result ``store`` does not hold yet; store each result the moment it is done."""
    from streamscope.progress import ScanProgress

    fingerprints = {job.name: "|".join(tensor_fingerprint(t) for t in job.tensors) for job in jobs}
    todo = [job for job in jobs if not store.done(job.name, fingerprints[job.name])]
    errors: list[str] = []

    def on_result(job, result, error: str | None) -> None:
        bar.tensor_done()
        if error:
            errors.append(error)
        else:
            store.add(job.name, fingerprints[job.name], result.record, result.arrays)

    t0 = time.perf_counter()
    default_threads()
    total = sum(job.nbytes for job in todo)
    bar = ScanProgress(total, len(todo), enabled=progress, label=label)
    try:
        with bar:
            if scheduler:
                run_distributed(todo, options, tokenizer, on_result, bar.advance, scheduler=scheduler, workers=workers)
            else:
                run_local(todo, options, tokenizer, on_result, bar.advance)
    except KeyboardInterrupt:
        kept = sum(1 for job in jobs if store.done(job.name, fingerprints[job.name]))
        raise Interrupted(f"interrupted: {kept} of {len(jobs)} tensors kept in {store.partial_dir}; "
                          "run the same command to resume") from None  # fmt: skip
    return RunStats(errors, time.perf_counter() - t0, total, len(jobs) - len(todo))


def scan(index: CheckpointIndex, options: ScanOptions, out: str | os.PathLike, *, resume: bool = True, progress: bool = False,
         scheduler: str | None = None, workers: int | None = None, provenance: dict | None = None) -> ScanResult:  # fmt: skip
    """Scan ``index`` into ``out``: every selected tensor once through every active analysis, then the model."""
    from streamscope.results import PROVENANCE_COLUMNS, ResultStore

    if workers is not None and scheduler != "local":
        raise OptionError("workers sets the size of a local cluster: use it with scheduler='local' (--scheduler local)")
    device = str(resolve_device(options.device))  # fail before any work
    selected = select_tensors(index, options.select)
    if options.select and not selected:
        some = ", ".join(list(index.tensors)[:5])
        raise OptionError(f"--select {options.select!r} matches none of the {len(index)} tensors of {index.path} (e.g. {some})")
    skipped = [{"name": t.name, "dtype": t.dtype, "reason": t.unreadable} for t in selected if t.unreadable]
    tensors = [t for t in selected if not t.unreadable]
    with ResultStore(out, str(index.path), options.fingerprint(), resume=resume) as store:
        stats = run_jobs([TensorJob(t) for t in tensors], options, store, tokenizer=index.tokenizer_path,
                         progress=progress, scheduler=scheduler, workers=workers)  # fmt: skip
        order = [t.name for t in tensors]
        records = {n: store.records[n] for n in order if n in store.records}
        model = model_results(index, records, stats.errors)
        model["skipped"] = skipped
        model["timing"] = {"seconds": stats.seconds, "bytes_scanned": stats.bytes_streamed, "tensors_reused": stats.reused}
        model["options"] = {**options.summary(), "device": device}
        if provenance and provenance.get("model_id"):  # a hub model: where it came from, in model.json and every row
            model["provenance"] = provenance
            store.columns = {k: provenance[k] for k in PROVENANCE_COLUMNS}
        table = store.write_tables(model, order)
        if not stats.errors:
            store.discard_partial()
    return Results.from_scan(Path(out), records, table, model, stats.errors)


def model_results(index: CheckpointIndex, records: dict[str, dict], errors: list[str]) -> dict:
    """Model-level results from the per-tensor records, one registered model analysis after another.

    A model analysis that fails is reported in ``errors``; it never costs the per-tensor results.
    """
    ctx = ModelContext(index, records, errors)
    model: dict = {"schema_version": SCHEMA_VERSION, "model_path": str(index.path)}
    for analysis in REGISTRY.of_kind("model"):
        try:
            result = analysis.compute(ctx, None)
        except Exception as e:  # noqa: BLE001
            errors.append(f"{index.path}: model-level analysis {analysis.name!r} failed: {type(e).__name__}: {e}")
            continue
        if result is not None:
            model[analysis.key] = result
    model["errors"] = errors
    return model
