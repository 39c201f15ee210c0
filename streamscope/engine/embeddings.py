"""``streamscope embeddings``: the embedding study, through the same pipeline as a scan.

plan (the embedding matrices and the norm layers) -> skip what resume holds -> run -> store -> model-level
analyses, as ``pipeline.scan`` does, into one ``ResultStore`` in the output directory: the row-norm and norm-layer
statistics are the scan's own. Then each embedding matrix is clustered (``analyses.clusters``) from row blocks that
a ``TensorRunner`` streams on the chosen device under the memory budget; the study keeps its state in the same
store after every pass, so an interrupted run resumes at the pass where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path

import numpy as np

from streamscope.analyses.clusters import ClusterOptions, Study, cluster_table, finite, study
from streamscope.engine import pipeline
from streamscope.engine.executors import TensorJob
from streamscope.engine.options import ScanOptions
from streamscope.errors import CheckpointError, Interrupted
from streamscope.io.checkpoint import CheckpointIndex
from streamscope.schema import SCHEMA_VERSION

MIN_ROWS = 16  # token-type tables and the like are not clustered
PARTIAL = ".embeddings.partial"


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
    from streamscope.results import ResultStore

    names = embedding_matrices(index)
    if not names:
        raise CheckpointError(f"{index.path}: no embedding matrix (embed_tokens, wte, word_embeddings, lm_head, patch_embed) with {MIN_ROWS}+ rows")
    out = Path(out)
    t0 = time.perf_counter()
    norms = [t for t in index if t.name in names or index.names[t.name].block_type == "norm"]
    select = "^(?:" + "|".join(re.escape(t.name) for t in norms) + ")$"
    scan_options = dataclasses.replace(options, analyses=("basic_stats",), select=select)
    fingerprint = repr(("embeddings", scan_options.fingerprint(), dataclasses.astuple(clusters)))
    with ResultStore(out, str(index.path), fingerprint, partial=PARTIAL) as store:
        stats = pipeline.run_jobs([TensorJob(t) for t in norms if not t.unreadable], scan_options, store,
                                  tokenizer=index.tokenizer_path, progress=progress, label="embeddings")  # fmt: skip
        records = {t.name: store.records[t.name] for t in norms if t.name in store.records}
        model = pipeline.model_results(index, records, stats.errors)
        studies, device = _cluster_all(index, names, options, clusters, store, progress)
        row_norms = {n: store.arrays(n).get("row_norms") for n in names}
        result = _results(index, model, row_norms, studies, clusters)
        result["timing"] = {"seconds": time.perf_counter() - t0}
        result["options"] = {**dataclasses.asdict(clusters), "memory_budget": options.memory.total, "device": device}
        _write(out, result, studies, row_norms)
        store.discard_partial()
    return result


def _cluster_all(index, names, options, clusters, store, progress) -> tuple[dict[str, Study], str]:
    from streamscope.progress import PassProgress
    from streamscope.engine.runner import TensorRunner
    from streamscope.engine.threads import default_threads

    default_threads()
    runner = TensorRunner(options, index.tokenizer_path)
    studies = {}
    try:
        for name in names:
            info = index.tensors[name]
            saved = _Saved(store, name, pipeline.tensor_fingerprint(info))
            with PassProgress(name, info.rows, clusters.max_passes, enabled=progress) as bar:
                try:
                    studies[name] = saved.study() or saved.keep(study(
                        bar.streamed(lambda info=info: runner.row_blocks(info)), info.rows, info.cols, clusters,
                        runner.device, options.memory.analysis_bytes, on_pass=bar.passes_done, checkpoint=saved))  # fmt: skip
                except KeyboardInterrupt:
                    raise Interrupted(f"interrupted: {name}: {bar.done} finished passes over its rows kept in "
                                      f"{store.partial_dir}; run the same command to resume") from None  # fmt: skip
        return studies, str(runner.device)
    finally:
        runner.close()


class _Saved:
    """One matrix's study state in the run's ``ResultStore``: its checkpoints between passes, and the finished study."""

    def __init__(self, store, name: str, fingerprint: str):
        self.store, self.name, self.fingerprint = store, name, fingerprint

    def load(self, part: str) -> tuple[dict, dict[str, np.ndarray]] | None:
        key = f"{self.name}#clusters-{part}"
        if not self.store.done(key, self.fingerprint):
            return None
        return self.store.records[key], {k: np.array(v) for k, v in self.store.arrays(key).items()}

    def save(self, part: str, record: dict, arrays: dict[str, np.ndarray]) -> None:
        self.store.add(f"{self.name}#clusters-{part}", self.fingerprint, record, arrays)

    def study(self) -> Study | None:
        saved = self.load("study")
        return Study.from_parts(*saved) if saved else None

    def keep(self, s: Study) -> Study:
        self.save("study", *s.to_parts())
        return s


def _results(index, model: dict, row_norms: dict, studies: dict[str, Study], clusters: ClusterOptions) -> dict:
    from streamscope.analyses.embedding import POSITIONAL
    from streamscope.io.tokenizer import decoder

    tokenizer = index.tokenizer_path
    out = {"schema_version": SCHEMA_VERSION, "model_path": str(index.path),
           "norms": model.get("embedding", {}),
           "norm_layers": (model.get("norm_layers") or {}).get("embedding_related", []),
           "clusters": {}}  # fmt: skip
    for name, s in studies.items():
        decode = decoder(str(tokenizer)) if tokenizer is not None and not POSITIONAL.search(name) else (lambda i: None)
        table = cluster_table(s, row_norms.get(name), decode, clusters.random_state)
        out["clusters"][name] = {
            "k": s.k, "metric": s.metric, "k_rule": s.rule, "structure": s.structure, "passes": s.passes, "pca": s.pca_from,
            "elbow": [{"k": e["k"], "inertia": e["inertia"], "silhouette": finite(e["silhouette"]), "lloyd_passes": e["lloyd_passes"]} for e in s.elbow],
            "sizes": [c["size"] for c in table],
            "clusters": table,
        }  # fmt: skip
    return out


def _write(out: Path, result: dict, studies: dict[str, Study], row_norms: dict) -> None:
    from streamscope.results import write_json

    _write_arrays(out, studies, row_norms)
    write_json(out / "embeddings.json", result)
    _write_csv(out / "clusters.csv", result)


def _write_arrays(out: Path, studies: dict[str, Study], row_norms: dict) -> None:
    """``arrays.zarr/embeddings`` built beside, then moved in place of the old group alone (``replace_groups``).

    The row norms the report draws are read from ``tensors/row_norms``, the scan's group: they go there only
    when no scan's ``tensors`` group is in the directory (a scan's holds them already), never over a scan's.
    """
    from streamscope.results import replace_groups, write_ragged, zarr_key

    def fill(root) -> None:
        e = root.create_group("embeddings")
        for name, s in studies.items():
            g = e.create_group(zarr_key(name), attributes={"tensor": name})
            for k, v in (("labels", s.labels), ("centroids", s.centroids), ("projection", s.projection),
                         ("projection_rows", s.sample_rows.astype(np.int64)), ("projection_labels", s.projection_labels)):  # fmt: skip
                g.create_array(k, data=v)
        names = [n for n in studies if row_norms.get(n) is not None]
        if names:
            t = root.create_group("tensors", attributes={"written_by": "embeddings"})
            write_ragged(t, "row_norms", names, [row_norms[n] for n in names])

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

    from streamscope.results import write_atomic

    rows = []
    for name, c in result["clusters"].items():
        for cl in c["clusters"]:
            rows.append({"tensor": name, "k": c["k"], "metric": c["metric"], "cluster": cl["id"], "size": cl["size"],
                         "mean_norm": cl["mean_norm"], "mean_distance": cl["mean_distance"],
                         "nearest_tokens": " | ".join(str(t["token"]) if t["token"] is not None else f"#{t['id']}" for t in cl["tokens"])})  # fmt: skip
    write_atomic(path, lambda p: pd.DataFrame(rows).to_csv(p, index=False))
