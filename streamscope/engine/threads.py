"""How many threads the kernels use: every core on one tensor at a time, or one thread each while small
tensors run side by side, one per core (``executors.run_local``).

Small matrices gain little from a second BLAS or LAPACK thread (benchmarks/README.md): two tensors on one thread
each keep both cores busy instead.
"""

from __future__ import annotations

import os
from contextlib import contextmanager


def default_threads() -> None:
    """Use every core for torch's intra-op work unless the user chose otherwise (``OMP_NUM_THREADS``)."""
    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(os.cpu_count() or 1)


def job_threads() -> int:
    """How many jobs may run side by side: torch's thread count (every core, or ``OMP_NUM_THREADS``), at most 8."""
    import torch

    return max(1, min(8, torch.get_num_threads()))


@contextmanager
def one_thread_each():
    """torch's intra-op pool, numpy's BLAS and the native kernel on one thread each, while the block runs.

    torch applies its thread count to a thread the first time that thread runs a parallel operation: pool
    threads started inside this block keep one thread for good, so start the jobs' pool inside it.
    """
    import torch
    from threadpoolctl import threadpool_limits

    from streamscope.kernels import native

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1, user_api="blas"), native.limit_threads(1):
            yield
    finally:
        torch.set_num_threads(before)
