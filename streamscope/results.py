"""One result store, many views: per-tensor records (JSON, CSV, Parquet), model results, arrays in zarr.

While a scan runs, every finished tensor is appended to ``.partial/records.jsonl`` and its arrays' bytes to
``.partial/arrays.bin`` (the record line says where they lie); a later scan of the same checkpoint with the same
options reuses what it finds there. One appended file, not a ``.npz`` per tensor: saving and re-reading a file
per tensor took a large share of a small model's scan (benchmarks/README.md).
``arrays.zarr`` is written once at the end: value histograms stacked as ``histograms/counts`` (tensors x
bins) and ``histograms/edges``, row i belonging to ``histograms.attrs["tensor_names"][i]``, and other arrays (embedding row norms,
singular values) as one ragged array per kind, ``tensors/<kind>/values``, indexed by the group's
``tensor_names`` and ``offsets`` attributes (``results_dir.Results.array`` reads one tensor's). A scan owns
those two groups alone: ``embeddings`` and ``activations`` runs into the same directory own theirs, and each
command moves only its own groups into place (``replace_groups``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from streamscope.errors import StreamscopeError

if TYPE_CHECKING:
    import pandas as pd

PARTIAL = ".partial"
#: The groups of ``arrays.zarr`` that a scan owns; ``embeddings`` and ``activations`` belong to those commands.
SCAN_GROUPS = ("histograms", "tensors")
#: Where a hub model came from, a column of every table row.
PROVENANCE_COLUMNS = ("model_id", "revision", "created_at")


class ResultStore:
    """The output directory of a run: finished results kept in ``.partial/`` as they come, final files at the end.

    Held with an exclusive lock (``.partial.lock`` beside ``.partial``) from creation to ``close``: a second run
    into the same directory fails at once, naming the process that holds it. Use as a context manager.
    """

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
        self._array_spans: dict[str, dict[str, list]] = {}  # name -> {key: [offset, dtype, shape]} in arrays.bin
        self._partial = self.out / partial
        self._lock = lock_file(self.out / f"{partial}.lock")
        self.columns: dict = {}  # constant columns of every table row (provenance of a hub model)
        self._log = self._blob = None
        try:
            if not resume and self._partial.exists():
                shutil.rmtree(self._partial)
            self._partial.mkdir(parents=True, exist_ok=True)
            self._records_file = self._partial / "records.jsonl"
            if resume:
                self._load_partial()
            # unbuffered: a failed write leaves nothing behind
            self._log = open(self._records_file, "ab", buffering=0)
            self._blob = open(self._partial / "arrays.bin", "a+b", buffering=0)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def partial_dir(self) -> Path:
        return self._partial

    def _load_partial(self) -> None:
        if not self._records_file.exists():
            return
        blob = self._partial / "arrays.bin"
        size = blob.stat().st_size if blob.exists() else 0
        with open(self._records_file, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                    if entry.get("options") == self.options and entry.get("model_path") == self.model_path:
                        name = entry["name"]
                        spans = {k: _span(v) for k, v in entry["arrays"].items()}
                        if any(_end(span) > size for span in spans.values()):
                            continue  # its arrays are not all there (the file was cut): computed again
                        self.records[name] = entry["record"]
                        self.fingerprints[name] = entry["fingerprint"]
                        self._array_spans[name] = spans
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue  # a line cut short by a kill, or not ours

    def done(self, name: str, fingerprint: str) -> bool:
        return self.fingerprints.get(name) == fingerprint and name in self.records

    def add(self, name: str, fingerprint: str, record: dict, arrays: dict[str, np.ndarray]) -> None:
        """Store one tensor's results now, so that an interrupted run keeps them.

        The arrays go first, so that a record line never points at bytes that are not there; the line carries
        the checkpoint and options, so results of different checkpoints or options are never mixed.
        """
        spans = {}
        for key, value in arrays.items():
            a = np.ascontiguousarray(value)
            spans[key] = [_append(self._blob, a.tobytes()), a.dtype.str, list(a.shape)]
        line = {"name": name, "fingerprint": fingerprint, "options": self.options, "model_path": self.model_path,
                "arrays": spans, "record": record}  # fmt: skip
        # Infinity and NaN kept: resumed tables equal fresh ones. One line per write; a line the disk could not
        # take whole is cut off, so that no half line is left to be flushed when the file closes.
        _append(self._log, (json.dumps(json_plain(line)) + "\n").encode())
        self.records[name] = record
        self.fingerprints[name] = fingerprint
        self._array_spans[name] = spans

    def discard_partial(self) -> None:
        """Remove ``.partial/`` once the final files are written (a successful run leaves none behind)."""
        self._close_files()
        shutil.rmtree(self._partial, ignore_errors=True)

    def _close_files(self) -> None:
        files, self._log, self._blob = (self._log, self._blob), None, None
        try:
            if files[0] is not None:
                files[0].close()
        finally:
            if files[1] is not None:
                files[1].close()

    def close(self) -> None:
        try:
            self._close_files()
        finally:
            if self._lock is not None:
                unlock_file(self._lock)
                self._lock = None

    def table(self, order: list[str] | None = None, lists: bool = False) -> "pd.DataFrame":
        """One row per tensor, nested fields flattened to ``section.field`` columns.

        ``lists``: the shape and list-valued fields (top singular values, health reasons) as lists, for Parquet;
        else as text that a CSV holds (``384x1536``, JSON lists)."""
        names = [n for n in (order or self.records) if n in self.records]
        return tensor_table({n: self.records[n] for n in names}, self.model_path, self.columns, lists)

    def arrays(self, name: str) -> dict[str, np.ndarray]:
        """The arrays stored for one tensor (read back from ``arrays.bin``)."""
        out = {}
        for key, span in self._array_spans.get(name, {}).items():
            offset, dtype, shape = span
            n = _end(span) - offset
            data = os.pread(self._blob.fileno(), n, offset) if n else b""
            if len(data) != n:
                raise StreamscopeError(f"{self._partial / 'arrays.bin'}: cut short while this run read it")
            out[key] = np.frombuffer(data, dtype=dtype).reshape(shape)  # read-only: every reader only reads
        return out

    def write_arrays(self, names: list[str]) -> None:
        """Write ``arrays.zarr`` from the stored per-tensor arrays, in a handful of zarr writes.

        Layout: ``histograms/counts`` and ``histograms/edges`` (one row per tensor, names in the group's
        ``tensor_names``); every other per-tensor array (``singular_values``, ``row_norms``: 1-D) is one
        ragged array ``tensors/<key>/values``, all tensors' values end to end, with the group's attributes
        ``tensor_names`` and ``offsets`` (tensor i holds ``values[offsets[i]:offsets[i + 1]]``): creating a zarr
        array per tensor costs more than the scan of a small model's tensors (benchmarks/README.md).

        Only the scan's own groups (``SCAN_GROUPS``) are replaced: the ``embeddings`` and ``activations`` groups
        of other commands run into the same directory stay (see ``replace_groups``).
        """
        hist_names, counts, edges = [], [], []
        ragged: dict[str, tuple[list[str], list[np.ndarray]]] = {}
        for name in names:
            arrays = self.arrays(name)
            if "histogram_counts" in arrays:
                hist_names.append(name)
                counts.append(arrays.pop("histogram_counts"))
                edges.append(arrays.pop("histogram_edges"))
            for key, value in arrays.items():
                entry = ragged.setdefault(key, ([], []))
                entry[0].append(name)
                entry[1].append(np.asarray(value).reshape(-1))

        def fill(root) -> None:
            if hist_names:
                h = root.create_group("histograms")
                h.create_array("counts", data=np.stack(counts))
                h.create_array("edges", data=np.stack(edges))
                h.attrs["tensor_names"] = hist_names
            per_tensor = root.create_group("tensors", attributes={"written_by": "scan"})
            for key, (tensor_names, values) in ragged.items():
                write_ragged(per_tensor, key, tensor_names, values)

        replace_groups(self.out, "scan", SCAN_GROUPS, fill)

    def write_tables(self, model: dict, order: list[str] | None = None) -> "pd.DataFrame":
        """Write ``tensors.json/csv/parquet``, ``model.json`` and ``arrays.zarr``; each file appears whole or not at all."""
        names = [n for n in (order or self.records) if n in self.records]
        self.write_arrays(names)
        write_json(self.out / "tensors.json", {n: self.records[n] for n in names})
        write_json(self.out / "model.json", model)
        df = self.table(names)
        write_atomic(self.out / "tensors.csv", lambda p: df.to_csv(p, index=False))
        typed = self.table(names, lists=True)  # list columns as Parquet lists, not the CSV's text
        write_atomic(self.out / "tensors.parquet", lambda p: typed.to_parquet(p, index=False))
        return df


def tensor_table(records: dict[str, dict], model_path: str | None, columns: dict | None = None, lists: bool = False) -> "pd.DataFrame":
    """One row per record (``tensors.csv``'s rows; ``ResultStore.table``), nested fields flattened to ``section.field``.

    ``columns``: constant columns of every row (a hub model's provenance); ``lists``: see ``ResultStore.table``."""
    import pandas as pd

    from streamscope.analyses import REGISTRY

    skip = {"info"} | {a.key for a in REGISTRY.of_kind("block", "tensor") if not a.table}  # info: the columns above
    rows = []
    for name, rec in records.items():
        row = {"model_path": model_path, **(columns or {}), "tensor": name}
        info = rec["info"]
        shape = [int(d) for d in info["shape"]] if lists else "x".join(map(str, info["shape"]))
        row.update(layer_index=info["layer_index"], block_type=info["block_type"], shape=shape, dtype=info["dtype"])
        row.update({f"info.{k}": v for k, v in info.items() if k not in ("shape", "dtype", "layer_index", "block_type")})
        for section, values in rec.items():
            if section in skip or not isinstance(values, dict):
                continue
            row.update(_flatten(values, section, lists))
        rows.append(row)
    df = pd.DataFrame(rows)
    if "layer_index" in df:
        df["layer_index"] = df["layer_index"].astype("Int64")
    return df


def write_ragged(parent, key: str, names: list[str], values: list[np.ndarray]) -> None:
    """``parent/<key>/values``: the 1-D ``values`` of every tensor end to end; the group's attributes
    ``tensor_names`` and ``offsets`` say that tensor i holds ``values[offsets[i]:offsets[i + 1]]``."""
    values = [np.asarray(v).reshape(-1) for v in values]
    offsets = np.concatenate([[0], np.cumsum([v.size for v in values])]).astype(int).tolist()
    g = parent.create_group(key, attributes={"tensor_names": list(names), "offsets": offsets})
    g.create_array("values", data=np.concatenate(values) if values else np.zeros(0))


def replace_groups(out: Path, tag: str, owned: tuple[str, ...], fill, may_replace=None) -> None:
    """Write the groups ``owned`` of ``out/arrays.zarr``: built beside it (``.<tag>.zarr.tmp``) by ``fill(root)``,
    then each moved in place of the old group alone, every other command's group left as it is.

    An owned group that ``fill`` did not create is removed (an earlier run's would not match this run's results),
    unless ``may_replace(name, path)`` says the group there is not ours to touch. The moves happen under an
    exclusive lock on ``arrays.zarr`` itself, so commands finishing at once never lose each other's groups.
    """
    import zarr

    out = Path(out)
    root = out / "arrays.zarr"
    tmp = out / f".{tag}.zarr.tmp"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            fill(zarr.open_group(str(tmp), mode="w"))
        except OSError as e:
            raise _naming(e, root) from e
        root.mkdir(exist_ok=True)
        with _held(root):
            zarr.open_group(str(root), mode="a")  # the root's metadata, written when absent
            for name in owned:
                if may_replace is None or may_replace(name, root / name):
                    _swap(tmp / name, root / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap(new: Path, final: Path) -> None:
    """Put the directory ``new`` (when it exists) in place of ``final``: the old one is moved aside, then removed."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    if new.exists():
        new.rename(final)
    shutil.rmtree(old, ignore_errors=True)


class _held:
    """An exclusive lock on a directory, waited for (held only while groups are moved in place)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        import fcntl

        self.fd = os.open(self.path, os.O_RDONLY)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)  # releases the lock


def write_atomic(path: Path, write) -> None:
    """``write(tmp)`` beside ``path``, then moved in its place; an OS error (a full disk) names ``path``."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise _naming(e, path) from e
    finally:
        tmp.unlink(missing_ok=True)


def json_text(record) -> str:
    """The JSON text of every result file and ``--json`` output: strict JSON (``json_safe``), one space of indent,
    non-ASCII characters (token strings, module names) written as they are."""
    return json.dumps(json_safe(record), indent=1, ensure_ascii=False)


def write_json(path: Path, record) -> None:
    """Write ``record`` as a result file at ``path`` (``json_text``, UTF-8), whole or not at all (``write_atomic``)."""
    text = json_text(record)
    write_atomic(Path(path), lambda p: p.write_text(text, encoding="utf-8"))


def _naming(e: OSError, path: Path) -> OSError:
    """``e`` as an error of ``path`` (what the user knows), its errno kept for the CLI's hint (a full disk)."""
    return OSError(e.errno, f"cannot write it: {e.strerror or e}" if e.errno else f"cannot write it: {e}", str(path))


_SAFE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def _append(f, data: bytes) -> int:
    """Append ``data`` to the unbuffered file ``f`` whole, or raise with the file as it was; returns the offset
    at which ``data`` begins."""
    end = os.fstat(f.fileno()).st_size
    try:
        view = memoryview(data)
        while view:
            view = view[f.write(view) :]
    except OSError:
        os.ftruncate(f.fileno(), end)
        raise
    return end


def _span(value) -> list:
    """A record line's ``[offset, dtype, shape]``, checked (a line of another version raises ValueError)."""
    offset, dtype, shape = value
    if not isinstance(offset, int) or offset < 0 or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ValueError(value)
    np.dtype(dtype)  # TypeError when unknown
    return [offset, dtype, list(shape)]


def _end(span: list) -> int:
    offset, dtype, shape = span
    return offset + np.dtype(dtype).itemsize * math.prod(shape)


def lock_file(path: Path):
    """An exclusive, non-blocking lock on ``path``; the file says which process holds it."""
    import fcntl

    try:
        fh = open(path, "a+", encoding="utf-8")
    except OSError as e:
        raise StreamscopeError(f"{path.parent}: cannot lock the output directory: {e.strerror or e}") from e
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise StreamscopeError(f"{path.parent}: in use by {holder}; wait for it to finish or choose another --out") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"process {os.getpid()} ({' '.join(sys.argv[:3])[:120]})")
    fh.flush()
    return fh


def unlock_file(fh) -> None:
    import fcntl

    try:
        Path(fh.name).unlink(missing_ok=True)  # a finished run leaves no lock file behind
        fcntl.flock(fh, fcntl.LOCK_UN)
    finally:
        fh.close()


def _flatten(d: dict, prefix: str, lists: bool = False) -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key, lists))
        elif isinstance(v, (list, tuple)):
            out[key] = json_safe(list(v)) if lists else json.dumps(json_safe(list(v)))
        else:
            out[key] = v
    return out


def json_plain(obj):
    """Like ``json_safe`` but keeps NaN and infinities (Python's JSON writes and reads them back): for ``.partial``."""
    if isinstance(obj, dict):
        return {str(k): json_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_plain(v) for v in obj]
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


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


def zarr_key(name: str) -> str:
    """A zarr node name for a tensor: the name itself when it is a plain file name, else a hash of it."""
    plain = name.replace("/", "__")
    if _SAFE_KEY.fullmatch(plain):
        return plain
    return "tensor-" + hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()

