"""Compare two checkpoints: structure from headers (before/after pruning), weight deltas streamed side by side."""

from __future__ import annotations

import math
from typing import Callable, Iterator

import torch

from streamscope.analyses.params import ATTN, MLP
from streamscope.io.checkpoint import CheckpointIndex
from streamscope.io.reader import RawReader, plan_blocks
from streamscope.io.safetensors import TensorInfo
from streamscope.kernels.linalg import svd_compressed


def change(original: int | float, pruned: int | float) -> dict:
    """``{original, pruned, reduced, reduction_ratio}``; the ratio is 0 when the original is 0."""
    reduced = original - pruned
    return {"original": original, "pruned": pruned, "reduced": reduced, "reduction_ratio": reduced / original if original else 0.0}


def compare_structure(a: dict, b: dict) -> dict:
    """Compare two ``count_params`` results, layer by layer.

    A layer is emptied when its attention and MLP have no parameters left in ``b`` while they had some in
    ``a`` (or, with weight comparison, when all of its weights in ``b`` are zero: see ``compare``).
    """
    layers_a = {l["layer_idx"]: l for l in a["layers"]}
    layers_b = {l["layer_idx"]: l for l in b["layers"]}
    rows = []
    for i in sorted(set(layers_a) | set(layers_b)):
        la, lb = layers_a.get(i), layers_b.get(i)
        row: dict = {"layer_idx": i, "missing": None if la and lb else ("pruned" if la else "original")}
        la = la or _zero_layer(i)
        lb = lb or _zero_layer(i)
        row["total"] = change(la["total"], lb["total"])
        row["attention"] = {
            **change(la["attention"]["total"], lb["attention"]["total"]),
            **{p: change(la["attention"][p], lb["attention"][p]) for p in ATTN},
            "num_heads": {"original": la["attention"]["num_heads"], "pruned": lb["attention"]["num_heads"]},
            "num_kv_heads": {"original": la["attention"]["num_kv_heads"], "pruned": lb["attention"]["num_kv_heads"]},
        }
        row["mlp"] = {
            **change(la["mlp"]["total"], lb["mlp"]["total"]),
            **{p: change(la["mlp"][p], lb["mlp"][p]) for p in MLP},
            "intermediate_size": {"original": la["mlp"]["intermediate_size"], "pruned": lb["mlp"]["intermediate_size"]},
        }
        if "num_experts" in la["mlp"] or "num_experts" in lb["mlp"]:
            row["mlp"]["num_experts"] = {"original": la["mlp"].get("num_experts", 0), "pruned": lb["mlp"].get("num_experts", 0)}
        row["norm"] = change(la["norm"], lb["norm"])
        row["is_zero_layer"] = lb["is_zero_layer"] and not la["is_zero_layer"]
        rows.append(row)
    return {
        "original_name": a["model_name"],
        "pruned_name": b["model_name"],
        "total_params": change(a["total_params"], b["total_params"]),
        "layer_params": change(a["layer_summary"]["total_layer_params"], b["layer_summary"]["total_layer_params"]),
        "embedding_params": change(a["embedding_params"], b["embedding_params"]),
        "lm_head_params": change(a["lm_head_params"], b["lm_head_params"]),
        "num_layers": {"original": a["layer_summary"]["num_layers"], "pruned": b["layer_summary"]["num_layers"]},
        "layers": rows,
        "emptied_layers": [r["layer_idx"] for r in rows if r["is_zero_layer"]],
        "missing_layers": {
            "in_original": [r["layer_idx"] for r in rows if r["missing"] == "original"],
            "in_pruned": [r["layer_idx"] for r in rows if r["missing"] == "pruned"],
        },
    }


def _zero_layer(i: int) -> dict:
    return {"layer_idx": i, "total": 0, "norm": 0, "is_zero_layer": True,
            "attention": {"total": 0, "num_heads": 0, "num_kv_heads": 0, **{p: 0 for p in ATTN}},
            "mlp": {"total": 0, "intermediate_size": 0, **{p: 0 for p in MLP}}}  # fmt: skip


def tensor_changes(a: CheckpointIndex, b: CheckpointIndex) -> dict:
    """Tensors only on one side, and tensors whose shape or dtype changed."""
    only_a = [n for n in a.tensors if n not in b.tensors]
    only_b = [n for n in b.tensors if n not in a.tensors]
    changed = [
        {"name": n, "original": {"shape": list(t.shape), "dtype": t.dtype}, "pruned": {"shape": list(b.tensors[n].shape), "dtype": b.tensors[n].dtype}}
        for n, t in a.tensors.items()
        if n in b.tensors and (t.shape != b.tensors[n].shape or t.dtype != b.tensors[n].dtype)
    ]
    return {"only_in_original": only_a, "only_in_pruned": only_b, "changed": changed}


def _pairs(ta: TensorInfo, tb: TensorInfo, max_elems: int, reader_a: RawReader, reader_b: RawReader) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor]]:
    blocks = plan_blocks(ta, max_elems)
    cols = ta.cols
    for (block, raw_a), (_, raw_b) in zip(reader_a.blocks(ta, blocks), reader_b.blocks(tb, blocks)):
        rows = block.row_stop - block.row_start if len(ta.shape) >= 2 else 1
        yield block.row_start, block.row_stop, raw_a.to(torch.float32).view(rows, -1 if rows == 1 else cols), raw_b.to(torch.float32).view(rows, -1 if rows == 1 else cols)


def weight_delta(ta: TensorInfo, tb: TensorInfo, max_elems: int, k: int = 8, seed: int = 0) -> dict:
    """Relative Frobenius change, cosine similarity, max |change| and the spectrum of ``B - A``, streamed.

    Both tensors are read block by block side by side; for matrices the top-``k`` singular values of the
    difference come from a randomized SVD whose passes re-stream both tensors (``svd_compressed``).
    """
    readers = RawReader(max_elems * 8), RawReader(max_elems * 8)
    try:
        aa = bb = ab = dd = 0.0
        max_abs = 0.0
        b_absmax = 0.0
        for _, _, xa, xb in _pairs(ta, tb, max_elems, *readers):
            aa += float(torch.dot(xa.reshape(-1), xa.reshape(-1)))
            bb += float(torch.dot(xb.reshape(-1), xb.reshape(-1)))
            ab += float(torch.dot(xa.reshape(-1), xb.reshape(-1)))
            d = xb - xa
            dd += float(torch.dot(d.reshape(-1), d.reshape(-1)))
            if d.numel():
                max_abs = max(max_abs, float(d.abs().max()))
                b_absmax = max(b_absmax, float(xb.abs().max()))
        out = {
            "relative_frobenius_change": math.sqrt(dd) / math.sqrt(aa) if aa else (0.0 if dd == 0 else math.inf),
            "cosine_similarity": ab / math.sqrt(aa * bb) if aa and bb else float("nan"),
            "max_abs_change": max_abs,
            "frobenius_norm_change": math.sqrt(dd),
            "pruned_all_zero": b_absmax == 0.0,
        }
        if len(ta.shape) >= 2 and ta.rows > 1 and ta.cols > 1 and dd > 0:
            blocks: Callable = lambda: ((r0, r1, xb - xa) for r0, r1, xa, xb in _pairs(ta, tb, max_elems, *readers))  # noqa: E731
            s, _ = svd_compressed(blocks, (ta.rows, ta.cols), k, seed=seed)
            out["diff_top_singular_values"] = s.tolist()
            out["diff_stable_rank"] = dd / float(s[0]) ** 2 if float(s[0]) > 0 else 0.0
        return out
    finally:
        for r in readers:
            r.close()
