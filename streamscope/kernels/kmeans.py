"""k-means over a matrix streamed in row blocks, for many k at once.

1. ``kmeans_pp``: k-means++ seeding (Arthur and Vassilvitskii 2007) on a seeded sample of rows.
2. ``minibatch``: mini-batch updates (Sculley 2010) over streamed row blocks, a per-centre learning rate
   1 / (rows assigned so far).
3. ``lloyd``: full Lloyd passes streamed over all rows, every k's centres in one matrix product per block, until
   each k's inertia changes by less than ``tol`` (relative) between passes.

Distances are squared Euclidean, ``|x|^2 - 2 x.c + |c|^2``; for the cosine metric rows and centres are unit
vectors (spherical k-means), so the same inertia is the squared chordal distance ``2 - 2 cos``. Inertia is summed
in float64.

References:
    D. Arthur, S. Vassilvitskii. k-means++: the advantages of careful seeding. SODA 2007.
    D. Sculley. Web-scale k-means clustering. WWW 2010.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch

RowBlocks = Callable[[], Iterable[tuple[int, int, torch.Tensor]]]


def prepare(x: torch.Tensor, metric: str) -> torch.Tensor:
    """Rows as float32; unit length for the cosine metric (zero rows stay zero)."""
    x = x.to(torch.float32)
    if metric == "cosine":
        x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return x


def kmeans_pp(sample: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k centres chosen from ``sample`` rows, each with probability proportional to its squared distance."""
    n = sample.shape[0]
    first = int(torch.randint(n, (1,), generator=gen))
    centers = [sample[first]]
    d2 = ((sample - sample[first]) ** 2).sum(1)  # (n,)
    for _ in range(1, k):
        total = float(d2.sum())
        idx = int(torch.multinomial(d2 / total, 1, generator=gen)) if total > 0 else int(torch.randint(n, (1,), generator=gen))
        centers.append(sample[idx])
        d2 = torch.minimum(d2, ((sample - sample[idx]) ** 2).sum(1))
    return torch.stack(centers)  # (k, dim)


def seed_centers(sample: torch.Tensor, k: int, gen: torch.Generator, metric: str, n_init: int = 3, iters: int = 15) -> torch.Tensor:
    """The best of ``n_init`` k-means++ seedings, each refined by Lloyd iterations on the sample alone (cheap:
    the sample is in memory), by the sample's inertia. Several seedings keep the elbow curve from the bumps a
    single unlucky seeding leaves."""
    x = prepare(sample, metric)
    best, best_inertia = None, float("inf")
    for _ in range(n_init):
        c = kmeans_pp(x, k, gen)
        for _ in range(iters):
            dist, idx = _nearest(x, c, (c * c).sum(1))
            counts = torch.bincount(idx, minlength=k)
            sums = torch.zeros_like(c).index_add_(0, idx, x)
            has = counts > 0
            c = c.clone()
            c[has] = sums[has] / counts[has].unsqueeze(1).to(c.dtype)
            if metric == "cosine":
                c = c / c.norm(dim=1, keepdim=True).clamp_min(1e-12)
        dist, _ = _nearest(x, c, (c * c).sum(1))
        inertia = float(dist.sum(dtype=torch.float64))
        if inertia < best_inertia:
            best, best_inertia = c, inertia
    return best


def sample_inertia(sample: torch.Tensor, k: int, gen: torch.Generator, metric: str) -> float:
    """The inertia of ``seed_centers``'s k centres on ``sample`` itself (summed in float64)."""
    x = prepare(sample, metric)
    c = seed_centers(x, k, gen, metric)
    dist, _ = _nearest(x, c, (c * c).sum(1))
    return float(dist.sum(dtype=torch.float64))


