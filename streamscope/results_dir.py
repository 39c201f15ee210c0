"""The one result type a user opens: what a run wrote into its directory, as ``streamscope.scan`` returns it and as
``Results.open(DIR)`` (``streamscope.Results``) reads it back: records, model results, the table, and arrays on demand.

Nothing here touches the checkpoint: histograms, spectra and row norms come from ``arrays.zarr``, each read
only when a figure asks for it, so a 72B model's results render in little memory.

The JSON files are checked on read against the types the report uses (``MODEL``, ``RECORD``, ``EMBEDDINGS``,
``ACTIVATIONS``): a value of another type (a hand-edited ``"vocab_size": "64"``) is one error naming the file and
the key, not a traceback from a figure or a page built around it. Keys the report does not read are not checked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from streamscope.errors import StreamscopeError

if TYPE_CHECKING:
    import pandas as pd

# Types of the values the report reads: a tuple of types, a dict of keys (each checked where present, others
# left alone), ``[spec]`` a list of items, ``Each(spec)`` a dict's every value. JSON numbers may be null where
# a metric was undefined; a bool never counts as a number. ``Each``, ``check`` and ``read_object`` are public: the
# report checks ``sensitivity.json`` with them.
NONE = type(None)
INT = (int,)
NUM = (int, float)
NUM_ = (int, float, NONE)
STR = (str,)
STR_ = (str, NONE)


@dataclass(frozen=True)
class Each:
    spec: object


_TOKEN = {"id": INT, "norm": NUM_, "token": STR_}
_NORM_LAYER = {"name": STR, "kind": STR, "param": STR_, "shape": [INT], "layer_index": (int, NONE), "mean": NUM_, "std": NUM_,
               "min": NUM_, "max": NUM_, "numel": INT, "embedding_related": STR_}  # fmt: skip
_EMBEDDING = {"name": STR, "shape": [INT], "vocab_size": INT, "embedding_dim": INT, "norm_mean": NUM_, "norm_std": NUM_,
              "norm_min": NUM_, "norm_max": NUM_, "norm_percentiles": Each(NUM_), "largest": [_TOKEN], "smallest": [_TOKEN]}  # fmt: skip
MODEL = {
    "schema_version": INT, "model_path": STR_, "model_id": STR_, "revision": STR_,
    "checkpoint": {"shards": [STR], "num_tensors": INT, "num_scanned": INT, "total_params": INT, "buffer_elements": INT,
                   "total_bytes": INT, "params_by_dtype": Each(INT), "model_type": STR_},
    "embedding": Each(_EMBEDDING),
    "norm_layers": {"count": INT, "layers": [_NORM_LAYER], "embedding_related": [_NORM_LAYER]},
    "health": {"graded_tensors": INT, "counts": Each(INT), "compressible_tensors": INT,
               "riskiest": [{"name": STR, "grade": STR, "reasons": [STR]}]},
    "weightwatcher": {"matrices": INT, "log_norm": NUM_, "alpha": NUM_, "alpha_weighted": NUM_, "log_alpha_norm": NUM_,
                      "log_spectral_norm": NUM_, "stable_rank": NUM_, "over_trained": INT, "under_trained": INT,
                      "alpha_fitted": INT, "median_tail_size": NUM_, "smallest_tail_size": (int, NONE)},
    "errors": [STR], "skipped": [{"name": STR, "reason": STR}],
    "timing": {"seconds": NUM, "bytes_scanned": INT, "tensors_reused": INT},
    "options": Each((str, int, float, bool, list, NONE)),
}  # fmt: skip
RECORD = {
    "info": {"shape": [INT], "dtype": STR, "numel": INT, "nbytes": INT, "layer_index": (int, NONE), "block_type": STR, "module": STR_,
             "tower": STR_, "shard": STR_},
    "health": {"grade": STR, "level": INT, "reasons": [STR], "notes": [STR], "score": NUM, "compressible": (bool,)},
}  # fmt: skip
_CLUSTER_TOKEN = {"id": INT, "token": STR_}
EMBEDDINGS = {
    "schema_version": INT, "model_path": STR_, "norms": Each(_EMBEDDING),
    "clusters": Each({"k": INT, "metric": STR, "k_rule": STR, "elbow": [{"k": INT, "inertia": NUM_, "silhouette": NUM_}],
                       "clusters": [{"id": INT, "size": INT, "mean_norm": NUM_, "tokens": [_CLUSTER_TOKEN], "random_members": [_CLUSTER_TOKEN]}]}),
}  # fmt: skip
ACTIVATIONS = {
    "run": {"model": STR_, "architecture": STR_, "num_samples": INT, "seq_len": INT, "source": STR_, "dtype": STR, "device": STR,
            "n_layers": INT, "decoder_layers": STR_, "bytes_read": INT, "checkpoint_bytes": INT, "peak_rss_bytes": INT,
            "seconds": NUM, "tokens_per_second": NUM_},
    "outliers": {"threshold": NUM, "pattern": STR_, "layers": Each({"count": INT}), "massive_channels": Each(INT)},
}  # fmt: skip


def _kind(spec) -> str:
    if isinstance(spec, dict):
        return "an object"
    if isinstance(spec, (list, Each)):
        return "a list" if isinstance(spec, list) else "an object"
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list", NONE: "null"}
    if spec == NUM or spec == NUM_:
        return "a number" + (" or null" if NONE in spec else "")
    return " or ".join(names[t] for t in spec)


def check(value, spec, key: str, path: Path) -> None:
    """Raise a ``StreamscopeError`` naming ``path`` and the key where ``value`` is not of the types ``spec`` says."""
    if isinstance(spec, tuple):
        ok = isinstance(value, spec) and (not isinstance(value, bool) or bool in spec)
    else:
        ok = isinstance(value, list if isinstance(spec, list) else dict)
    if not ok:
        got = f"{type(value).__name__} {json.dumps(value)[:60]}" if not isinstance(value, (dict, list)) else type(value).__name__
        raise StreamscopeError(f"{path}: {key} must be {_kind(spec)}, got {got}; the file was edited or is damaged: "
                               "run the command that wrote it again")  # fmt: skip
    if isinstance(spec, dict):
        for k, sub in spec.items():
            if k in value:
                check(value[k], sub, f"{key}.{k}" if key else k, path)
    elif isinstance(spec, list):
        for i, item in enumerate(value):
            check(item, spec[0], f"{key}[{i}]", path)
    elif isinstance(spec, Each):
        for k, item in value.items():
            check(item, spec.spec, f"{key}[{json.dumps(k)}]", path)


def _validated(path: Path, spec) -> dict:
    data = read_object(path)
    check(data, spec, "", path)
    return data


@dataclass
class Results:
    """A run's results: ``tensors`` (name -> record), ``model`` (model-level results), ``table`` (one row per tensor),
    ``errors``, and the arrays of ``path/arrays.zarr`` read on demand (``histogram``, ``array``, ...).

    ``streamscope.scan`` returns one (``out`` is ``path``); ``Results.open(DIR)`` reads one from a directory.

    Example:
        >>> r = streamscope.Results.open("results/Qwen2.5-7B")  # doctest: +SKIP
        >>> r.table.sort_values("basic_stats.abs_max").tail()  # doctest: +SKIP
    """

    path: Path
    tensors: dict[str, dict]
    model: dict
    embeddings: dict | None = None  # embeddings.json of `streamscope embeddings`, when present
    activations: dict | None = None  # activations.json of `streamscope activations`, when present
    _zarr: object = field(default=None, repr=False)
    errors: list[str] = field(default_factory=list)  # what failed in the run (model.json's ``errors`` when opened)
    _table: object = field(default=None, repr=False)  # built from ``tensors`` when first asked for, unless given

    @classmethod
    def from_scan(cls, out: Path, tensors: dict[str, dict], table: "pd.DataFrame", model: dict, errors: list[str]) -> "Results":
        """What a scan just wrote into ``out``, with the table it wrote (no file read back)."""
        return cls(Path(out), tensors, model, errors=errors, _table=table)

    @property
    def out(self) -> Path:
        """The results directory (``path``): the name a scan's result has always given it."""
        return self.path

    @property
    def table(self) -> "pd.DataFrame":
        """One row per tensor, nested fields flattened to ``section.field`` columns (``tensors.csv``'s rows)."""
        if self._table is None:
            from streamscope.results import PROVENANCE_COLUMNS, tensor_table

            origin = self.model.get("provenance") or {}
            columns = {k: origin.get(k) for k in PROVENANCE_COLUMNS} if origin.get("model_id") else {}
            self._table = tensor_table(self.tensors, self.model.get("model_path"), columns)
        return self._table

    @classmethod
    def open(cls, path: str | Path) -> "Results":
        """Read ``tensors.json`` and ``model.json`` of a scan's output directory.

        Raises:
            StreamscopeError: the directory is not a finished scan's output, naming what is missing.
        """
        path = Path(path)
        scanned = (path / "tensors.json").is_file() and (path / "model.json").is_file()
        studied = (path / "embeddings.json").is_file()
        profiled = (path / "activations.json").is_file()
        if not scanned and not studied and not profiled:
            raise StreamscopeError(f"{path}: not a finished scan's results directory (no tensors.json and model.json, "
                                   "no embeddings.json, no activations.json); run `streamscope scan CHECKPOINT --out DIR` first")  # fmt: skip
        tensors = _validated(path / "tensors.json", Each(RECORD)) if scanned else {}
        model = _validated(path / "model.json", MODEL) if scanned else {}
        embeddings = _validated(path / "embeddings.json", EMBEDDINGS) if studied else None
        if embeddings and not model:
            model = {"model_path": embeddings.get("model_path"), "schema_version": embeddings.get("schema_version"),
                     "embedding": embeddings.get("norms") or {}}  # fmt: skip
        activations = _validated(path / "activations.json", ACTIVATIONS) if profiled else None
        if activations and not model:
            model = {"model_path": activations["run"].get("model")}
        return cls(path, tensors, model, embeddings, activations, errors=list(model.get("errors") or []))

    @cached_property
    def matrices(self) -> dict[str, dict]:
        """Records of tensors with two or more dims, in disk order."""
        return {n: r for n, r in self.tensors.items() if len(r.get("info", {}).get("shape", [])) >= 2}

    def field(self, section: str, key: str, names=None) -> dict[str, float]:
        """``{tensor: record[section][key]}`` for every tensor that has a number there."""
        out = {}
        for n in names if names is not None else self.tensors:
            v = (self.tensors[n].get(section) or {}).get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[n] = float(v)
        return out

    def embedding_array(self, name: str, key: str) -> np.ndarray | None:
        """An array of the embedding study (``labels``, ``centroids``, ``projection``, ...), or None."""
        root = self._arrays()
        if not root or "embeddings" not in root:
            return None
        for _, g in root["embeddings"].groups():
            if g.attrs.get("tensor") == name and key in g:
                return np.asarray(g[key][:])
        return None

    def activation_heatmap_peak(self) -> tuple[str, np.ndarray] | None:
        """``(module, |x| (tokens x channels))`` of the heatmap sample, for the module with the largest value;
        the maps are read one at a time (one per selected layer: together they grow with the model)."""
        root = self._arrays()
        if not root or "activations" not in root or "heatmap" not in root["activations"]:
            return None
        best = None  # (peak, module, map): at most two maps in memory at once
        for _, a in root["activations"]["heatmap"].arrays():
            values = np.asarray(a[:])
            peak = float(np.max(values)) if values.size else float("-inf")
            if best is None or peak > best[0]:
                best = (peak, a.attrs["module"], values)
        return best[1:] if best else None

    def _arrays(self):
        if self._zarr is None:
            import zarr

            store = self.path / "arrays.zarr"
            self._zarr = zarr.open_group(str(store), mode="r") if store.exists() else False
        return self._zarr

    @cached_property
    def _hist_index(self) -> dict[str, int]:
        root = self._arrays()
        if not root or "histograms" not in root:
            return {}
        return {n: i for i, n in enumerate(root["histograms"].attrs["tensor_names"])}

    def histogram(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        """``(counts, edges)`` of a tensor's value histogram, or None."""
        i = self._hist_index.get(name)
        if i is None:
            return None
        h = self._arrays()["histograms"]
        return np.asarray(h["counts"][i]), np.asarray(h["edges"][i])

    @cached_property
    def _array_index(self) -> dict[str, dict[str, tuple[int, int]]]:
        """``{key: {tensor: (start, stop)}}`` of the ragged per-tensor arrays (see ``ResultStore.write_arrays``)."""
        root = self._arrays()
        if not root or "tensors" not in root:
            return {}
        index = {}
        for key, g in root["tensors"].groups():
            names, offsets = g.attrs.get("tensor_names", []), g.attrs.get("offsets", [])
            index[key] = {n: (offsets[i], offsets[i + 1]) for i, n in enumerate(names)}
        return index

    def array(self, name: str, key: str) -> np.ndarray | None:
        """A per-tensor array (``singular_values``, ``row_norms``), or None."""
        span = self._array_index.get(key, {}).get(name)
        if span is None:
            return None
        return np.asarray(self._arrays()["tensors"][key]["values"][span[0] : span[1]])


def read_object(path: Path) -> dict:
    """The JSON object in ``path`` (UTF-8); one error naming the file where it is not valid JSON or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise StreamscopeError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise StreamscopeError(f"{path}: must hold a JSON object")
    return data
