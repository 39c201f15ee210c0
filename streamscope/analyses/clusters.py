"""k-means clusters of one embedding matrix's rows, with the elbow over a range of k, silhouettes and a 2-D PCA.

``study`` streams the matrix (``blocks()``: row blocks on the device, each call a new pass):
1. one pass gathers a seeded sample of rows and the column mean and covariance (float32, for the PCA; when the
   covariance would not fit the memory left to analyses, the PCA comes from the sample and says so);
2. for every k of the range, the best of three k-means++ seedings refined on the sample, one mini-batch pass
   over all rows, then full Lloyd passes over all rows for every k at once until each k's inertia settles
   (``kernels.kmeans``);
3. ``auto`` picks k at the knee of the elbow curve (Kneedle: farthest below the chord of the normalised curve),
   and ``structure`` says whether the rows have clusters there at all or k-means only cuts a cloud;
4. a last pass labels every row with the chosen k's clusters.
A ``Checkpoint`` keeps the state after every pass (the sample, then the centres), so an interrupted study resumes
at the pass where it stopped.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from streamscope.errors import OptionError
from streamscope.optionspec import opt

KNEE_RULE = "knee of the elbow curve: the k farthest below the chord joining its ends, k and inertia scaled to [0, 1] (Kneedle)"
METRICS = ("euclidean", "cosine")
#: A clear cluster structure leaves at most this share of the inertia that structureless rows keep (see ``structure``).
STRUCTURE_MARGIN = 0.75
STRUCTURE_RULE = ("clear clusters: k-means at k keeps at most 0.75 of the share inertia(k) / inertia(1) that it keeps on "
                  "Gaussian rows of the same mean and covariance (the gap statistic's reference), on a sample")


@dataclass(frozen=True)
class ClusterOptions:
    """The embedding study's options (``streamscope embeddings``); ``parse`` checks what users typed."""

    clusters: str | int = opt("auto", "auto (the knee of the elbow curve) or a number of clusters.", metavar="K")
    k_range: tuple[int, int] = opt((2, 32), "LOW:HIGH, the k of the elbow curve.", metavar="LOW:HIGH", sep=":")
    metric: str = opt("euclidean", "euclidean or cosine (spherical k-means).", metavar="METRIC")
    random_state: int = opt(0, "Seed of the sample and the k-means++ seeding.", metavar="N")
    sample_rows: int = opt(20000, "Rows sampled for the k-means++ seeding and the 2-D projection.", metavar="N", advanced=True)
    silhouette_rows: int = opt(2000, "Rows sampled for the silhouette score.", metavar="N", advanced=True)
    max_iter: int = opt(30, "Most full Lloyd passes over all rows.", metavar="N", advanced=True)
    tol: float = opt(1e-4, "Stop the Lloyd passes when the inertia changes less than this (relative).", metavar="X", advanced=True)

    @classmethod
    def parse(cls, **given) -> "ClusterOptions":
        """Options from keyword values as users give them (``k_range="2:24"``, ``clusters="8"``); the rest default.

        Raises:
            OptionError: a value out of range or of the wrong form, naming its command-line option.
        """
        unknown = sorted(set(given) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise OptionError(f"unknown clustering option {unknown[0]!r}; known: {', '.join(f.name for f in dataclasses.fields(cls))}")
        values = {**{f.name: f.default for f in dataclasses.fields(cls)}, **given}
        clusters, k_range, metric = values.pop("clusters"), values.pop("k_range"), values.pop("metric")
        if isinstance(k_range, str):
            try:
                lo, hi = (int(p) for p in k_range.split(":"))
            except ValueError:
                raise OptionError(f"--k-range must be LOW:HIGH, e.g. 2:32; got {k_range!r}") from None
        else:
            lo, hi = k_range
        if not 1 <= lo < hi <= 1024:
            raise OptionError(f"--k-range must satisfy 1 <= LOW < HIGH <= 1024; got {lo}:{hi}")
        if metric not in METRICS:
            raise OptionError(f"--metric must be euclidean or cosine; got {metric!r}")
        if str(clusters) != "auto":
            try:
                clusters = int(clusters)
            except ValueError:
                raise OptionError(f"--clusters must be auto or a number; got {clusters!r}") from None
            if not 1 <= clusters <= 4096:
                raise OptionError(f"--clusters must be between 1 and 4096; got {clusters}")
        for name, low in (("sample_rows", 1), ("silhouette_rows", 2), ("max_iter", 1)):
            if int(values[name]) < low:
                raise OptionError(f"--{name.replace('_', '-')} must be at least {low}; got {values[name]}")
        if not float(values["tol"]) >= 0:
            raise OptionError(f"--tol must be 0 or more; got {values['tol']}")
        values["random_state"] = int(values["random_state"])
        return cls(clusters=clusters, k_range=(lo, hi), metric=metric, **values)

    def ks(self, rows: int) -> list[int]:
        if self.clusters != "auto":
            return [min(int(self.clusters), rows)]
        return list(range(self.k_range[0], min(self.k_range[1], rows) + 1))

    @property
    def max_passes(self) -> int:
        """Passes over the rows at most: the sample, the mini-batch pass, ``max_iter`` Lloyd passes, the labels."""
        return self.max_iter + 3


@dataclass
class Study:
    """What ``study`` found for one matrix; ``to_parts`` gives it as a record and arrays (``from_parts`` back)."""

    k: int
    metric: str
    rule: str
    elbow: list[dict]
    labels: np.ndarray  # (rows,) int32
    distances: np.ndarray  # (rows,) float32, squared distance to the own centroid (in the metric's space)
    centroids: np.ndarray  # (k, cols) float32
    sample_rows: np.ndarray  # rows of the 2-D projection
    projection: np.ndarray  # (len(sample_rows), 2)
    projection_labels: np.ndarray
    pca_from: str
    passes: int
    structure: dict | None = None  # see ``structure``; None for a given k

    def to_parts(self) -> tuple[dict, dict[str, np.ndarray]]:
        fields = [f.name for f in dataclasses.fields(self)]
        return ({f: getattr(self, f) for f in fields if f not in _ARRAYS}, {f: getattr(self, f) for f in _ARRAYS})

    @classmethod
    def from_parts(cls, record: dict, arrays: dict[str, np.ndarray]) -> "Study":
        return cls(**record, **arrays)


_ARRAYS = ("labels", "distances", "centroids", "sample_rows", "projection", "projection_labels")


class Checkpoint:
    """Where ``study`` keeps its state between passes; this one keeps nothing (see ``engine.embeddings``)."""

    def load(self, part: str) -> tuple[dict, dict[str, np.ndarray]] | None:
        return None

    def save(self, part: str, record: dict, arrays: dict[str, np.ndarray]) -> None:
        pass


def study(blocks, rows: int, cols: int, options: ClusterOptions, device, analysis_bytes: int, on_pass=None,
          checkpoint: Checkpoint | None = None) -> Study:  # fmt: skip
    """Cluster one matrix streamed by ``blocks()``; ``on_pass(n, remaining)`` after every pass over its rows
    (``remaining``: the passes left once known, else None).

    ``checkpoint`` keeps the state after every pass: a study that finds one resumes after the last saved pass
    and gives the same result as one that was never interrupted.
    """
    import torch

    from streamscope.kernels import kmeans

    checkpoint = checkpoint or Checkpoint()
    gen = torch.Generator().manual_seed(options.random_state)
    ks = options.ks(rows)
    chosen_rows, sample, mean, cov = _sampled(blocks, rows, cols, ks, options, device, analysis_bytes, gen, checkpoint)
    report = on_pass or (lambda n, remaining=None: None)
    report(1)
    state = _seeded(blocks, sample, ks, options, device, gen, checkpoint)
    settled = lambda st: all(st.done) or st.iteration >= options.max_iter  # noqa: E731
    report(2 + state.iteration, 1 if settled(state) else None)

    def after(st) -> None:
        checkpoint.save("centres", *_lloyd_parts(st, gen))
        report(2 + st.iteration, 1 if settled(st) else None)

    state = kmeans.lloyd(blocks, state, options.metric, options.max_iter, options.tol, on_pass=after)
    sil_n = min(options.silhouette_rows, len(chosen_rows))
    sil_sample = sample[torch.randperm(len(chosen_rows), generator=gen)[:sil_n]].to(device)
    elbow = _elbow(sil_sample, ks, state, options.metric)
    k = kmeans.knee(ks, state.inertia) if options.clusters == "auto" else ks[0]
    best = state.centers[ks.index(k)]
    labels, dist = _labelled(blocks, best, rows, options.metric)
    report(3 + state.iteration, 0)
    components, pca_from = _components(cov, mean, sample, cov is not None)
    centred = kmeans.prepare(sample, options.metric) - mean.to(torch.float32)
    projection = (centred @ components).numpy()  # (n_sample, 2)
    found = structure(sil_sample, k, options) if options.clusters == "auto" and k > 1 else None
    return Study(k, options.metric, KNEE_RULE if options.clusters == "auto" else "given", elbow, labels, dist,
                 best.cpu().numpy().astype(np.float32), chosen_rows.numpy(), projection, labels[chosen_rows.numpy()], pca_from,
                 3 + state.iteration, found)  # fmt: skip


def _elbow(sil_sample, ks: list[int], state, metric: str) -> list[dict]:
    """Per k: the inertia over all rows, the silhouette of a sample, the Lloyd passes it took."""
    from streamscope.kernels import kmeans

    elbow = []
    for k, c, v, passes in zip(ks, state.centers, state.inertia, state.passes):
        lab, _ = kmeans.assign(sil_sample, c, metric)
        sil = kmeans.silhouette(kmeans.prepare(sil_sample, metric), lab) if k > 1 else float("nan")
        elbow.append({"k": k, "inertia": v, "silhouette": sil, "lloyd_passes": passes})
    return elbow


def _labelled(blocks, centers, rows: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """The last pass: every row's cluster and its squared distance to the centre."""
    from streamscope.kernels import kmeans

    labels = np.empty(rows, np.int32)
    dist = np.empty(rows, np.float32)
    for r0, r1, block in blocks():
        lab, d = kmeans.assign(block, centers, metric)
        labels[r0:r1] = lab.cpu().numpy()
        dist[r0:r1] = d.cpu().numpy()
    return labels, dist


def _sampled(blocks, rows, cols, ks, options, device, analysis_bytes, gen, checkpoint):
    """Pass 1, or its saved result: (chosen rows, sample, column mean, covariance or None)."""
    import torch

    saved = checkpoint.load("sample")
    if saved:
        _, a = saved
        gen.set_state(torch.from_numpy(a["generator"]))
        return (torch.from_numpy(a["chosen_rows"]), torch.from_numpy(a["sample"]), torch.from_numpy(a["mean"]),
                torch.from_numpy(a["cov"]) if "cov" in a else None)  # fmt: skip
    # memory left to this study: every k's centres (float32), their float64 sums and a float32 block of sums,
    # then the sample (at most a third of what analyses may hold), then the covariance if it still fits
    centres = sum(ks) * cols * (4 + 8 + 4)
    n_sample = min(rows, max(options.sample_rows, 20 * max(ks)), max(4 * max(ks), analysis_bytes // 3 // (cols * 4)))
    chosen_rows = torch.randperm(rows, generator=gen)[:n_sample].sort().values
    use_cov = cols * cols * 4 <= analysis_bytes - centres - n_sample * cols * 4
    sample, mean, cov = _first_pass(blocks, chosen_rows, cols, options.metric, use_cov, device)
    arrays = {"generator": gen.get_state().numpy(), "chosen_rows": chosen_rows.numpy(), "sample": sample.numpy(), "mean": mean.numpy()}
    checkpoint.save("sample", {}, {**arrays, **({"cov": cov.numpy()} if cov is not None else {})})
    return chosen_rows, sample, mean, cov


def _seeded(blocks, sample, ks, options, device, gen, checkpoint):
    """k-means++ seeding and pass 2 (mini-batch), or the saved state of the Lloyd passes that followed."""
    import torch

    from streamscope.kernels import kmeans

    saved = checkpoint.load("centres")
    if saved:
        r, a = saved
        gen.set_state(torch.from_numpy(a["generator"]))
        centers = [c.to(device) for c in torch.from_numpy(a["centers"]).split(ks)]
        return kmeans.LloydState(centers, r["inertia"], r["passes"], r["done"], r["iteration"])
    centers = [kmeans.seed_centers(sample, k, gen, options.metric).to(device) for k in ks]
    state = kmeans.LloydState.start(kmeans.minibatch(blocks, centers, options.metric))
    checkpoint.save("centres", *_lloyd_parts(state, gen))
    return state


def _lloyd_parts(state, gen) -> tuple[dict, dict[str, np.ndarray]]:
    import torch

    record = {"inertia": state.inertia, "passes": state.passes, "done": state.done, "iteration": state.iteration}
    return record, {"centers": torch.cat(state.centers).cpu().numpy(), "generator": gen.get_state().numpy()}


def structure(sample, k: int, options: ClusterOptions, replicas: int = 3) -> dict:
    """Whether the rows have clusters at ``k``, or k-means only cuts a cloud into ``k`` pieces.

    k-means lowers the inertia as k grows whatever the rows are; clusters show in how much more it falls than on
    rows without any, of the same spread: the gap statistic's question (Tibshirani, Walther and Hastie 2001), with
    a Gaussian reference of the sample's own mean and covariance, so that an elongated cloud is not taken for
    clusters. On ``sample`` and on ``replicas`` Gaussian draws of its size, the seeding k-means gives
    inertia(k) / inertia(1) (inertia(1): the squared distances to the mean). The structure is clear when the rows
    keep at most ``STRUCTURE_MARGIN`` of the reference's share: a gap of log(4/3), an effect a person would call
    clusters, where the spread of that log share between Gaussian draws is a few thousandths.
    """
    import torch

    from streamscope.kernels.kmeans import prepare, sample_inertia

    gen = torch.Generator().manual_seed(options.random_state + 1)
    x = prepare(sample, options.metric).cpu().double()
    centred = x - x.mean(0)

    def share(rows: torch.Tensor) -> float:
        spread = float(((rows - rows.mean(0)) ** 2).sum())
        return sample_inertia(rows.float(), k, gen, options.metric) / max(spread, 1e-300)

    observed = share(x)
    reference = []
    for _ in range(replicas):  # rows of G @ Xc / sqrt(n): Gaussian with the sample's covariance exactly
        g = torch.randn(x.shape[0], x.shape[0], generator=gen, dtype=torch.float64)
        reference.append(share(x.mean(0) + g @ centred / math.sqrt(x.shape[0])))
    expected = float(np.mean(reference))
    return {"clear": bool(observed <= STRUCTURE_MARGIN * expected), "k": k, "inertia_share": observed,
            "reference_share": expected, "rule": STRUCTURE_RULE}  # fmt: skip


def _first_pass(blocks, chosen_rows, cols: int, metric: str, use_cov: bool, device):
    """(sample rows, column mean, covariance or None) in one pass."""
    import torch

    from streamscope.kernels.kmeans import prepare

    sample = torch.empty(len(chosen_rows), cols, dtype=torch.float32)
    total = torch.zeros(cols, dtype=torch.float64, device=device)
    gram = torch.zeros(cols, cols, dtype=torch.float32, device=device) if use_cov else None
    n = 0
    at = 0
    for r0, r1, block in blocks():
        x = prepare(block, metric)
        total += x.sum(0, dtype=torch.float64)
        if gram is not None:
            gram.addmm_(x.T, x)
        n += x.shape[0]
        hi = int(torch.searchsorted(chosen_rows, r1))
        if hi > at:
            sample[at:hi] = x[(chosen_rows[at:hi] - r0).to(x.device)].cpu()
            at = hi
    mean = (total / max(n, 1)).cpu()
    cov = None
    if gram is not None:  # in place, in float32: a second copy of a (cols, cols) matrix would double its memory
        m32 = mean.to(gram.device, torch.float32)
        cov = gram.div_(max(n, 1)).addr_(m32, m32, alpha=-1).cpu()
    return sample, mean, cov


def _components(cov, mean, sample, use_cov: bool):
    """The two leading principal directions (cols, 2) float32, and where they came from."""
    import torch

    if cov is None:
        centred = sample - sample.mean(0)
        cov = centred.T @ centred / max(1, centred.shape[0] - 1)
        source = f"the covariance of a {sample.shape[0]}-row sample (the full covariance would not fit the memory budget)"
    else:
        source = "the streamed covariance of all rows"
    cov = cov.to(torch.float32)
    q = min(8, cov.shape[0])
    v = torch.linalg.qr(torch.randn(cov.shape[0], q, generator=torch.Generator().manual_seed(0), dtype=torch.float32)).Q
    for _ in range(60):  # subspace iteration on the covariance: only the leading directions are needed
        v = torch.linalg.qr(cov @ v).Q
    evals, evecs = torch.linalg.eigh(v.T @ cov @ v)
    top = v @ evecs[:, evals.argsort(descending=True)[:2]]
    top = top * torch.sign(top.sum(0) + 1e-300)  # deterministic signs
    return top.to(torch.float32), source


def cluster_table(s: Study, norms: np.ndarray | None, decode, random_state: int, top: int = 5) -> list[dict]:
    """Per cluster: size, mean row norm, the tokens nearest the centroid and a few random members."""
    rng = np.random.default_rng(random_state)
    order = np.argsort(s.labels, kind="stable")
    bounds = np.searchsorted(s.labels[order], np.arange(s.k + 1))
    out = []
    for c in range(s.k):
        members = order[bounds[c] : bounds[c + 1]]
        nearest = members[np.argsort(s.distances[members], kind="stable")[:top]]
        random = rng.choice(members, size=min(top, members.size), replace=False) if members.size else members
        token = lambda i: {"id": int(i), "token": decode(int(i))}  # noqa: E731
        out.append({
            "id": c,
            "size": int(members.size),
            "mean_norm": float(norms[members].mean()) if norms is not None and members.size else float("nan"),
            "mean_distance": float(np.sqrt(np.maximum(s.distances[members], 0)).mean()) if members.size else float("nan"),
            "tokens": [token(i) for i in nearest],
            "random_members": [token(i) for i in sorted(random)],
        })  # fmt: skip
    return out


def finite(v: float) -> float | None:
    return v if isinstance(v, float) and math.isfinite(v) else None
