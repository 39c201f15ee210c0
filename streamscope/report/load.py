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
    _zarr: object = field(default=None, repr=False)

    @classmethod
    def open(cls, path: str | Path) -> "Results":
        """Read ``tensors.json`` and ``model.json`` of a scan's output directory.

        Raises:
            StreamscopeError: the directory is not a finished scan's output, naming what is missing.
        """
        path = Path(path)
        missing = [f for f in ("tensors.json", "model.json") if not (path / f).is_file()]
        if missing:
            raise StreamscopeError(f"{path}: not a finished scan's results directory (no {', '.join(missing)}); "
                                   "run `streamscope scan CHECKPOINT --out DIR` first")  # fmt: skip
        try:
            tensors = json.loads((path / "tensors.json").read_text(encoding="utf-8"))
            model = json.loads((path / "model.json").read_text(encoding="utf-8"))
        except ValueError as e:
            raise StreamscopeError(f"{path}: tensors.json or model.json is not valid JSON ({e})") from e
        if not isinstance(tensors, dict) or not isinstance(model, dict):
            raise StreamscopeError(f"{path}: tensors.json and model.json must hold JSON objects")
        return cls(path, tensors, model)

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
    def _array_groups(self) -> dict[str, str]:
        root = self._arrays()
        if not root or "tensors" not in root:
            return {}
        return {g.attrs.get("tensor", key): key for key, g in root["tensors"].groups()}

    def array(self, name: str, key: str) -> np.ndarray | None:
        """A per-tensor array (``singular_values``, ``row_norms``), or None."""
        group = self._array_groups.get(name)
        if group is None:
            return None
        g = self._arrays()["tensors"][group]
        return np.asarray(g[key][:]) if key in g else None
