"""The files of a sensitivity run (``--out DIR``); each appears whole or not at all.

- ``sensitivity.json``: ``run``, ``local``, ``smoothquant``, ``propagated``, ``plan``, ``recipes``;
- ``sensitivity.csv`` / ``.parquet``: a row per Linear and scheme (local errors; SmoothQuant as ``w8a8`` and
  ``w8a8_smooth`` rows);
- ``recipe.yaml`` (llm-compressor) and ``tensor_types.txt`` (``llama-quantize --tensor-type-file``): the plan,
  or the first recipe where there is no plan;
- ``arrays.zarr/sensitivity/input_ids``: the calibration tokens.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamscope.activation.export import write_csv
from streamscope.activation.sensitivity import recipe as recipe_mod
from streamscope.results import write_atomic, write_json

COLUMNS = ["module", "layer", "scheme", "sqnr_db", "rel_mse", "weight_sqnr_db", "alpha"]


def rows(local: dict, smooth: dict, prefix: str) -> list[dict]:
    from streamscope.activation.sensitivity.run import module_layer

    out = []
    for module, per in local.items():
        layer = module_layer(module, prefix)
        for scheme, r in per.items():
            out.append({"module": module, "layer": layer, "scheme": scheme, **(r or {})})
        sq = smooth.get(module)
        if sq:
            curve = sq["w8a8_sqnr_db"]
            out.append({"module": module, "layer": layer, "scheme": "w8a8", "sqnr_db": curve["none"]})
            out.append({"module": module, "layer": layer, "scheme": "w8a8_smooth", "sqnr_db": curve[f"{sq['best_alpha']:g}"], "alpha": sq["best_alpha"]})
    return out


def gguf_names(prep, modules: list[str]) -> dict[str, str]:
    """HF module name -> GGUF tensor name, where the ``gguf`` package knows the architecture."""
    from streamscope.activation.probes.imatrix import gguf_names as names

    return names(prep.skeleton.model_type, len(prep.skeleton.layers), modules)


def write(out: Path, prep, model, first, plan: dict | None, facts: dict, recipes: list) -> dict:
    import pandas as pd

    table = rows(first.local, first.smoothquant, model.prefix)
    write_csv(out / "sensitivity.csv", table, COLUMNS)
    write_atomic(out / "sensitivity.parquet", lambda p: pd.DataFrame(table, columns=COLUMNS).to_parquet(p, index=False))
    assignment = (plan or {}).get("assignment") or recipes[0].assign(list(model.linears))
    recipe_mod.write_llm_compressor(out / "recipe.yaml", assignment, ["lm_head"])
    names = gguf_names(prep, list(model.linears))
    lines = recipe_mod.write_tensor_types(out / "tensor_types.txt", assignment, names, recipes[0].scheme)
    facts["files"] = {"sensitivity.csv": None, "sensitivity.parquet": None, "recipe.yaml": None,
                      "tensor_types.txt": None if names else "empty: no GGUF tensor names known for this architecture",
                      "arrays.zarr": None}  # fmt: skip
    facts["tensor_type_lines"] = lines
    _write_ids(out, prep.ids)
    plan_out = None if plan is None else {k: v for k, v in plan.items() if k != "assignment"}
    record = {"run": facts, "local": first.local, "smoothquant": first.smoothquant, "propagated": first.propagated, "plan": plan_out,
              "recipes": {r.name: {"scheme": r.scheme, "overrides": r.overrides, "ignore": r.ignore} for r in recipes}}  # fmt: skip
    write_json(out / "sensitivity.json", record)
    return record


def _write_ids(out: Path, ids) -> None:
    from streamscope.results import replace_groups

    def fill(root) -> None:
        root.require_group("sensitivity").create_array("input_ids", data=ids.numpy().astype(np.int64))

    replace_groups(out, "sensitivity", ("sensitivity",), fill)
