"""A finished results directory, read for the report: records, model results, and arrays on demand.

Nothing here touches the checkpoint: histograms, spectra and row norms come from ``arrays.zarr``, each read
only when a figure asks for it, so a 72B model's results render in little memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from streamscope.errors import StreamscopeError


@dataclass
class Results:
    path: Path
    tensors: dict[str, dict]
    model: dict
    embeddings: dict | None = None  # embeddings.json of `streamscope embeddings`, when present
    activations: dict | None = None  # activations.json of `streamscope activations`, when present
    _zarr: object = field(default=None, repr=False)

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
        tensors = _read(path / "tensors.json") if scanned else {}
        model = _read(path / "model.json") if scanned else {}
        embeddings = _read(path / "embeddings.json") if studied else None
        if embeddings and not model:
            model = {"model_path": embeddings.get("model_path"), "schema_version": embeddings.get("schema_version"),
                     "embedding": embeddings.get("norms") or {}}  # fmt: skip
        activations = _read(path / "activations.json") if profiled else None
        if activations and not model:
            model = {"model_path": activations["run"].get("model")}
        return cls(path, tensors, model, embeddings, activations)

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


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise StreamscopeError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise StreamscopeError(f"{path}: must hold a JSON object")
    return data
