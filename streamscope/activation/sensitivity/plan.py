"""A mixed-precision plan: the Linears to keep at a higher-precision scheme until the KL meets a target.

The measured local errors rank the Linears: keeping module m at the keep scheme removes
``r_m(default) - r_m(keep)`` of relative output error (``r`` = relative MSE). The KL of a plan is estimated
as the whole-model recipe's measured KL scaled by the share of the summed relative error the plan leaves;
Linears are kept greedily, largest gain first, until the estimate meets the target (or the bits-per-weight
budget stops it). The estimate is then checked by a propagated pass with the plan; where the measured KL
still misses the target, the estimate is corrected by the measured/estimated ratio and the search goes on.
"""

from __future__ import annotations

from streamscope.kernels.fakequant import bits_per_weight


def bits(assignment: dict[str, str | None], shapes: dict[str, tuple[int, int]], float_bits: float) -> float:
    """Stored bits per weight over the decoder Linears' weights."""
    total = n = 0.0
    for name, scheme in assignment.items():
        rows, cols = shapes[name]
        total += rows * cols * _bits(scheme, cols, float_bits)
        n += rows * cols
    return total / n if n else float("nan")


def _bits(scheme: str | None, cols: int, float_bits: float) -> float:
    return float_bits if scheme is None else bits_per_weight(scheme, cols)


def _rel(local: dict, module: str, scheme: str | None) -> float:
    if scheme is None:
        return 0.0
    r = (local.get(module) or {}).get(scheme)
    return r["rel_mse"] if r and r.get("rel_mse") is not None else 0.0


def order(local: dict, assignment: dict[str, str | None], keep_scheme: str) -> list[str]:
    """The Linears by the relative error keeping them removes, largest first (those already at least as
    precise as the keep scheme are left out)."""
    gains = {m: _rel(local, m, s) - _rel(local, m, keep_scheme) for m, s in assignment.items() if s is not None and s != keep_scheme}
    return sorted((m for m, g in gains.items() if g > 0), key=lambda m: -gains[m])


def search(local: dict, assignment: dict[str, str | None], keep_scheme: str, kl_all: float, target: float,
           shapes: dict, float_bits: float, max_bits: float | None = None, scale: float = 1.0, start: int = 0) -> list[str]:  # fmt: skip
    """The kept Linears (a prefix of ``order``, at least ``start`` long) whose estimated KL, times ``scale``,
    meets ``target``, or the longest the bits budget allows."""
    ranked = order(local, assignment, keep_scheme)
    total = sum(_rel(local, m, s) for m, s in assignment.items())
    if total <= 0:
        return []
    left = total
    weights = sum(r * c for r, c in shapes.values())
    stored = bits(assignment, shapes, float_bits) * weights  # bits of the assignment, updated as Linears are kept
    kept: list[str] = []
    for m in ranked:
        if len(kept) >= start and kl_all * scale * left / total <= target:
            break
        rows, cols = shapes[m]
        more = rows * cols * (bits_per_weight(keep_scheme, cols) - _bits(assignment[m], cols, float_bits))
        if max_bits is not None and (stored + more) / weights > max_bits:
            break
        stored += more
        left += _rel(local, m, keep_scheme) - _rel(local, m, assignment[m])
        kept.append(m)
    return kept
