"""One result store, many views: per-tensor records (JSON, CSV, Parquet), model results, arrays in zarr.

While a scan runs, every finished tensor is appended to ``.partial/records.jsonl`` and its arrays to an
``.npz`` beside it; a later scan of the same checkpoint with the same options reuses what it finds there.
``arrays.zarr`` is written once at the end: value histograms stacked as ``histograms/counts`` (tensors x
bins) and ``histograms/edges``, row i belonging to ``histograms.attrs["tensor_names"][i]``, and other arrays (embedding row norms,
singular values) under ``tensors/<name>/``.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from streamscope.errors import StreamscopeError

if TYPE_CHECKING:
    import pandas as pd

PARTIAL = ".partial"


class ResultStore:
    """The output directory of a scan."""

    def __init__(self, out: str | Path, model_path: str, options_fingerprint: str, resume: bool = True, partial: str = PARTIAL):
        self.out = Path(out)
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StreamscopeError(f"{self.out}: cannot create the output directory: {e.strerror or e}") from e
        self.model_path = model_path
        self.options = options_fingerprint
        self.records: dict[str, dict] = {}
        self.fingerprints: dict[str, str] = {}
        self._array_files: dict[str, Path] = {}
        self._partial = self.out / partial
        if not resume and self._partial.exists():
            shutil.rmtree(self._partial)
        (self._partial / "arrays").mkdir(parents=True, exist_ok=True)
        self._records_file = self._partial / "records.jsonl"
        if resume:
            self._load_partial()
        self._log = open(self._records_file, "a", encoding="utf-8")

    def _load_partial(self) -> None:
        if not self._records_file.exists():
            return
        for line in self._records_file.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            if entry.get("options") == self.options and entry.get("model_path") == self.model_path:
                self.records[entry["name"]] = entry["record"]
                self.fingerprints[entry["name"]] = entry["fingerprint"]
                self._array_files[entry["name"]] = self._partial / "arrays" / entry["arrays"]

    def done(self, name: str, fingerprint: str) -> bool:
        return self.fingerprints.get(name) == fingerprint and name in self.records

    def add(self, name: str, fingerprint: str, record: dict, arrays: dict[str, np.ndarray]) -> None:
        """Store one tensor's results now, so that an interrupted scan keeps them."""
        file = f"{hashlib.sha1(name.encode()).hexdigest()[:16]}.npz"
        np.savez(self._partial / "arrays" / file, **arrays)
        self.records[name] = record
        self.fingerprints[name] = fingerprint
        self._array_files[name] = self._partial / "arrays" / file
        line = {"name": name, "fingerprint": fingerprint, "options": self.options, "model_path": self.model_path,
                "arrays": file, "record": record}  # fmt: skip
        self._log.write(json.dumps(json_safe(line)) + "\n")
        self._log.flush()

    def close(self) -> None:
        self._log.close()

    def table(self, order: list[str] | None = None) -> "pd.DataFrame":
        """One row per tensor, nested fields flattened to ``section.field`` columns."""
        import pandas as pd

        names = [n for n in (order or self.records) if n in self.records]
        rows = []
        for name in names:
            rec = self.records[name]
            row = {"model_path": self.model_path, "tensor": name}
            info = rec["info"]
            row.update(layer_index=info["layer_index"], block_type=info["block_type"], shape="x".join(map(str, info["shape"])), dtype=info["dtype"])
            row.update({f"info.{k}": v for k, v in info.items() if k not in ("shape", "dtype", "layer_index", "block_type")})
            for section, values in rec.items():
                if section in ("info", "embedding") or not isinstance(values, dict):
                    continue
                row.update(_flatten(values, section))
            rows.append(row)
        df = pd.DataFrame(rows)
        if "layer_index" in df:
            df["layer_index"] = df["layer_index"].astype("Int64")
        return df

    def arrays(self, name: str) -> dict[str, np.ndarray]:
        """The arrays stored for one tensor."""
        file = self._array_files.get(name)
        if file is None or not file.exists():
            return {}
        with np.load(file) as data:
            return {k: data[k] for k in data.files}

    def write_arrays(self, names: list[str]) -> None:
        """Write ``arrays.zarr`` from the stored per-tensor arrays, in a handful of zarr writes."""
        import zarr

        root = zarr.open_group(str(self.out / "arrays.zarr"), mode="w")
        hist_names, counts, edges = [], [], []
        per_tensor = root.require_group("tensors")
        for name in names:
            arrays = self.arrays(name)
            if "histogram_counts" in arrays:
                hist_names.append(name)
                counts.append(arrays.pop("histogram_counts"))
                edges.append(arrays.pop("histogram_edges"))
            if arrays:
                group = per_tensor.require_group(_key(name))
                for key, value in arrays.items():
                    group.create_array(key, data=value, overwrite=True)
        if hist_names:
            h = root.require_group("histograms")
            h.create_array("counts", data=np.stack(counts), overwrite=True)
            h.create_array("edges", data=np.stack(edges), overwrite=True)
            h.attrs["tensor_names"] = hist_names

    def write_tables(self, model: dict, order: list[str] | None = None) -> "pd.DataFrame":
        names = [n for n in (order or self.records) if n in self.records]
        self.write_arrays(names)
        (self.out / "tensors.json").write_text(json.dumps(json_safe({n: self.records[n] for n in names}), indent=1))
        (self.out / "model.json").write_text(json.dumps(json_safe(model), indent=1))
        df = self.table(names)
        df.to_csv(self.out / "tensors.csv", index=False)
        df.to_parquet(self.out / "tensors.parquet", index=False)
        return df


def _key(name: str) -> str:
    return name.replace("/", "__")


def _flatten(d: dict, prefix: str) -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key))
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(json_safe(list(v)))
        else:
            out[key] = v
    return out


def json_safe(obj):
    """JSON-safe copy: NaN and infinities become null (strict JSON), numpy scalars become Python numbers."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj
