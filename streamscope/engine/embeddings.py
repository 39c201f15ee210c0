"""``streamscope embeddings``: the embedding study, through the same engine as a scan.

The embedding matrices (input embeddings, an untied output matrix, vision patch embeddings) and the norm layers
go through ``pipeline.scan`` first, so their row-norm and norm-layer statistics are the scan's own; then each
embedding matrix is clustered (``analyses.clusters``) from row blocks that the scan's ``TensorRunner`` streams
on the chosen device under the memory budget.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from streamscope.analyses.clusters import ClusterOptions, cluster_table, finite, study
from streamscope.engine import pipeline
from streamscope.engine.options import ScanOptions
from streamscope.errors import CheckpointError
from streamscope.io.checkpoint import CheckpointIndex
from streamscope.schema import SCHEMA_VERSION

MIN_ROWS = 16  # token-type tables and the like are not clustered


def embedding_matrices(index: CheckpointIndex) -> list[str]:
    """Input embeddings, output matrices and vision patch embeddings with at least ``MIN_ROWS`` rows."""
    out = []
    for t in index:
        kind = index.names[t.name]
        wanted = kind.block_type in ("embedding", "output") or (kind.tower == "vision" and "patch_embed" in t.name)
        if wanted and t.is_matrix and t.rows >= MIN_ROWS and not t.unreadable and kind.role == "weight":
            out.append(t.name)
    return out


def run(index: CheckpointIndex, options: ScanOptions, clusters: ClusterOptions, out: str | Path, progress: bool = False) -> dict:
    """Study every embedding matrix of ``index``; write ``embeddings.json``, ``clusters.csv`` and arrays into ``out``."""
    from streamscope.engine.runner import TensorRunner
    from streamscope.engine.threads import default_threads
    from streamscope.results import _atomic, _key, _lock, _unlock, json_safe

    names = embedding_matrices(index)
    if not names:
        raise CheckpointError(f"{index.path}: no embedding matrix (embed_tokens, wte, word_embeddings, lm_head, patch_embed) with {MIN_ROWS}+ rows")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lock = _lock(out / ".embeddings.lock")
    t0 = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="streamscope-embeddings-"))
    try:
        norms_select = "|".join(re.escape(n) for n in names) + "|" + "|".join(
            re.escape(n) for n in index.tensors if index.names[n].block_type == "norm")  # fmt: skip
        scan_options = dataclasses.replace(options, analyses=("basic_stats",), select=f"^(?:{norms_select})$")
        scanned = pipeline.scan(index, scan_options, scratch, resume=False)
        from streamscope.report.load import Results

        scan_results = Results.open(scratch)
        default_threads()
        runner = TensorRunner(options, index.tokenizer_path)
        studies = {}
        try:
            for name in names:
                info = index.tensors[name]
                bar = _Passes(name, progress)
                with bar:
                    s = study(lambda info=info: runner.row_blocks(info), info.rows, info.cols, clusters, runner.device,
                              options.memory.analysis_bytes, on_pass=bar.update)  # fmt: skip
                studies[name] = s
        finally:
            runner.close()
        result = _results(index, scanned, scan_results, studies, clusters)
        result["timing"] = {"seconds": time.perf_counter() - t0}
        result["options"] = {**dataclasses.asdict(clusters), "memory_budget": options.memory.total, "device": str(runner.device)}
        _write_arrays(out, scan_results, studies, _key)
        _atomic(out / "embeddings.json", lambda p: p.write_text(json.dumps(json_safe(result), indent=1)))
        _write_csv(out / "clusters.csv", result)
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        _unlock(lock)


def _results(index, scanned, scan_results, studies, clusters: ClusterOptions) -> dict:
    from streamscope.analyses.embedding import _POSITIONAL
    from streamscope.io.tokenizer import decoder

    tokenizer = index.tokenizer_path
    out = {"schema_version": SCHEMA_VERSION, "model_path": str(index.path),
           "norms": scanned.model.get("embedding", {}),
           "norm_layers": (scanned.model.get("norm_layers") or {}).get("embedding_related", []),
           "clusters": {}}  # fmt: skip
    for name, s in studies.items():
        decode = decoder(str(tokenizer)) if tokenizer is not None and not _POSITIONAL.search(name) else (lambda i: None)
        norms = scan_results.array(name, "row_norms")
        table = cluster_table(s, norms, decode, clusters.random_state)
        out["clusters"][name] = {
            "k": s.k, "metric": s.metric, "k_rule": s.rule, "passes": s.passes, "pca": s.pca_from,
            "elbow": [{"k": e["k"], "inertia": e["inertia"], "silhouette": finite(e["silhouette"]), "lloyd_passes": e["lloyd_passes"]} for e in s.elbow],
            "sizes": [c["size"] for c in table],
            "clusters": table,
        }  # fmt: skip
    return out


def _write_arrays(out: Path, scan_results, studies, key) -> None:
    """``arrays.zarr/embeddings`` built beside, then moved in place of the old group alone (``replace_groups``).

    The row norms the report draws are read from ``tensors/row_norms``, the scan's group: they go there only
    when no scan's ``tensors`` group is in the directory (a scan's holds them already), never over a scan's.
    """
    from streamscope.results import replace_groups

    def fill(root) -> None:
        e = root.create_group("embeddings")
        for name, s in studies.items():
            g = e.create_group(key(name), attributes={"tensor": name})
            for k, v in (("labels", s.labels), ("centroids", s.centroids), ("projection", s.projection),
                         ("projection_rows", s.sample_rows.astype(np.int64)), ("projection_labels", s.projection_labels)):  # fmt: skip
                g.create_array(k, data=v)
        names, norms = [], []
        for name in studies:
            n = scan_results.array(name, "row_norms")
            if n is not None:
                names.append(name)
                norms.append(np.asarray(n).reshape(-1))
        if names:  # the ragged layout of ResultStore.write_arrays
            offsets = np.concatenate([[0], np.cumsum([n.size for n in norms])]).astype(int).tolist()
            t = root.create_group("tensors", attributes={"written_by": "embeddings"})
            t.create_group("row_norms", attributes={"tensor_names": names, "offsets": offsets}).create_array("values", data=np.concatenate(norms))

    replace_groups(out, "embeddings", ("embeddings", "tensors"), fill, may_replace=_not_a_scans)


def _not_a_scans(name: str, path: Path) -> bool:
    if name != "tensors" or not path.exists():
        return True
    try:
        return json.loads((path / "zarr.json").read_text(encoding="utf-8"))["attributes"].get("written_by") == "embeddings"
    except (OSError, ValueError, KeyError, AttributeError):
        return False  # a scan's (or unreadable): left alone


def _write_csv(path: Path, result: dict) -> None:
    import pandas as pd

    from streamscope.results import _atomic

    rows = []
    for name, c in result["clusters"].items():
        for cl in c["clusters"]:
            rows.append({"tensor": name, "k": c["k"], "metric": c["metric"], "cluster": cl["id"], "size": cl["size"],
                         "mean_norm": cl["mean_norm"], "mean_distance": cl["mean_distance"],
                         "nearest_tokens": " | ".join(str(t["token"]) if t["token"] is not None else f"#{t['id']}" for t in cl["tokens"])})  # fmt: skip
    _atomic(path, lambda p: pd.DataFrame(rows).to_csv(p, index=False))


class _Passes:
    """A spinner per matrix counting streamed passes (the number of Lloyd passes is not known in advance)."""

    def __init__(self, name: str, enabled: bool):
        self.progress = None
        if enabled:
            from rich.console import Console
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=Console(stderr=True))
            self.task = self.progress.add_task(f"[bold]embeddings[/] {name}: sampling")
            self.name = name

    def __enter__(self):
        if self.progress:
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.progress:
            self.progress.stop()

    def update(self, passes: int) -> None:
        if self.progress:
            self.progress.update(self.task, description=f"[bold]embeddings[/] {self.name}: {passes} passes over the rows")
