"""What ``streamscope imatrix`` reports of importance-matrix files: one file's statistics, as
``llama-imatrix --show-statistics`` computes them (``kernels.imatrix_stats``), or two files compared tensor by
tensor. Files are read by ``io.imatrix_file``."""

from __future__ import annotations

import statistics


def statistics_of(m) -> dict:
    """The JSON of one file: its facts, ``tensors`` (llama.cpp's listing order), ``layers`` and ``summary``."""
    from streamscope.kernels import imatrix_stats as k

    stats = k.tensor_statistics(m.entries, m.n_layer_nextn)
    tensors = {n: s.as_dict() for n, s in stats.items()}
    h = {n: t["h_norm"] for n, t in tensors.items() if t["h_norm"] is not None}
    low = min(h, key=h.get) if h else None
    summary = dict(tensors=len(tensors), layers=sum(1 for n in {k.block(n) for n in tensors} if n is not None),
                   sum_e_a2=sum(s.total for s in stats.values()), h_norm_median=statistics.median(h.values()) if h else None,
                   h_norm_min=h.get(low), h_norm_min_tensor=low, unreadable=sorted(set(m.entries) - set(stats)))  # fmt: skip
    return dict(file=str(m.path), datasets=m.datasets, chunk_count=m.chunk_count, chunk_size=m.chunk_size, in_sum=m.has_sums,
                moments_of=_moments_of(m), tensors=tensors, layers=k.layer_statistics(stats, m.n_layer_nextn),
                summary=summary)  # fmt: skip


def comparison(a, b) -> dict:
    """The JSON of two files: per tensor of both ``{cosine, sum_a, sum_b, ratio}``, the tensors of one only, those
    whose lengths differ, and ``summary`` (median and least cosine, the ratio of the totals over the shared tensors)."""
    from streamscope.kernels import imatrix_stats as k

    both = sorted(set(a.entries) & set(b.entries), key=k.sort_key)
    tensors, mismatched = {}, []
    for n in both:
        c = k.compare(a.entries[n], b.entries[n])
        if c is None:
            mismatched.append(n)
        else:
            tensors[n] = c
    cos = {n: t["cosine"] for n, t in tensors.items() if t["cosine"] is not None}
    least = min(cos, key=cos.get) if cos else None
    total_a, total_b = sum(t["sum_a"] for t in tensors.values()), sum(t["sum_b"] for t in tensors.values())
    summary = dict(both=len(tensors), cosine_median=statistics.median(cos.values()) if cos else None, cosine_min=cos.get(least),
                   cosine_min_tensor=least, sum_a=total_a, sum_b=total_b, ratio=total_b / total_a if total_a > 0 else None)  # fmt: skip
    return dict(a=str(a.path), b=str(b.path), tensors=tensors, only_a=sorted(set(a.entries) - set(b.entries), key=k.sort_key),
                only_b=sorted(set(b.entries) - set(a.entries), key=k.sort_key), mismatched=mismatched, summary=summary)  # fmt: skip


def _moments_of(m) -> str:
    with_sums = sum(v.sums is not None for v in m.entries.values())
    return "E[A]" if with_sums == len(m.entries) else "E[A²]" if with_sums == 0 else "E[A] (E[A²] where a tensor has no in_sum)"
