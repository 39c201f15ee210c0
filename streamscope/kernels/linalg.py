"""Spectral kernels over matrices streamed in row blocks; the matrix never sits in memory whole.

A matrix is given as ``blocks``: a callable returning a fresh iterable of ``(row_start, row_stop, block)``
with ``block`` a ``(rows, cols)`` float tensor. Every pass over the matrix calls it once.

References:
    N. Halko, P. G. Martinsson, J. A. Tropp. Finding structure with randomness: probabilistic algorithms for
    constructing approximate matrix decompositions. SIAM Review 53(2), 2011. (Algorithms 4.3/4.4, 5.1.)
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch

RowBlocks = Callable[[], Iterable[tuple[int, int, torch.Tensor]]]


def _orthonormal(a: torch.Tensor) -> torch.Tensor:
    q, _ = torch.linalg.qr(a, mode="reduced")
    return q


def svd_compressed(
    blocks: RowBlocks,
    shape: tuple[int, int],
    k: int,
    n_oversamples: int = 10,
    n_power_iter: int = 10,
    seed: int = 0,
    tol: float = 1e-4,
    device: torch.device | str = "cpu",
    converge_k: int = 10,
) -> tuple[torch.Tensor, int]:
    """Top-``k`` singular values of a streamed matrix by randomized subspace iteration (Halko et al. 2011).

    ``Y = W @ Omega`` with a seeded Gaussian ``Omega`` (cols x q, ``q = k + n_oversamples``), then
    ``Q = orth(Y)``, ``Z = W.T @ Q``, ``Y = W @ orth(Z)``, ... The singular values of ``Z`` are the Ritz values
    ``svd(Q.T @ W)`` of the current subspace, so convergence is checked for free: iteration stops once the
    top ``converge_k`` (default 10) change by less than ``tol`` (relative) or after ``n_power_iter``
    iterations. Values beyond ``converge_k`` converge more slowly and are less accurate. Decaying spectra stop
    after two or three; flat (noise-like) spectra use the cap. Each iteration is two passes over the matrix.

    Args:
        blocks: the matrix as row blocks (see module docstring).
        shape: ``(rows, cols)``.
        k: number of singular values.
        n_oversamples: extra sketch columns beyond ``k``.
        n_power_iter: most subspace iterations.
        seed: seed of ``Omega``; results are deterministic for a given seed.
        tol: relative change of the top-``k`` values under which iteration stops.

    Returns:
        ``(values, iterations)``: float64 tensor of ``min(k, rows, cols)`` singular values, descending, and
        the number of iterations run.

    Example:
        >>> w = torch.randn(500, 80)
        >>> s, _ = svd_compressed(lambda: [(0, 500, w)], (500, 80), k=5)
        >>> bool(torch.allclose(s, torch.linalg.svdvals(w.double())[:5], rtol=1e-2))
        True
    """
    m, n = shape
    k = min(k, m, n)
    q = min(k + n_oversamples, m, n)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    omega = torch.randn(n, q, generator=gen, dtype=torch.float32).to(device)  # (cols, q)
    y = _times(blocks, omega, m)  # (rows, q)
    previous = None
    for it in range(1, max(1, n_power_iter) + 1):
        z = _transpose_times(blocks, _orthonormal(y), n)  # (cols, q) = W.T @ Q
        values = torch.linalg.svdvals(z)[:k]
        top = slice(0, max(1, min(converge_k, k)))
        if previous is not None and float(((values[top] - previous[top]).abs() / values[top].clamp_min(1e-300)).max()) < tol:
            break
        previous = values
        if it < n_power_iter:
            y = _times(blocks, _orthonormal(z), m)
    return values.cpu(), it


def _times(blocks: RowBlocks, right: torch.Tensor, m: int) -> torch.Tensor:
    """``W @ right`` (rows x q) in float64, from one pass."""
    out = torch.empty(m, right.shape[1], dtype=torch.float64, device=right.device)
    right = right.to(torch.float32)
    for r0, r1, block in blocks():
        out[r0:r1] = (block.to(right.device, torch.float32) @ right).double()
    return out


def _transpose_times(blocks: RowBlocks, left: torch.Tensor, n: int) -> torch.Tensor:
    """``W.T @ left`` (cols x q) in float64, accumulated over row blocks in one pass."""
    out = torch.zeros(n, left.shape[1], dtype=torch.float64, device=left.device)
    left32 = left.to(torch.float32)
    for r0, r1, block in blocks():
        out += (block.to(left.device, torch.float32).T @ left32[r0:r1]).double()
    return out


def gram_eigvals(blocks: RowBlocks, cols: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Eigenvalues of ``W.T @ W`` (cols x cols) accumulated in float64 over row blocks, descending.

    Singular values are their square roots. Because the Gram matrix squares the condition number, singular
    values below about ``sqrt(eps64) * sigma_max`` (1.5e-8 relative) are not resolved.
    """
    g = torch.zeros(cols, cols, dtype=torch.float64, device=device)
    for _, _, block in blocks():
        b = block.to(device, torch.float64)
        g.addmm_(b.T, b)
    return torch.linalg.eigvalsh(g).flip(0).clamp_min(0).cpu()
