"""Where jobs run: in this process (``run_local``) or as tasks on a dask.distributed cluster.

A job is one unit of streamed work with a name, a size in bytes and a ``run(runner, on_bytes)``: a tensor
(``TensorJob``) or a pair of tensors compared side by side (``PairJob``). Jobs run one after another in the
order their bytes lie on disk; a job that fails is reported and the others go on.
"""

from __future__ import annotations

import dataclasses
import os
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from streamscope.engine.options import ScanOptions
from streamscope.errors import StreamscopeError
from streamscope.io.tensor import TensorInfo

#: Seconds to wait for a dask scheduler before giving up.
CONNECT_TIMEOUT = 10


@dataclass(frozen=True)
class TensorJob:
    info: TensorInfo

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def nbytes(self) -> int:
        return self.info.nbytes

    @property
    def tensors(self) -> tuple[TensorInfo, ...]:
        return (self.info,)

    def run(self, runner, on_bytes=None):
        return runner.run(self.info, on_bytes)


@dataclass(frozen=True)
class PairJob:
    before: TensorInfo
    after: TensorInfo
    rank: int = 8
    heads: int | None = None  # ``after``'s rows are llama.cpp-permuted within this many heads (GGUF q and k)

    @property
    def name(self) -> str:
        return self.before.name

    @property
    def nbytes(self) -> int:
        return self.before.nbytes + self.after.nbytes

    @property
    def tensors(self) -> tuple[TensorInfo, ...]:
        return (self.before, self.after)

    def run(self, runner, on_bytes=None):
        return runner.run_pair(self.before, self.after, self.rank, on_bytes, heads=self.heads)


OnResult = Callable[[object, object, "str | None"], None]


def _describe(job, e: BaseException) -> str:
    return f"{job.tensors[0].shard}: tensor {job.name!r}: {type(e).__name__}: {e}"


def run_local(jobs: list, options: ScanOptions, tokenizer: Path | None, on_result: OnResult,
              on_bytes: Callable[[int], None] | None = None) -> None:  # fmt: skip
    """Run jobs in this process; a job that raises is reported through ``on_result`` and the rest go on."""
    from streamscope.engine.runner import TensorRunner

    runner = TensorRunner(options, tokenizer)
    try:
        for job in jobs:
            try:
                result = job.run(runner, on_bytes)
            except Exception as e:  # noqa: BLE001 - one tensor's failure must not end the scan
                on_result(job, None, _describe(job, e))
                continue
            on_result(job, result, None)
    finally:
        runner.close()


_WORKER_RUNNERS: dict[str, object] = {}


def _run_on_worker(job, options: ScanOptions, tokenizer: Path | None):
    from streamscope.engine.runner import TensorRunner

    key = repr(options)
    runner = _WORKER_RUNNERS.get(key)
    if runner is None:
        runner = _WORKER_RUNNERS[key] = TensorRunner(options, tokenizer)
    try:
        return job.run(runner), None
    except Exception as e:  # noqa: BLE001
        return None, f"{_describe(job, e)}\n{traceback.format_exc(limit=2)}"


def run_distributed(jobs: list, options: ScanOptions, tokenizer: Path | None, on_result: OnResult,
                    on_bytes: Callable[[int], None] | None, scheduler: str, workers: int | None = None) -> None:  # fmt: skip
    """Run jobs as tasks on a dask.distributed cluster (``scheduler`` address, or ``"local"``).

    The memory budget is split over the cluster's worker threads: each streams its tensors with its share.
    Results come back as they finish.
    """
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler == "local":
        cluster = LocalCluster(n_workers=workers or 2, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as e:
            raise StreamscopeError(f"--scheduler {scheduler}: cannot reach a dask scheduler there within "
                                   f"{CONNECT_TIMEOUT} s ({type(e).__name__}); check the address or use --scheduler local") from e  # fmt: skip
    try:
        threads = sum(client.nthreads().values()) or 1
        share = dataclasses.replace(options, memory=options.memory.share(threads))
        futures = {client.submit(_run_on_worker, job, share, tokenizer, pure=False): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            result, error = future.result()
            on_result(job, result, error)
            if on_bytes:
                on_bytes(job.nbytes)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def default_threads() -> None:
    """Use every core for torch's intra-op work unless the user chose otherwise (``OMP_NUM_THREADS``)."""
    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(os.cpu_count() or 1)
