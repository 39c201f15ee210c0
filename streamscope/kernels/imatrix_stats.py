"""The statistics ``llama-imatrix --show-statistics`` prints for an importance matrix, with llama.cpp's definitions.

An importance matrix holds, per weight tensor and per matrix of it (one, or one per expert), the sums over the
tokens of x^2 for each input channel (``in_sum2``), optionally of x (``in_sum``, newer files), and the token
counts. Per tensor, over the channels of every matrix that saw a token (count > 0):

- ``sum_e_a2``: the sum of E[A^2] = in_sum2 / count over every channel (llama.cpp's "∑ E[A²]");
- ``mean``, ``std``, ``skew``, ``kurt``: moments of E[A] = in_sum / count for a tensor with ``in_sum``, else of
  E[A^2]; population moments, kurtosis in excess of 3, skew and kurtosis 0 where the standard deviation is under
  1e-10;
- ``h_norm``: the entropy in bits of p = max(E[A^2], 0) / (sum of the positive E[A^2]), p under 1e-10 left out,
  over log2 of the channel count, in percent (100: importance spread evenly over the channels);
- against the same tensor in the nearest earlier layer that has it (``blk.N`` -> ``blk.N-1``, ...; none for layer
  0 and for the first NextN/MTP layer): ``gain``, the ratio of the RMS of E[A^2] (sqrt(sum / channels));
  ``l2_dist``, ``cossim``, ``pcc`` (Pearson), ``cov`` (population covariance) of the per-channel vectors, which
  are E[A] where both tensors have ``in_sum`` and E[A^2] otherwise.

llama.cpp rounds some steps to float32 (the per-channel averages compared across layers, the standard deviation,
skew, kurtosis and entropy as stored); they are rounded here at the same steps, so every printed digit agrees.
A value llama.cpp prints as ``nan`` is ``None``. No model knowledge: layers are known only by ``blk.N`` in the
GGUF names, as llama.cpp knows them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

INT_MAX = 2**31 - 1  # llama.cpp's layer of ``output.*`` tensors (sorted last) and "no NextN layers"


class Vectors(Protocol):
    """One tensor of an importance matrix (``io.imatrix_file.ImatrixTensor``): ``sums2`` and ``sums`` (or None)
    ``(n_mat, channels)``, ``counts`` ``(n_mat,)``."""

    sums2: np.ndarray
    counts: np.ndarray
    sums: np.ndarray | None


@dataclass
class TensorStats:
    """One tensor's statistics (NaN where llama.cpp prints nan) and what the layer statistics sum."""

    name: str
    legacy: bool  # no in_sum: the moments are of E[A^2]
    total: float  # sum of E[A^2] (double, as llama.cpp keeps it)
    elements: int
    mean: float
    std: float
    skew: float
    kurt: float
    entropy: float
    gain: float = math.nan
    l2_dist: float = math.nan
    cossim: float = math.nan
    pcc: float = math.nan
    cov: float = math.nan
    parts: dict = field(default_factory=dict)  # dot, n1, n2, l2sq, cov, var_c, var_p, n, total_prev, elements_prev

    @property
    def h_norm(self) -> float:
        if self.elements <= 1:
            return math.nan
        return float(np.float32(100.0) * (np.float32(self.entropy) / np.log2(np.float32(self.elements))))

    def as_dict(self) -> dict:
        """``{mean, std, skew, kurt, h_norm, sum_e_a2, gain, l2_dist, cossim, pcc, cov}``; None for NaN."""
        values = dict(mean=self.mean, std=self.std, skew=self.skew, kurt=self.kurt, h_norm=self.h_norm, sum_e_a2=self.total,
                      gain=self.gain, l2_dist=self.l2_dist, cossim=self.cossim, pcc=self.pcc, cov=self.cov)  # fmt: skip
        return {k: (None if not math.isfinite(v) else float(v)) for k, v in values.items()}


