"""Randomized top-k singular values (subspace iteration, and the block Krylov method the spectral analysis
uses) against torch.linalg.svdvals and the Gram method, one run.

    python benchmarks/bench_svd.py [--shape 4096x11008] [--k 32] [--smoke]

Target (spectral issue): randomized top-32 on 4096 x 11008 >= 20x faster than svdvals.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from streamscope.bench import machine
from streamscope.kernels.linalg import StreamedOperator, svd_block_krylov, svd_compressed
from streamscope.synthetic import structured


def _gram_eigvals(blocks, cols: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The Gram method's arithmetic: eigenvalues of ``W.T @ W`` (cols x cols) accumulated in float64 over row
    blocks, descending.

    Singular values are their square roots. Because the Gram matrix squares the condition number, singular
    values below about ``sqrt(eps64) * sigma_max`` (1.5e-8 relative) are not resolved.
    """
    g = torch.zeros(cols, cols, dtype=torch.float64, device=device)
    for _, _, block in blocks():
        b = block.to(device, torch.float64)
        g.addmm_(b.T, b)
    return torch.linalg.eigvalsh(g).flip(0).clamp_min(0).cpu()


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="4096x11008")
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    m, n = (512, 1376) if args.smoke else map(int, args.shape.split("x"))
    w = structured((m, n), seed=1)(0, m).to(torch.bfloat16).float()  # weight-like: decaying spectrum + heavy channels
    step = max(1, (64 << 20) // (4 * n))
    blocks = lambda: ((r, min(m, r + step), w[r : r + step]) for r in range(0, m, step))  # noqa: E731
    rows = {}
    t = time.perf_counter()
    exact = torch.linalg.svdvals(w).double()
    rows["svdvals"] = time.perf_counter() - t
    t = time.perf_counter()
    approx, iters = svd_compressed(blocks, (m, n), args.k)
    rows["randomized"] = time.perf_counter() - t
    low = w.to(torch.bfloat16)  # exact: w holds bf16 values
    t = time.perf_counter()
    krylov, depth = svd_block_krylov(StreamedOperator.from_matrix(low), args.k, exact=StreamedOperator.from_matrix(w))
    rows["block_krylov"] = time.perf_counter() - t
    t = time.perf_counter()
    gram = _gram_eigvals(blocks, n).sqrt() if n <= m else _gram_eigvals(lambda: ((0, n, w.T),), m).sqrt()
    rows["gram"] = time.perf_counter() - t
    err_rand = float(((approx[:10] - exact[:10]).abs() / exact[:10]).max())
    err_krylov = float(((krylov[:10] - exact[:10]).abs() / exact[:10]).max())
    resolved = exact > np.sqrt(np.finfo(np.float64).eps * max(m, n)) * exact[0]
    err_gram = float(((gram[: exact.numel()][resolved] - exact[resolved]).abs() / exact[resolved]).max())
    print(f"matrix {m} x {n} (float32), top-{args.k}; torch threads {torch.get_num_threads()}")
    print(f"{'method':11s} {'seconds':>8s} {'speedup vs svdvals':>19s} {'max rel. error':>15s}")
    print(f"{'svdvals':11s} {rows['svdvals']:8.2f} {1.0:18.1f}x {'(reference)':>15s}")
    print(f"{'randomized':11s} {rows['randomized']:8.2f} {rows['svdvals'] / rows['randomized']:18.1f}x {err_rand:15.2e}  (top-10, {iters} iterations)")
    print(f"{'krylov':11s} {rows['block_krylov']:8.2f} {rows['svdvals'] / rows['block_krylov']:18.1f}x {err_krylov:15.2e}  (top-10, depth {depth}, bf16 products)")
    print(f"{'gram':11s} {rows['gram']:8.2f} {rows['svdvals'] / rows['gram']:18.1f}x {err_gram:15.2e}  (all resolved values)")
    figures = {"shape": [m, n], "k": args.k, "seconds": rows, "randomized_top10_rel_error": err_rand, "randomized_iterations": iters,
               "block_krylov_top10_rel_error": err_krylov, "block_krylov_depth": depth,
               "gram_rel_error": err_gram, "machine": machine()}  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
