"""The files of an activation run (``--out DIR``); each appears whole or not at all.

- ``activations.json``: run facts, magnitude records per module and direction, weight magnitudes, outliers,
  distributions, the config used.
- ``activations.csv`` / ``.parquet``: a row per module and direction (the magnitude record).
- ``outliers.csv``: a row per outlier token (layer, sample, position, token id, token text).
- ``act_scales.pt``: SmoothQuant's format, ``{module name: float32 tensor [in_features]}`` of per-channel
  max |x| over every token of every sample (``torch.load(..., weights_only=True)``).
- ``imatrix.gguf``: llama.cpp's importance matrix (``general.type = imatrix``; per weight, ``<gguf name>.in_sum2``
  the per-channel sum of x^2 and ``<gguf name>.counts`` the tokens), when the architecture's GGUF tensor names
  are known to the ``gguf`` package.
- ``arrays.zarr``: ``activations/input_ids`` (num_samples x seq_len) and ``activations/heatmap/<module>``.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np

from streamscope.results import _atomic, json_safe

#: transformers model types whose GGUF architecture has another name.
GGUF_ARCH_ALIASES = {"mistral": "llama", "mixtral": "llama", "qwen2_5_vl": "qwen2vl", "qwen2_vl": "qwen2vl", "qwen2_moe": "qwen2moe",
                     "qwen3_moe": "qwen3moe", "gpt_neox": "gptneox", "phimoe": "phimoe"}  # fmt: skip


def write(out: Path, record: dict, input_ids, channels: dict, heatmaps: dict, skeleton, index) -> dict[str, str | None]:
    """Write every file but ``activations.json``; returns ``{file: note}`` (None when written)."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str | None] = {}
    rows = [{"module": n, "direction": d, **r} for n, dirs in record["modules"].items() for d, r in dirs.items()]
    _atomic(out / "activations.csv", lambda p: _csv(p, rows, ["module", "direction", "top1", "top2", "top3", "median", "min", "mean_abs", "count"]))
    files["activations.csv"] = None
    try:
        import pandas as pd

        _atomic(out / "activations.parquet", lambda p: pd.DataFrame(rows).to_parquet(p, index=False))
        files["activations.parquet"] = None
    except ImportError as e:  # pragma: no cover - pandas and pyarrow are dependencies
        files["activations.parquet"] = f"not written: {e}"
    outlier_rows = []
    for layer, r in record["outliers"]["layers"].items():
        texts = r.get("tokens") or [None] * len(r["positions"])
        for (s, t), tid, text in zip(r["positions"], r["token_ids"], texts):
            outlier_rows.append({"module": layer, "sample": s, "position": t, "token_id": tid, "token": text})
    _atomic(out / "outliers.csv", lambda p: _csv(p, outlier_rows, ["module", "sample", "position", "token_id", "token"]))
    files["outliers.csv"] = None
    scales = {n: c.absmax.to("cpu", torch.float32).contiguous() for n, c in channels.items() if c.absmax is not None}
    _atomic(out / "act_scales.pt", lambda p: torch.save(scales, p))
    files["act_scales.pt"] = None
    files["imatrix.gguf"] = write_imatrix(out / "imatrix.gguf", channels, skeleton, record)
    _write_arrays(out, input_ids, heatmaps)
    files["arrays.zarr"] = None
    return files


def write_json(out: Path, record: dict) -> None:
    _atomic(out / "activations.json", lambda p: p.write_text(json.dumps(json_safe(record), indent=1)))


def gguf_arch(model_type: str) -> str | None:
    try:
        import gguf
    except ImportError:
        return None
    names = set(gguf.MODEL_ARCH_NAMES.values())
    for candidate in (GGUF_ARCH_ALIASES.get(model_type), model_type, model_type.replace("_", ""), model_type.replace("_", "-")):
        if candidate and candidate in names:
            return candidate
    return None


def write_imatrix(path: Path, channels: dict, skeleton, record: dict) -> str | None:
    """llama.cpp's importance matrix in GGUF; returns None when written, else why not."""
    arch = gguf_arch(skeleton.model_type)
    if arch is None:
        return f"not written: no GGUF architecture known for model type {skeleton.model_type!r}"
    import gguf

    enum = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)
    tmap = gguf.get_tensor_name_map(enum, record["run"]["n_layers"])
    entries = []
    for name, c in channels.items():
        if c.sum2 is None:
            continue
        target = tmap.get_name(name)
        if target is None and ".language_model." in name:  # a multimodal model's text layers
            target = tmap.get_name(name.replace(".language_model.", "."))
        if target is None:
            continue
        entries.append((f"{target}.weight", c))
    if not entries:
        return f"not written: no Linear layer maps to a GGUF tensor name of {arch}"

    def write_file(p: Path) -> None:
        w = gguf.GGUFWriter(str(p), arch=arch)
        w.add_type("imatrix")
        w.add_array("imatrix.datasets", [record["run"]["source"]])
        w.add_uint32("imatrix.chunk_count", record["run"]["num_samples"])
        w.add_uint32("imatrix.chunk_size", record["run"]["seq_len"])
        for name, c in entries:
            w.add_tensor(f"{name}.in_sum2", c.sum2.to("cpu").numpy().astype(np.float32).reshape(1, -1))
            w.add_tensor(f"{name}.counts", np.array([[float(c.tokens)]], dtype=np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    _atomic(path, write_file)
    return None


def _write_arrays(out: Path, input_ids, heatmaps: dict) -> None:
    import zarr

    tmp = out / ".arrays.zarr.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    root = zarr.open_group(str(tmp), mode="w")
    g = root.require_group("activations")
    g.create_array("input_ids", data=input_ids.numpy().astype(np.int64))
    if heatmaps:
        h = g.require_group("heatmap")
        for i, (name, arr) in enumerate(heatmaps.items()):
            data = np.load(arr, mmap_mode="r") if isinstance(arr, Path) else arr  # spilled: read back one at a time
            a = h.create_array(f"m{i:04d}", data=data)
            a.attrs["module"] = name
            del data
    final = out / "arrays.zarr"
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def _csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