def _scaled(src: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``src / count`` in double for the matrices with tokens, flattened: what llama.cpp's moments read."""
    c32 = counts.astype(np.float32)
    ok = c32 > 0
    return (src.reshape(counts.size, -1)[ok].astype(np.float64) * (1.0 / c32[ok].astype(np.float64))[:, None]).reshape(-1)


def vector_statistics(name: str, v: Vectors) -> TensorStats | None:
    """llama.cpp's ``compute_vector_statistics``: None where no channel has a finite value (the tensor is not shown)."""
    legacy = v.sums is None
    n_mat = v.counts.size
    if n_mat == 0 or v.sums2.size == 0 or v.sums2.size % n_mat or (not legacy and v.sums.size != v.sums2.size):
        return None
    e2 = _scaled(v.sums2, v.counts)  # E[A^2] per channel
    x = e2 if legacy else _scaled(v.sums, v.counts)  # the values the moments are of
    keep = np.isfinite(x) & np.isfinite(e2)
    x, e2 = x[keep], e2[keep]
    n = x.size
    if n == 0:
        return None
    mean = x.mean()
    d = x - mean
    m2 = float(np.sum(d * d)) / n
    std = np.sqrt(np.float32(m2 if n > 1 else 0.0))
    skew = kurt = 0.0
    if std > np.float32(1e-10):
        skew = float(np.float32(float(np.sum(d**3)) / n / (m2 * math.sqrt(m2))))
        kurt = float(np.float32(float(np.sum(d**4)) / n / (m2 * m2) - 3.0))
    energy = float(e2[e2 > 0].sum())
    entropy = 0.0
    if energy > 0:
        p = np.maximum(e2, 0.0) * (1.0 / energy)
        p = p[p > 1e-10]
        entropy = float(-np.sum(p * np.log(p) * (1.0 / math.log(2.0))))
    return TensorStats(name, legacy, float(e2.sum()), n, float(np.float32(mean)), float(std), skew, kurt, float(np.float32(entropy)))


def averages(v: Vectors, use_sums: bool) -> np.ndarray | None:
    """llama.cpp's ``compute_tensor_averages``: float32 ``sums / count`` per channel, NaN for matrices without tokens."""
    n_mat = v.counts.size
    src = v.sums if use_sums else v.sums2
    if n_mat == 0 or src is None or src.size == 0 or src.size % n_mat:
        return None
    c32 = v.counts.astype(np.float32)
    if not (c32 > 0).any():
        return None
    out = np.full((n_mat, src.size // n_mat), np.nan, np.float32)
    ok = c32 > 0
    out[ok] = src.reshape(n_mat, -1)[ok].astype(np.float32) * (np.float32(1.0) / c32[ok])[:, None]
    return out.reshape(-1)


# ---------------------------------------------------------------------------------------------- names and layers

_LEADING_INT = re.compile(r"\s*[+-]?\d+")


def split_name(name: str) -> tuple[str, str]:
    """llama.cpp's ``process_tensor_name``: (the part after the first ``blk``, else ``-``; the name without ``blk.N``
    and from ``weight`` on): ``blk.3.attn_q.weight`` -> ``("3", "attn_q")``."""
    parts = name.split(".")
    if parts and parts[-1] == "":
        parts.pop()  # C++ getline yields no empty last item
    layer = next((parts[i + 1] for i in range(len(parts) - 1) if parts[i] == "blk"), "")
    tensor: list[str] = []
    if "weight" in parts[1:]:
        i = parts.index("weight", 1)
        j = 0
        while j < len(parts):
            if parts[j] == "blk":
                j += (1 if len(parts) > 4 else 2) + 1
                continue
            if j == i:
                break
            tensor.append(parts[j])
            j += 1
    return layer or "-", ".".join(tensor) or name


def block(name: str) -> int | None:
    """The layer number as llama.cpp's ``std::stoi`` reads it (leading digits), or None."""
    m = _LEADING_INT.match(split_name(name)[0])
    return int(m.group()) if m else None


def nextn_start(names, n_layer_nextn: int = 0) -> int:
    """The first NextN (multi-token prediction) layer: the last ``n_layer_nextn`` layers, else the first layer with
    a ``nextn.`` tensor, else ``INT_MAX`` (none)."""
    top, first = -1, INT_MAX
    for n in names:
        blk = block(n)
        if blk is None:
            continue
        top = max(top, blk)
        if split_name(n)[1].startswith("nextn."):
            first = min(first, blk)
    return max(0, top + 1 - n_layer_nextn) if n_layer_nextn > 0 and top >= 0 else first


def layer_of(name: str) -> int:
    """The layer a tensor is listed under: its block, ``INT_MAX`` for ``output*`` tensors, else -1 (not listed)."""
    blk = block(name)
    return blk if blk is not None else (INT_MAX if "output" in name else -1)


def layer_label(blk: int, start: int) -> str:
    """``3``; ``mtp0`` for the first NextN layer; ``output`` for ``output*`` tensors (llama.cpp prints ``-``)."""
    if blk == INT_MAX:
        return "output"
    if blk < 0:
        return "-"
    return f"mtp{blk - start}" if blk >= start else str(blk)


def sort_key(name: str) -> tuple[int, str]:
    """llama.cpp's listing order: by layer (``output*`` last, other tensors outside the blocks before them), then name."""
    blk = block(name)
    if blk is None:
        blk = INT_MAX if "output" in name else INT_MAX - 1
    return blk, split_name(name)[1]


# ---------------------------------------------------------------------------------------------- across layers


def _previous(name: str, blk: int, start: int, known) -> str | None:
    """The same tensor in the nearest earlier layer that has it, within the trunk or within the NextN layers."""
    layer = split_name(name)[0]
    pos = name.find(f"blk.{layer}")
    if pos < 0:
        return None
    for prev in range(blk - 1, (start if blk > start else 0) - 1, -1):
        candidate = f"{name[:pos]}blk.{prev}{name[pos + len(layer) + 4 :]}"
        if candidate in known:
            return candidate
    return None


def _against(ts: TensorStats, prev: TensorStats, cur: np.ndarray, old: np.ndarray) -> None:
    """llama.cpp's comparison of one tensor with its previous layer's, from their per-channel float32 averages."""
    ok = np.isfinite(cur) & np.isfinite(old)
    c, p = cur[ok].astype(np.float64), old[ok].astype(np.float64)  # (channels,)
    n = c.size
    if n == 0:
        return
    dc, dp = c - c.sum() / n, p - p.sum() / n
    parts = dict(dot=float(c @ p), n1=float(c @ c), n2=float(p @ p), l2sq=float(np.sum((c - p) ** 2)), cov=float(dc @ dp),
                 var_c=float(dc @ dc), var_p=float(dp @ dp), n=n)  # fmt: skip
    ts.parts.update(parts)
    ts.l2_dist = float(np.float32(math.sqrt(parts["l2sq"])))
    if n > 1:
        ts.cov = float(np.float32(parts["cov"] / n))
    ts.cossim = _ratio(parts["dot"], parts["n1"], parts["n2"])
    ts.pcc = _ratio(parts["cov"], parts["var_c"], parts["var_p"])
    if prev.total > np.float32(1e-10):
        ts.gain = float(np.float32(math.sqrt(ts.total / ts.elements) / math.sqrt(prev.total / prev.elements)))
        ts.parts.update(total_prev=prev.total, elements_prev=prev.elements)
    else:
        ts.gain = 1.0 if ts.total <= np.float32(1e-10) else math.nan


def _ratio(num: float, a: float, b: float) -> float:
    """``num / sqrt(a b)`` clamped to [-1, 1] in float32; NaN when both are 0, 0 when one is."""
    if a > 0 and b > 0:
        return float(np.clip(np.float32(num / (math.sqrt(a) * math.sqrt(b))), -1.0, 1.0))
    return math.nan if a == 0 and b == 0 else 0.0


def tensor_statistics(entries: dict[str, Vectors], n_layer_nextn: int = 0) -> dict[str, TensorStats]:
    """Every tensor's statistics in llama.cpp's listing order (``sort_key``); tensors without a finite channel left out.

    Args:
        entries: gguf tensor name (``blk.3.attn_q.weight``) -> its vectors.
        n_layer_nextn: ``imatrix.n_layer_nextn`` of the file (0: NextN layers known by their ``nextn.`` names).
    """
    stats = {n: s for n, v in entries.items() if (s := vector_statistics(n, v)) is not None}
    start = nextn_start(stats, n_layer_nextn)
    for name, ts in stats.items():
        blk = block(name)
        if blk is None or blk <= 0 or blk == start:
            continue
        prev_name = _previous(name, blk, start, stats)
        if prev_name is None:
            continue
        prev = stats[prev_name]
        use_sums = not ts.legacy and not prev.legacy  # one side without in_sum: both compared on E[A^2]
        cur, old = averages(entries[name], use_sums), averages(entries[prev_name], use_sums)
        if cur is not None and old is not None and cur.size == old.size:
            _against(ts, prev, cur, old)
    return {n: stats[n] for n in sorted(stats, key=sort_key)}


def layer_statistics(stats: dict[str, TensorStats], n_layer_nextn: int = 0) -> dict[str, dict]:
    """llama.cpp's layer table: per layer label (``0``, ``1``, ..., ``mtp0``, ``output``), ``sum_e_a2``
    (the float32 sum of its tensors' in listing order), ``gain`` (RMS ratio over the tensors that have a previous
    layer), ``l2_dist``, ``cossim``, ``pcc``, ``cov`` pooled over its tensors' comparisons; None for nan."""
    start = nextn_start(stats, n_layer_nextn)
    sums: dict[int, list] = {}
    pooled: dict[int, dict] = {}
    for name in sorted(stats, key=sort_key):
        ts = stats[name]
        blk = layer_of(name)
        acc = sums.setdefault(blk, [np.float32(0.0), 0, 0])
        acc[0] = np.float32(float(acc[0]) + ts.total)  # llama.cpp: float += double
        acc[1] += ts.elements
        acc[2] += 1
        if block(name) is None or blk <= 0 or not any(ts.parts.get(k) for k in ("n1", "n2", "l2sq")):
            continue  # no previous layer to compare with
        p = pooled.setdefault(blk, dict.fromkeys(("dot", "n1", "n2", "l2sq", "cov", "var_c", "var_p", "n", "e_cur", "e_prev", "k_cur", "k_prev"), 0))
        for k in ("dot", "n1", "n2", "l2sq", "cov", "var_c", "var_p", "n"):
            p[k] += ts.parts[k]
        if ts.parts.get("elements_prev", 0) > 0:
            p["e_cur"] += ts.total
            p["e_prev"] += ts.parts["total_prev"]
            p["k_cur"] += ts.elements
            p["k_prev"] += ts.parts["elements_prev"]
    out = {}
    for blk in sorted(sums):
        total, elements, tensors = sums[blk]
        if blk < 0 or elements == 0:
            continue
        row = dict(sum_e_a2=float(total), tensors=tensors, gain=math.nan, l2_dist=math.nan, cossim=math.nan, pcc=math.nan, cov=math.nan)
        if blk not in (0, INT_MAX) and blk in pooled:
            row.update(_pooled(pooled[blk]))
        out[layer_label(blk, start)] = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
    return out


def _pooled(p: dict) -> dict:
    gain = math.nan
    if p["k_cur"] > 0 and p["k_prev"] > 0 and p["e_prev"] > 0:
        gain = float(np.float32(math.sqrt(p["e_cur"] / p["k_cur"]) / math.sqrt(p["e_prev"] / p["k_prev"])))
    return dict(gain=gain, l2_dist=float(np.float32(math.sqrt(p["l2sq"]))), cossim=_ratio(p["dot"], p["n1"], p["n2"]),
                pcc=_ratio(p["cov"], p["var_c"], p["var_p"]), cov=float(np.float32(p["cov"] / p["n"])) if p["n"] > 0 else math.nan)  # fmt: skip


# ---------------------------------------------------------------------------------------------- two matrices


def compare(a: Vectors, b: Vectors) -> dict | None:
    """One tensor of two importance matrices: ``cosine`` of the per-channel E[A^2] vectors (channels where both are
    finite: matrices without tokens left out), ``sum_a``/``sum_b`` (sum of E[A^2]) and ``ratio`` (b / a); None
    where the vectors differ in length (another model or another expert count)."""
    x, y = averages(a, False), averages(b, False)
    if x is None or y is None or x.size != y.size:
        return None
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok].astype(np.float64), y[ok].astype(np.float64)
    norm = math.sqrt(float(x @ x) * float(y @ y))
    sa, sb = _total(a), _total(b)
    return dict(cosine=float(x @ y) / norm if norm > 0 else None, sum_a=sa, sum_b=sb, ratio=sb / sa if sa > 0 else None)


def _total(v: Vectors) -> float:
    e2 = _scaled(v.sums2, v.counts)
    return float(e2[np.isfinite(e2)].sum())
