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


class StreamedOperator:
    """A matrix seen through its products: ``times(X) = W @ X`` and ``t_times(Y) = W.T @ Y`` (float32 in, out).

    Built from row blocks (every product is one pass over them, converted to float32 on the way) or from a
    matrix held in memory; ``low`` computes the products in bfloat16 with float32 accumulation (a third of
    the float32 time on CPUs with AVX-512 BF16), exact for the input when the matrix itself is bfloat16.
    """

    def __init__(self, shape: tuple[int, int], times, t_times):
        self.shape = shape
        self.times, self.t_times = times, t_times

    @classmethod
    def from_blocks(cls, blocks: RowBlocks, shape: tuple[int, int], device="cpu") -> "StreamedOperator":
        def times(x):
            out = torch.empty(shape[0], x.shape[1], dtype=torch.float32, device=x.device)
            for r0, r1, block in blocks():
                torch.mm(block.to(x.device, torch.float32), x, out=out[r0:r1])
            return out

        def t_times(y):
            out = torch.zeros(shape[1], y.shape[1], dtype=torch.float32, device=y.device)
            for r0, r1, block in blocks():
                out.addmm_(block.to(y.device, torch.float32).T, y[r0:r1])
            return out

        return cls(shape, times, t_times)

    @classmethod
    def from_matrix(cls, w: torch.Tensor) -> "StreamedOperator":
        """``w`` in memory (bfloat16 products when ``w`` is bfloat16)."""
        low = w.dtype == torch.bfloat16
        cast = (lambda a: a.to(torch.bfloat16)) if low else (lambda a: a.to(w.dtype))  # noqa: E731
        if low:  # bfloat16 W.T @ Y is slower than (Y.T @ W).T on CPU BLAS (benchmarks/README.md)
            return cls(tuple(w.shape), lambda x: (w @ cast(x)).float(), lambda y: (cast(y).T @ w).T.float())
        return cls(tuple(w.shape), lambda x: (w @ cast(x)).float(), lambda y: (w.T @ cast(y)).float())

    def transposed(self) -> "StreamedOperator":
        return StreamedOperator((self.shape[1], self.shape[0]), self.t_times, self.times)


def svd_block_krylov(
    op: StreamedOperator,
    k: int,
    block: int = 16,
    max_depth: int = 12,
    tol: float = 1e-3,
    seed: int = 0,
    converge_k: int = 10,
    exact: StreamedOperator | None = None,
    sketch: torch.Tensor | None = None,
) -> tuple[torch.Tensor, int]:
    """Top-``k`` singular values by randomized block Krylov iteration (Musco and Musco 2015).

    The Krylov space ``[W W^T Q1, (W W^T)^2 Q1, ...]`` of ``Q1 = orth(W @ Omega)`` (``block`` columns) grows by
    one block per depth step, kept orthonormal by two rounds of block Gram-Schmidt. Each step costs one
    ``W.T @`` and one ``W @`` product of ``block`` columns. On flat (noise-like) spectra it reaches 1 % on the
    top ten values in a fraction of the products that subspace iteration needs (measured on a 4096 x 11008
    Gaussian matrix: 0.2 s to 1 % where subspace iteration with 52 columns stood at 2.4 % after 0.7 s);
    decaying spectra stop after two or three steps.

    Convergence is watched for free: ``T = K.T @ W @ W.T @ K`` is filled from the products already made,
    and the top ``converge_k`` Ritz values ``sqrt(eig(T))`` are compared between steps; iteration stops when
    they change by less than ``tol`` (relative) once the space holds ``max(k, converge_k + block)`` columns,
    or at ``max_depth``. The top ``converge_k`` values returned come from one float32 product ``exact`` on
    their Ritz vectors (Rayleigh-Ritz, so low-precision products only shape the space); the values after
    them are the Ritz values of ``T`` as the products gave them: lower bounds of the true values up to the
    products' rounding (about 1e-3 relative with bfloat16 products). ``exact`` defaults to ``op``.

    The space lives on the matrix's smaller side (the operator is transposed for tall matrices).
    ``sketch``: the first product ``A @ Omega`` when the caller made it during its own pass over the
    matrix, with ``A`` the operator so oriented and ``Omega = krylov_start(A.shape[1], block, seed)``.

    Returns:
        ``(values, depth)``: float64 tensor of ``min(k, rows, cols)`` singular values, descending.
    """
    m, n = op.shape
    if m > n:
        op = op.transposed()
        exact = exact.transposed() if exact is not None else None
        m, n = n, m
    exact = exact or op
    k = min(k, m)
    block = max(1, min(block, m))
    q = _orthonormal(sketch if sketch is not None else op.times(krylov_start(n, block, seed)))
    basis = [q]
    gram_rows: list[torch.Tensor] = []  # T's block rows
    previous = None
    depth = 1
    for depth in range(1, max_depth + 1):
        z = op.t_times(basis[-1])  # (n, b) = W.T @ Q_j
        zq, zr = torch.linalg.qr(z, mode="reduced")
        y = op.times(zq)  # (m, b) = W W^T Q_j R^-1
        wwq = y @ zr  # W W^T Q_j
        k_mat = torch.cat(basis, dim=1)
        gram_rows.append(k_mat.T @ wwq)  # T[:, j]
        t = _assemble(gram_rows)
        ritz = torch.linalg.eigvalsh(t.double()).flip(0).clamp_min(0).sqrt()
        top = slice(0, max(1, min(converge_k, k)))
        done = previous is not None and k_mat.shape[1] >= min(m, max(k, min(converge_k, k) + block))
        if done and float(((ritz[top] - previous[top]).abs() / ritz[top].clamp_min(1e-300)).max()) < tol:
            break
        previous = ritz
        if k_mat.shape[1] + block > m or depth == max_depth:
            break
        for _ in range(2):  # block Gram-Schmidt, twice for orthogonality in float32
            y = y - k_mat @ (k_mat.T @ y)
        basis.append(_orthonormal(y))
    # Rayleigh-Ritz: the top converge_k values from one float32 product on their Ritz vectors alone (a third of
    # the columns: this product reads the whole matrix in float32); the rest from T, as computed.
    k_mat = torch.cat(basis, dim=1)
    kc = max(1, min(converge_k, k))
    evals, evecs = torch.linalg.eigh(t.double())
    # a multiple of 16 columns: CPU GEMMs take a slow path on odd widths (benchmarks/README.md)
    width = min(k_mat.shape[1], -(-kc // 16) * 16)
    ritz_vectors = (k_mat.double() @ evecs[:, -width:].flip(1)).to(k_mat.dtype)
    head = torch.linalg.svdvals(exact.t_times(ritz_vectors).double())[:kc]
    tail = evals.flip(0).clamp_min(0).sqrt()[kc:k]
    return torch.cat([head.cpu(), tail.cpu()]), depth


def krylov_start(n: int, block: int, seed: int) -> torch.Tensor:
    """The seeded Gaussian start block ``Omega`` (n x block, float32) of ``svd_block_krylov``."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(n, block, generator=gen, dtype=torch.float32)


def _assemble(cols: list[torch.Tensor]) -> torch.Tensor:
    """The symmetric matrix whose upper block columns are ``cols`` (column j has j + 1 blocks of rows)."""
    size = cols[-1].shape[0]
    t = torch.zeros(size, size, dtype=cols[-1].dtype)
    b = cols[0].shape[1]
    for j, c in enumerate(cols):
        t[: c.shape[0], j * b : (j + 1) * b] = c
    upper = torch.triu(t)
    return upper + torch.triu(t, diagonal=1).T
