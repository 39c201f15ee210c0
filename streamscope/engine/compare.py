"""Two checkpoints compared: structure from their headers, and with weights every pair of tensors streamed side
by side through the same pipeline as ``scan`` (plan -> resume -> run -> store).

``api.compare`` and ``streamscope compare`` are thin wrappers over ``compare``. The resume fingerprint is made
of the engine's options (``ScanOptions.fingerprint``) and every field of ``CompareOptions``, so a comparison
resumed under another ``--rank`` or ``--memory-budget`` computes every pair again. As in ``scan``, the device is
not part of it: a pair's result is the same on every device, to float32 rounding.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Callable

from streamscope.analyses import pruning
from streamscope.analyses.compare import CompareOptions, compare_structure, mark_emptied, tensor_changes
from streamscope.analyses.params import count_params, is_buffer
from streamscope.engine.executors import PairJob
from streamscope.engine.options import ScanOptions, resolve_device
from streamscope.engine.pipeline import run_jobs
from streamscope.io.checkpoint import CheckpointIndex
from streamscope.io.names import compile_select
from streamscope.io.pairs import match_tensors
from streamscope.io.tensor import TensorInfo

Pairs = dict[str, tuple[TensorInfo, "int | None"]]


def compare(a: CheckpointIndex, b: CheckpointIndex, options: ScanOptions | None = None, compare_options: CompareOptions = CompareOptions(), *,
            out: str | os.PathLike | None = None, resume: bool = True, progress: bool = False, provenance: dict | None = None,
            importance: str | os.PathLike | None = None, readable: Callable[[], tuple[CheckpointIndex, CheckpointIndex]] | None = None) -> dict:  # fmt: skip
    """Compare ``a`` (before a change) with ``b`` (after it); what ``api.compare`` returns.

    Args:
        options: the weight comparison's engine options (``select``, memory budget, device); None compares
            the structure alone, from the headers.
        compare_options: the comparison's own options.
        out: where the JSON report goes; finished pairs are kept beside it (``.NAME.partial/``) for resume.
        provenance: recorded under ``provenance``.
        importance: an ``activations`` output of ``a``: the layers ``b`` lacks against the importance it measured.
        readable: opens both checkpoints with their weights readable, for ``importance`` where ``a`` and ``b``
            are headers alone (a hub repo read over HTTP); by default ``a`` and ``b`` themselves.
    """
    result = compare_structure(count_params(a), count_params(b))
    pairs = match_tensors(a, b)
    result["tensors"] = tensor_changes(a, b, {n: t for n, (t, _) in pairs.items()})
    result["provenance"] = provenance
    if importance is not None:
        result["pruning"] = _pruning(importance, readable or (lambda: (a, b)))
    if options is not None:
        pattern = compile_select(options.select)
        names = [n for n, t in a.tensors.items() if n in pairs and pairs[n][0].shape == t.shape and not is_buffer(t)
                 and (pattern is None or pattern.search(n))]  # fmt: skip
        deltas, errors = _stream(a, b, {n: pairs[n] for n in names}, options, compare_options, out, resume, progress) if names else ({}, [])
        result["weights"] = deltas
        result["unchanged_tensors"] = sorted(n for n, d in deltas.items() if d["frobenius_norm_change"] == 0)
        result["errors"] = errors
        result["options"] = {"memory_budget": options.memory.total, "device": str(resolve_device(options.device)),
                             **dataclasses.asdict(compare_options)}  # fmt: skip
        mark_emptied(result, deltas, a.names)
    return result


def _pruning(importance, readable: Callable[[], tuple[CheckpointIndex, CheckpointIndex]]) -> dict:
    """The removed layers against the importance a profile of ``before`` measured."""
    imp = pruning.load_importance(importance)  # a bad file fails before any checkpoint is downloaded
    before, after = readable()
    removed, origin = pruning.removed_layers(before, after)
    return {**pruning.view(removed, imp, len(imp["block_influence"])), "origin": origin}


def _stream(a: CheckpointIndex, b: CheckpointIndex, pairs: Pairs, options: ScanOptions, compare_options: CompareOptions,
            out, resume: bool, progress: bool) -> tuple[dict[str, dict], list[str]]:  # fmt: skip
    """``{name: weight change}`` of every pair, and the errors; finished pairs stored as they come, reused on resume."""
    from streamscope.results import ResultStore

    resolve_device(options.device)  # fail before any work
    if out is not None:
        workdir, partial = Path(out).parent, f".{Path(out).name}.partial"
    else:
        workdir, partial = Path(tempfile.mkdtemp(prefix="streamscope-compare-")), ".partial"
    fingerprint = repr(("compare", options.fingerprint(), sorted(dataclasses.asdict(compare_options).items())))
    with ResultStore(workdir, f"{a.path} -> {b.path}", fingerprint, resume=resume, partial=partial) as store:
        jobs = [PairJob(a.tensors[n], tb, compare_options.rank, heads) for n, (tb, heads) in pairs.items()
                if not (a.tensors[n].unreadable or tb.unreadable)]  # fmt: skip
        stats = run_jobs(jobs, options, store, progress=progress, label="compare")
        deltas = {n: store.records[n] for n in pairs if n in store.records}
        if not stats.errors:
            store.discard_partial()
        return deltas, stats.errors
