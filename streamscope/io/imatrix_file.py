"""Reading an importance matrix in llama.cpp's GGUF layout (``llama-imatrix`` writes it, and so does
``streamscope activations``): per weight ``<name>.in_sum2`` (sums of x^2 per input channel, one row per matrix,
that is per expert), ``<name>.counts`` (tokens per matrix) and, in newer files, ``<name>.in_sum`` (sums of x).
Other tensors (llama.cpp's ``<name>.stats``) are ignored, as ``llama-imatrix`` ignores them.

The counts are rounded to integers (``std::lround``) as llama.cpp reads them. llama.cpp's older ``.dat`` layout is
not read: ``llama-imatrix`` converts it (``--in-file imatrix.dat -o imatrix.gguf``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamscope.io.gguf import GGUFError, GGUFMissingError

SUFFIXES = (".in_sum2", ".in_sum", ".counts")


@dataclass
class ImatrixTensor:
    """One weight's vectors: ``sums2`` and ``sums`` (None in older files) ``(matrices, channels)`` float32, ``counts``
    ``(matrices,)`` int64 (one matrix per expert of a MoE weight)."""

    sums2: np.ndarray
    counts: np.ndarray
    sums: np.ndarray | None = None


class ImatrixFileError(GGUFError):
    """A file is not a readable importance matrix."""

    hint = "give an importance matrix in GGUF (llama-imatrix -o imatrix.gguf, or streamscope activations' imatrix.gguf)"


@dataclass
class ImatrixFile:
    """An importance matrix: ``entries`` by weight name (``blk.3.attn_q.weight``), in the file's order."""

    path: Path
    entries: dict[str, ImatrixTensor]
    datasets: list[str] = field(default_factory=list)
    chunk_count: int = 0
    chunk_size: int = 0
    n_layer_nextn: int = 0

    @property
    def has_sums(self) -> bool:
        """Every tensor has ``in_sum``: llama.cpp then takes the moments of E[A] (and prints the L2 distance)."""
        return bool(self.entries) and all(v.sums is not None for v in self.entries.values())


def read_imatrix(path: str | Path) -> ImatrixFile:
    """Read an importance matrix GGUF.

    Args:
        path: the ``.gguf`` file.

    Returns:
        The ``ImatrixFile``; its vectors are float32 ``(matrices, channels)`` and int64 counts.

    Raises:
        FileNotFoundError: no such file.
        ImatrixFileError: not GGUF, no ``in_sum2``/``counts`` pair, or a pair that does not fit; naming the file.

    Example:
        >>> m = read_imatrix("out/imatrix.gguf")  # doctest: +SKIP
        >>> m.entries["blk.0.attn_q.weight"].sums2.shape  # doctest: +SKIP
        (1, 4096)
    """
    path = Path(path)
    if path.is_dir():
        raise ImatrixFileError(f"{path}: a directory, not an importance matrix file (give its imatrix.gguf)")
    if not path.is_file():
        raise FileNotFoundError(2, "no such file", str(path))
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ImatrixFileError(f"{path}: not a GGUF file (an importance matrix in llama.cpp's older .dat layout is not read)")
    try:
        from gguf import GGMLQuantizationType, GGUFReader
    except ImportError as e:
        raise GGUFMissingError(f"{path}: reading an importance matrix needs the gguf package: pip install 'streamscope[gguf]'") from e
    try:
        reader = GGUFReader(str(path), "r")
    except Exception as e:  # noqa: BLE001 - the reader raises ValueError, IndexError, struct errors...
        raise ImatrixFileError(f"{path}: invalid GGUF file: {type(e).__name__}: {str(e)[:200]}") from e
    parts: dict[str, dict] = {}
    for t in reader.tensors:
        suffix = next((s for s in SUFFIXES if t.name.endswith(s)), None)
        if suffix is None:
            continue
        if t.tensor_type != GGMLQuantizationType.F32:
            raise ImatrixFileError(f"{path}: tensor {t.name} is {t.tensor_type.name}, an importance matrix holds F32")
        parts.setdefault(t.name[: -len(suffix)], {})[suffix] = np.asarray(t.data, dtype=np.float32).reshape(-1)
    if not parts:
        raise ImatrixFileError(f"{path}: no importance matrix in this GGUF (no <tensor>.in_sum2 and <tensor>.counts)")
    entries = {name: _vectors(path, name, p) for name, p in parts.items()}
    return ImatrixFile(path, entries, **_metadata(reader))


def _vectors(path: Path, name: str, p: dict) -> ImatrixTensor:
    sums2, counts, sums = p.get(".in_sum2"), p.get(".counts"), p.get(".in_sum")
    if sums2 is None or counts is None or (sums is not None and sums.size != sums2.size):
        raise ImatrixFileError(f"{path}: {name} has mismatched sums and counts ({', '.join(sorted(p))} present)")
    if counts.size == 0 or sums2.size % counts.size:
        raise ImatrixFileError(f"{path}: {name}: {sums2.size} sums do not split into {counts.size} matrices")
    n = counts.size
    return ImatrixTensor(sums2.reshape(n, -1), _lround(counts), None if sums is None else sums.reshape(n, -1))


def _metadata(reader) -> dict:
    def value(key, default):
        f = reader.fields.get(key)
        try:
            return f.contents() if f is not None else default
        except Exception:  # noqa: BLE001 - an odd field is left at its default, as llama.cpp does
            return default

    datasets = value("imatrix.datasets", [])
    return dict(datasets=[str(d) for d in datasets] if isinstance(datasets, list) else [str(datasets)],
                chunk_count=int(value("imatrix.chunk_count", 0) or 0), chunk_size=int(value("imatrix.chunk_size", 0) or 0),
                n_layer_nextn=int(value("imatrix.n_layer_nextn", 0) or 0))  # fmt: skip


def _lround(x: np.ndarray) -> np.ndarray:
    """``std::lround``: halves away from zero."""
    x = x.astype(np.float64)
    return np.trunc(x + np.copysign(0.5, x)).astype(np.int64)
