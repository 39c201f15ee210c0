"""Which decoder layers a pruning removed, against where the measured layer importance said they could go.

The layers of the pruned checkpoint are matched to the original's by their weights: each layer's signature is
the first values of the first row of each of its matrices (a few KB read per layer), and the pruned layers are
assigned, in order, to the original layers they are closest to (cosine; a dynamic programme keeps the order,
so a layer that healing fine-tuned slightly still finds its origin). The layers no pruned layer took are the
removed ones. The importance is ``activations.json["importance"]`` of a profile of the original: block
influence per layer (ShortGPT) and the angular distance of every span (Gromov et al.), whose best block of
the removed count is where the importance said the layers could go.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from streamscope.errors import CheckpointError

#: Values of each matrix's first row in a layer's signature.
WIDTH = 64
#: Below this cosine a pruned layer is taken to match no original layer (changed beyond recognition).
MATCH = 0.9


def signatures(index, first_values: int = WIDTH) -> dict[int, np.ndarray]:
    """layer -> the concatenated first values of the first row of each of its matrices, in name order."""
    from streamscope.io.handles import read_rows
    from streamscope.io.names import classify
    from streamscope.io.tensor import Block

    rows: dict[int, list] = {}
    for name in sorted(index.tensors):
        info = index.tensors[name]
        layer = classify(name).layer_index
        if layer is None or len(info.shape) < 2:
            continue
        first = read_rows(info, Block(0, info.cols, 0, 1)).double().numpy().reshape(-1)[:first_values]
        rows.setdefault(layer, []).append(first)
    return {layer: np.concatenate(parts) for layer, parts in rows.items()}


def match(before: dict[int, np.ndarray], after: dict[int, np.ndarray]) -> list[int | None]:
    """For each layer of ``after`` (in order), the layer of ``before`` it came from, or None; order kept."""
    b, a = sorted(before), sorted(after)
    sim = np.full((len(a), len(b)), -np.inf)
    for i, la in enumerate(a):
        for j, lb in enumerate(b):
            x, y = after[la], before[lb]
            if x.shape == y.shape:
                n = np.linalg.norm(x) * np.linalg.norm(y)
                sim[i, j] = float(x @ y / n) if n > 0 else (1.0 if not x.any() and not y.any() else 0.0)
    # best[i][j]: the largest summed similarity matching after[:i] into before[:j], in order
    best = np.zeros((len(a) + 1, len(b) + 1))
    take = np.zeros((len(a) + 1, len(b) + 1), bool)
    best[1:, 0] = -np.inf
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            skip, use = best[i, j - 1], best[i - 1, j - 1] + max(sim[i - 1, j - 1], 0.0)
            best[i, j], take[i, j] = (use, True) if use >= skip else (skip, False)
    out: list[int | None] = [None] * len(a)
    i, j = len(a), len(b)
    while i > 0 and j > 0:
        if take[i, j]:
            out[i - 1] = b[j - 1] if sim[i - 1, j - 1] >= MATCH else None
            i, j = i - 1, j - 1
        else:
            j -= 1
    return out


def load_importance(path) -> dict:
    """``activations.json["importance"]`` of the output directory (or the file itself) ``path``.

    Raises:
        CheckpointError: one line naming the file: no such file, not JSON, or no layer importance in it.
    """
    path = Path(path)
    path = path / "activations.json" if path.is_dir() else path
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise CheckpointError(f"{path}: no activations.json here; run `streamscope activations BEFORE --out DIR` and give that DIR") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e.msg})") from None
    importance = record.get("importance") if isinstance(record, dict) else None
    if not isinstance(importance, dict) or not isinstance(importance.get("block_influence"), list):
        raise CheckpointError(f"{path}: holds no layer importance (profile before with the importance probe on)")
    return importance


def view(removed: list[int], importance: dict, n_layers: int) -> dict:
    """The removed layers against the importance: their block-influence ranks, the least influential layers,
    the best block of the same length and its angular distance, the removed block's own distance."""
    bi = importance.get("block_influence") or []
    order = sorted(range(len(bi)), key=lambda i: (bi[i] is None, bi[i] if bi[i] is not None else 0.0))
    rank = {layer: r + 1 for r, layer in enumerate(order)}
    n = len(removed)
    lowest = sorted(order[:n])
    out = {"removed": removed, "n_layers": n_layers, "block_influence": {str(i): bi[i] for i in removed if i < len(bi)},
           "block_influence_rank": {str(i): rank.get(i) for i in removed}, "least_influential": lowest,
           "overlap_with_least_influential": len(set(removed) & set(lowest))}  # fmt: skip
    plan = (importance.get("prune_plan") or {}).get(str(n))
    if plan:
        block = list(range(plan["start"], plan["start"] + n))
        out["best_block"] = {"layers": block, "distance": plan["distance"]}
        out["overlap_with_best_block"] = len(set(removed) & set(block))
    contiguous = n > 0 and removed == list(range(removed[0], removed[0] + n))
    distances = (importance.get("angular_distance") or {}).get(str(n)) or []
    out["removed_block_distance"] = distances[removed[0]] if contiguous and removed[0] < len(distances) else None
    return out


def removed_layers(before_index, after_index) -> tuple[list[int], list[int | None]]:
    """``(removed layers of before, the original of each layer of after)``."""
    sb, sa = signatures(before_index), signatures(after_index)
    origin = match(sb, sa)
    kept = {o for o in origin if o is not None}
    return [layer for layer in sorted(sb) if layer not in kept], origin
