"""Compare two checkpoints, ``before`` and ``after`` (pruning, fine-tuning, quantization): structure from headers,
weight changes streamed side by side (``weight_delta``, run by the engine's ``TensorRunner.run_pair``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

from streamscope.optionspec import opt
from streamscope.schema import SCHEMA_VERSION

if TYPE_CHECKING:
    import torch

    from streamscope.io.checkpoint import CheckpointIndex


@dataclass(frozen=True)
class CompareOptions:
    """The weight comparison's own options (``compare --weights``); with the engine's options they key its resume."""

    rank: int = opt(8, "Singular values of each weight difference.", metavar="N")


def change(before: int | float, after: int | float) -> dict:
    """``{before, after, reduced, reduction_ratio}``; the ratio is 0 when ``before`` is 0 (negative: growth)."""
    reduced = before - after
    return {"before": before, "after": after, "reduced": reduced, "reduction_ratio": reduced / before if before else 0.0}


def compare_structure(a: dict, b: dict) -> dict:
    """Compare two ``count_params`` results, layer by layer.

    A layer is emptied when its attention and MLP have no parameters left in ``b`` while they had some in
    ``a`` (or, with weight comparison, when all of its weights in ``b`` are zero: see ``mark_emptied``).
    """
    from streamscope.analyses.params import ATTN, MLP  # here: the command line's --help imports this module

    layers_a = {l["layer_idx"]: l for l in a["layers"]}
    layers_b = {l["layer_idx"]: l for l in b["layers"]}
    rows = []
    for i in sorted(set(layers_a) | set(layers_b)):
        la, lb = layers_a.get(i), layers_b.get(i)
        row: dict = {"layer_idx": i, "missing": None if la and lb else ("after" if la else "before")}
        la = la or _zero_layer(i)
        lb = lb or _zero_layer(i)
        row["total"] = change(la["total"], lb["total"])
        row["attention"] = {
            **change(la["attention"]["total"], lb["attention"]["total"]),
            **{p: change(la["attention"][p], lb["attention"][p]) for p in ATTN},
            "num_heads": {"before": la["attention"]["num_heads"], "after": lb["attention"]["num_heads"]},
            "num_kv_heads": {"before": la["attention"]["num_kv_heads"], "after": lb["attention"]["num_kv_heads"]},
        }
        row["mlp"] = {
            **change(la["mlp"]["total"], lb["mlp"]["total"]),
            **{p: change(la["mlp"][p], lb["mlp"][p]) for p in MLP},
            "intermediate_size": {"before": la["mlp"]["intermediate_size"], "after": lb["mlp"]["intermediate_size"]},
        }
        if "num_experts" in la["mlp"] or "num_experts" in lb["mlp"]:
            row["mlp"]["num_experts"] = {"before": la["mlp"].get("num_experts", 0), "after": lb["mlp"].get("num_experts", 0)}
        row["norm"] = change(la["norm"], lb["norm"])
        row["is_zero_layer"] = lb["is_zero_layer"] and not la["is_zero_layer"]
        rows.append(row)
    return {
        "schema_version": SCHEMA_VERSION,
        "before_name": a["model_name"],
        "after_name": b["model_name"],
        "total_params": change(a["total_params"], b["total_params"]),
        "layer_params": change(a["layer_summary"]["total_layer_params"], b["layer_summary"]["total_layer_params"]),
        "embedding_params": change(a["embedding_params"], b["embedding_params"]),
        "lm_head_params": change(a["lm_head_params"], b["lm_head_params"]),
        "num_layers": {"before": a["layer_summary"]["num_layers"], "after": b["layer_summary"]["num_layers"]},
        "layers": rows,
        "emptied_layers": [r["layer_idx"] for r in rows if r["is_zero_layer"]],
        "missing_layers": {
            "before": [r["layer_idx"] for r in rows if r["missing"] == "before"],
            "after": [r["layer_idx"] for r in rows if r["missing"] == "after"],
        },
    }


def _zero_layer(i: int) -> dict:
    from streamscope.analyses.params import ATTN, MLP

    return {"layer_idx": i, "total": 0, "norm": 0, "is_zero_layer": True,
            "attention": {"total": 0, "num_heads": 0, "num_kv_heads": 0, **{p: 0 for p in ATTN}},
            "mlp": {"total": 0, "intermediate_size": 0, **{p: 0 for p in MLP}}}  # fmt: skip


def tensor_changes(a: CheckpointIndex, b: CheckpointIndex, partners: dict | None = None) -> dict:
    """Tensors only on one side, and tensors whose shape or dtype changed.

    ``partners``: ``{name in a: TensorInfo of b}`` where b names them otherwise (a GGUF of a Hugging Face
    checkpoint); by default the same names.
    """
    if partners is None:
        partners = {n: b.tensors[n] for n in a.tensors if n in b.tensors}
    matched = {id(t) for t in partners.values()}
    only_a = [n for n in a.tensors if n not in partners]
    only_b = [n for n, t in b.tensors.items() if id(t) not in matched]
    changed = [
        {"name": n, "before": {"shape": list(t.shape), "dtype": t.dtype}, "after": {"shape": list(partners[n].shape), "dtype": partners[n].dtype}}
        for n, t in a.tensors.items()
        if n in partners and (t.shape != partners[n].shape or t.dtype != partners[n].dtype)
    ]
    return {"only_before": only_a, "only_after": only_b, "changed": changed}


def weight_delta(pairs: Callable[..., Iterator[tuple[int, int, "torch.Tensor", "torch.Tensor"]]], shape: tuple[int, ...],
                 k: int = CompareOptions.rank, seed: int = 0, scratch: Callable | None = None, device="cpu") -> dict:  # fmt: skip
    """Relative Frobenius change, cosine similarity, max |change| and the spectrum of ``B - A``, streamed.

    ``pairs(report=False)`` yields ``(row_start, row_stop, a_block, b_block)`` float32 blocks of both tensors
    side by side (``report=True`` on the first pass, which counts towards progress). For matrices, the
    top-``k`` singular values of the difference come from a randomized SVD whose passes re-stream both
    tensors (``svd_compressed``); ``scratch(key, n)`` gives a reused buffer for the difference.
    """
    import torch

    from streamscope.kernels.linalg import svd_compressed

    scratch = scratch or (lambda key, n: torch.empty(n))

    def diff(xa: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        return torch.sub(xb, xa, out=scratch("pair_d", xa.numel()).view_as(xa))

    aa = bb = ab = dd = 0.0
    max_abs = b_absmax = 0.0
    for _, _, xa, xb in pairs(report=True):
        fa, fb = xa.reshape(-1), xb.reshape(-1)
        aa += float(torch.dot(fa, fa))
        bb += float(torch.dot(fb, fb))
        ab += float(torch.dot(fa, fb))
        d = diff(xa, xb).reshape(-1)
        dd += float(torch.dot(d, d))
        if d.numel():
            max_abs = max(max_abs, float(d.abs().max()))
            b_absmax = max(b_absmax, float(fb.abs().max()))
    out = {
        "relative_frobenius_change": math.sqrt(dd) / math.sqrt(aa) if aa else (0.0 if dd == 0 else math.inf),
        # rounding in the float64 sums can put a·b/(|a||b|) a hair above 1: clamped, and 1 - cos comes from the
        # identity |b-a|² = (|a|-|b|)² + 2|a||b|(1-cos), which keeps its digits where cos rounds to 1
        "cosine_similarity": min(1.0, max(-1.0, ab / math.sqrt(aa * bb))) if aa and bb else float("nan"),
        "cosine_distance": max(0.0, (dd - (math.sqrt(aa) - math.sqrt(bb)) ** 2) / (2 * math.sqrt(aa * bb))) if aa and bb else float("nan"),
        "max_abs_change": max_abs,
        "frobenius_norm_change": math.sqrt(dd),
        "sqnr_db": 10 * (math.log10(aa) - math.log10(dd)) if aa > 0 and dd > 0 else (math.inf if dd == 0 else -math.inf),
        "after_all_zero": b_absmax == 0.0,
    }
    rows = shape[0] if len(shape) >= 2 else 1
    cols = math.prod(shape) // rows if rows else 0
    if len(shape) >= 2 and rows > 1 and cols > 1 and dd > 0:
        blocks = lambda: ((r0, r1, diff(xa, xb)) for r0, r1, xa, xb in pairs())  # noqa: E731
        s, _ = svd_compressed(blocks, (rows, cols), k, seed=seed, device=device)
        out["diff_top_singular_values"] = s.tolist()
        s0 = float(s[0])
        out["diff_stable_rank"] = dd / (s0 * s0) if s0 * s0 > 0 else float("nan")
    return out


def mark_emptied(result: dict, deltas: dict[str, dict], names_b) -> None:
    """A layer whose remaining weights are all zero in ``after`` is emptied too (weight comparison only)."""
    for row in result["layers"]:
        names = [n for n in deltas if names_b[n].layer_index == row["layer_idx"] and names_b[n].block_type != "norm"]
        if names and all(deltas[n]["after_all_zero"] for n in names) and row["layer_idx"] not in result["emptied_layers"]:
            row["is_zero_layer"] = True
            result["emptied_layers"].append(row["layer_idx"])
    result["emptied_layers"].sort()
