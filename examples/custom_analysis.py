"""Write your own chunked analysis with the streamscope API.

Usage: python examples/custom_analysis.py CHECKPOINT [TENSOR]

1. open a checkpoint from its headers, 2. stream one tensor in row blocks and compute a per-row statistic,
3. the same with a lazy dask array, 4. a full scan of the attention weights, as a DataFrame.
"""

from __future__ import annotations

import sys

import torch

import streamscope


def main(path: str, tensor: str | None = None) -> dict:
    ckpt = streamscope.open(path)
    print(f"{len(ckpt)} tensors in {ckpt.path}")
    name = tensor or max(ckpt.names(), key=lambda n: ckpt[n].info.numel)
    t = ckpt[name]
    print(f"{name}: shape {t.shape}, {t.dtype}, layer {t.kind.layer_index}, {t.kind.block_type}")

    # 2. Row blocks of at most 8 MB each, as float32 torch tensors: the largest |w| of every row.
    row_absmax = torch.cat([block.abs().amax(dim=1) for block in t.blocks(max_bytes="8MB")])
    print(f"row |w| max: median {row_absmax.median():.4g}, largest {row_absmax.max():.4g} (row {int(row_absmax.argmax())})")

    # 3. The same tensor as a lazy dask array, chunked by rows: nothing is read until compute().
    arr = t.to_dask(max_bytes="8MB")
    std = float(arr.std().compute())
    print(f"dask: {arr.numblocks[0]} row chunks, std {std:.6g}")

    # 4. A scan of the attention projections, under a 256 MB budget.
    result = streamscope.scan(path, select=r"(q_proj|k_proj|v_proj|query|key|value)", memory_budget="256MB")
    cols = ["tensor", "block_type", "basic_stats.std", "sparsity.magnitude_percentiles.p90"]
    print(result.table[cols].head(8).to_string(index=False))
    return {"tensor": name, "row_absmax": row_absmax, "std": std, "table": result.table}


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(*sys.argv[1:3])
