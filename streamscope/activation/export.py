"""The files of an activation run (``--out DIR``); each appears whole or not at all.

- ``activations.json``: run facts, each probe's record under its key (``modules``, ``weights``, ``outliers``,
  ``distribution``, ...), the config used.
- ``activations.csv`` / ``.parquet``: a row per module and direction, the columns of every probe that has rows.
- ``arrays.zarr/activations``: ``input_ids`` (num_samples x seq_len) and the probes' arrays (``heatmap/...``);
  only this group is replaced, so a scan's arrays in the same directory stay.
- each probe's own files (``outliers.csv``, ``act_scales.pt``, ``imatrix.gguf``, ...).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from streamscope.results import write_atomic
from streamscope.results import write_json as write_result

KEY_COLUMNS = ("module", "direction")


def records(collector, run) -> dict:
    """Each probe's part of ``activations.json``, under its key (from no module where it did not run)."""
    out = {}
    for p in collector.registered:
        if p.record is not None:
            out[p.json_key] = p.record(collector.reduced[p.name], run)
    return out


def write(out: Path, collector, run) -> dict[str, str | None]:
    """Write every file but ``activations.json``; returns ``{file: note}`` (None when written)."""
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str | None] = {}
    rows, columns = table(collector, run)
    write_csv(out / "activations.csv", rows, columns)
    files["activations.csv"] = None
    import pandas as pd

    write_atomic(out / "activations.parquet", lambda p: pd.DataFrame(rows, columns=columns).to_parquet(p, index=False))
    files["activations.parquet"] = None
    for p in collector.probes:
        if p.files is not None:
            files.update(p.files(collector.reduced[p.name], run))
    _write_arrays(out, collector, run)
    files["arrays.zarr"] = None
    return files


def table(collector, run) -> tuple[list[dict], list[str]]:
    """The rows of every probe with a table, joined on (module, direction), in the order they first appear."""
    joined: dict[tuple, dict] = {}
    columns = list(KEY_COLUMNS)
    for p in collector.probes:
        if p.table is None:
            continue
        for row in p.table(collector.reduced[p.name], run):
            joined.setdefault((row["module"], row.get("direction")), {}).update(row)
            columns += [c for c in row if c not in columns]
    return list(joined.values()), columns


def write_json(out: Path, record: dict) -> None:
    write_result(out / "activations.json", record)


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    def write_file(p: Path) -> None:
        with open(p, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

    write_atomic(path, write_file)


def _write_arrays(out: Path, collector, run) -> None:
    """``arrays.zarr/activations``, put in place of the old group alone (``results.replace_groups``)."""
    from streamscope.results import replace_groups

    def fill(root) -> None:
        g = root.require_group("activations")
        g.create_array("input_ids", data=run.input_ids.numpy().astype(np.int64))
        for p in collector.probes:
            if p.arrays is not None:
                p.arrays(g, collector.reduced[p.name], run)

    replace_groups(out, "activations", ("activations",), fill)