def _nearest(x: torch.Tensor, centers: torch.Tensor, c2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(squared distance, index) of each row's nearest centre."""
    d = (x * x).sum(1, keepdim=True) - 2 * (x @ centers.T) + c2  # (rows, k)
    dist, idx = d.min(dim=1)
    return dist.clamp_min(0), idx


def minibatch(blocks: RowBlocks, centers: list[torch.Tensor], metric: str, passes: int = 1) -> list[torch.Tensor]:
    """Sculley's mini-batch update of every k's centres, one row block at a time."""
    counts = [torch.zeros(c.shape[0], dtype=torch.float64, device=c.device) for c in centers]
    for _ in range(passes):
        for _, _, block in blocks():
            x = prepare(block, metric).to(centers[0].device)
            for c, n in zip(centers, counts):
                _, idx = _nearest(x, c, (c * c).sum(1))
                hits = torch.bincount(idx, minlength=c.shape[0]).to(torch.float64)
                sums = torch.zeros_like(c).index_add_(0, idx, x)
                n += hits
                has = hits > 0
                rate = (hits[has] / n[has]).to(c.dtype).unsqueeze(1)
                c[has] = (1 - rate) * c[has] + rate * (sums[has] / hits[has].to(c.dtype).unsqueeze(1))
                if metric == "cosine":
                    c[has] = c[has] / c[has].norm(dim=1, keepdim=True).clamp_min(1e-12)
    return centers


@dataclass
class LloydState:
    """Where the Lloyd passes stand: every k's centres, its inertia after the last pass, its number of passes,
    whether it has settled, and how many passes were made. Saved between passes, it resumes them exactly."""

    centers: list[torch.Tensor]
    inertia: list[float]
    passes: list[int]
    done: list[bool]
    iteration: int = 0

    @classmethod
    def start(cls, centers: list[torch.Tensor]) -> "LloydState":
        n = len(centers)
        return cls(centers, [float("inf")] * n, [0] * n, [False] * n)


def lloyd(blocks: RowBlocks, state: LloydState, metric: str, max_iter: int = 30, tol: float = 1e-4,
          on_pass: Callable[[LloydState], None] | None = None) -> LloydState:  # fmt: skip
    """Full Lloyd passes for every k at once, from ``state`` until every k settles or ``max_iter`` passes are made.

    A k settles when its inertia changes by less than ``tol`` (relative) between passes; its centres are then those
    whose assignment gave that inertia (the last pass's), summed over all rows. ``on_pass`` sees the state after
    every pass.
    """
    centers, sizes = state.centers, [c.shape[0] for c in state.centers]
    for it in range(state.iteration, max_iter):
        live = [i for i, d in enumerate(state.done) if not d]
        if not live:
            break
        totals, sums, counts = _lloyd_pass(blocks, [centers[i] for i in live], metric)
        for j, i in enumerate(live):
            state.passes[i] = it + 1
            has = counts[j] > 0
            new = centers[i].clone()
            new[has] = (sums[j][has] / counts[j][has].unsqueeze(1)).to(new.dtype)
            if metric == "cosine":
                new = new / new.norm(dim=1, keepdim=True).clamp_min(1e-12)
            if abs(state.inertia[i] - totals[j]) <= tol * max(totals[j], 1e-300):
                state.done[i] = True  # the assignment that gave this inertia is final: keep its centres
            else:
                centers[i] = new
            state.inertia[i] = totals[j]
        state.iteration = it + 1
        if on_pass:
            on_pass(state)
    return state


def _lloyd_pass(blocks: RowBlocks, live: list[torch.Tensor], metric: str):
    """One streamed pass: per live k, the inertia (float64) and the per-centre sums and counts of its rows."""
    sizes = [c.shape[0] for c in live]
    stacked = torch.cat(live)  # (sum of live k, dim)
    bounds = [0]
    for s in sizes:
        bounds.append(bounds[-1] + s)
    c2 = (stacked * stacked).sum(1)
    sums = [torch.zeros(s, stacked.shape[1], dtype=torch.float64, device=stacked.device) for s in sizes]
    counts = [torch.zeros(s, dtype=torch.float64, device=stacked.device) for s in sizes]
    totals = [0.0] * len(live)
    for _, _, block in blocks():
        x = prepare(block, metric).to(stacked.device)
        d = (x * x).sum(1, keepdim=True) - 2 * (x @ stacked.T) + c2  # (rows, sum of live k)
        for j, size in enumerate(sizes):
            dist, idx = d[:, bounds[j] : bounds[j + 1]].min(dim=1)
            totals[j] += float(dist.clamp_min(0).sum(dtype=torch.float64))
            sums[j] += torch.zeros(size, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, idx, x)  # block sums in float32, totals in float64
            counts[j] += torch.bincount(idx, minlength=size).to(torch.float64)
    return totals, sums, counts


def assign(x: torch.Tensor, centers: torch.Tensor, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(label, squared distance) of each row of one block."""
    x = prepare(x, metric).to(centers.device)
    dist, idx = _nearest(x, centers, (centers * centers).sum(1))
    return idx, dist


def silhouette(sample: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean silhouette coefficient of a (small) sample with Euclidean distances (in the metric's space)."""
    k = int(labels.max()) + 1 if labels.numel() else 0
    if k < 2 or sample.shape[0] < 3:
        return float("nan")
    d = torch.cdist(sample.double(), sample.double())  # (n, n)
    onehot = torch.nn.functional.one_hot(labels, k).double()  # (n, k)
    sizes = onehot.sum(0)
    mean_to = d @ onehot / sizes.clamp_min(1)  # (n, k): mean distance to each cluster
    own = labels
    own_size = sizes[own]
    a = (mean_to.gather(1, own[:, None]).squeeze(1) * own_size / (own_size - 1).clamp_min(1))  # exclude self
    mean_to.scatter_(1, own[:, None], float("inf"))
    mean_to[:, sizes == 0] = float("inf")
    b = mean_to.min(1).values
    s = (b - a) / torch.maximum(a, b)
    s[own_size <= 1] = 0.0
    return float(s.mean())


def knee(ks: list[int], inertia: list[float]) -> int:
    """The k at the knee of an elbow curve: the point farthest below the chord joining its ends, with k and
    inertia each scaled to [0, 1] (the Kneedle rule of Satopää et al. 2011, for a decreasing convex curve)."""
    if len(ks) < 3:
        return ks[0]
    x = [(k - ks[0]) / (ks[-1] - ks[0]) for k in ks]
    top, bottom = max(inertia), min(inertia)
    y = [(v - bottom) / (top - bottom) if top > bottom else 0.0 for v in inertia]
    chord = [y[0] + (y[-1] - y[0]) * xi for xi in x]
    gaps = [c - yi for c, yi in zip(chord, y)]
    return ks[max(range(len(ks)), key=lambda i: gaps[i])]
