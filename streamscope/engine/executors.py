"""Where jobs run: in this process (``run_local``) or as tasks on a dask.distributed cluster.

A job is one unit of streamed work with a name, a size in bytes and a ``run(runner, on_bytes)``: a tensor
(``TensorJob``) or a pair of tensors compared side by side (``PairJob``). Jobs run one after another in the
order their bytes lie on disk; a job that fails is reported and the others go on.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from streamscope.analyses.compare import CompareOptions
from streamscope.engine.budget import MIN_BUDGET, MemoryBudget
from streamscope.engine.options import ScanOptions
from streamscope.engine.threads import job_threads, one_thread_each
from streamscope.errors import StreamscopeError
from streamscope.io.tensor import TensorInfo

#: Seconds to wait for a dask scheduler before giving up.
CONNECT_TIMEOUT = 10
#: Jobs of at most this many values may run side by side: small matrices keep a core busy each, one thread per
#: tensor, where larger ones run faster one at a time on every core, their products being memory-bound
#: (benchmarks/README.md).
SIDE_BY_SIDE_MAX_VALUES = 1 << 22
#: Bytes per value that an analysis may hold at most (spectral ``exact``: two float64 copies of the matrix and
#: LAPACK's workspace of three small-side squares, 40 bytes per value; ``analyses.spectral.method_bytes``).
BYTES_PER_VALUE = 40


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
    rank: int = CompareOptions.rank
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
    """Run jobs in this process; a job that raises is reported through ``on_result`` and the rest go on.

    Jobs run in the order given. On a CPU, when an active analysis is ``compute_bound``, two or more small jobs
    in a row (``side_by_side``) run at once, one per core with one thread each, each with its share of the
    memory budget; the others run one at a time on every core.
    """
    from streamscope.engine.runner import TensorRunner

    runner = TensorRunner(options, tokenizer)
    compute_bound = any(a.compute_bound for a in options.active())
    workers = job_threads() if runner.device.type == "cpu" and compute_bound else 1
    share = options.memory.share(workers) if workers > 1 and options.memory.total // workers >= MIN_BUDGET else None
    side: SideBySide | None = None
    try:
        for small, group in itertools.groupby(jobs, key=lambda job: share is not None and side_by_side(job, share)):
            group = list(group)
            if small and len(group) > 1:
                side = side or SideBySide([TensorRunner(dataclasses.replace(options, memory=share), tokenizer) for _ in range(workers)])
                side.run(group, on_result, on_bytes)
                continue
            for job in group:
                try:
                    result = job.run(runner, on_bytes)
                except Exception as e:  # noqa: BLE001 - one tensor's failure must not end the scan
                    on_result(job, None, _describe(job, e))
                    continue
                on_result(job, result, None)
    finally:
        runner.close()
        if side is not None:
            side.close()


def side_by_side(job, share: MemoryBudget) -> bool:
    """Whether ``job`` is small enough to run beside others, each with ``share`` of the budget.

    Its values must be at most ``SIDE_BY_SIDE_MAX_VALUES``, and ``BYTES_PER_VALUE`` times them must fit the
    analysis memory of the share: then every analysis picks the method it would pick with the whole budget.
    """
    values = sum(t.numel for t in job.tensors)
    return values <= SIDE_BY_SIDE_MAX_VALUES and values * BYTES_PER_VALUE <= share.analysis_bytes


class SideBySide:
    """Small jobs on a pool of threads, one ``TensorRunner`` each, every kernel on one thread."""

    def __init__(self, runners: list):
        self.runners = runners
        self.lock = threading.Lock()

    def run(self, jobs: list, on_result: OnResult, on_bytes: Callable[[int], None] | None) -> None:
        """Run ``jobs``; each is reported by the thread that ran it, one report at a time. On an interrupt (here
        or inside a job) the jobs under way end and are reported; the others do not start."""
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

        def run_one(job, runner) -> None:
            # Reported here, not by the waiting thread: that one would queue for the interpreter lock behind
            # the jobs' Python code at every write of a result.
            try:
                result, error = job.run(runner), None
            except Exception as e:  # noqa: BLE001 - one tensor's failure must not end the scan
                result, error = None, _describe(job, e)
            with self.lock:
                on_result(job, result, error)
                if on_bytes:
                    on_bytes(job.nbytes)

        queue, free, running = list(reversed(jobs)), list(self.runners), {}
        with one_thread_each(), ThreadPoolExecutor(len(self.runners), thread_name_prefix="streamscope-job") as pool:
            try:
                while queue or running:
                    while queue and free:
                        job, runner = queue.pop(), free.pop()
                        running[pool.submit(run_one, job, runner)] = runner
                    for future in wait(running, return_when=FIRST_COMPLETED).done:
                        free.append(running.pop(future))
                        if future.exception() is not None:  # an interrupt or exit inside a job: stop as here
                            raise future.exception()
            finally:
                while running:
                    try:
                        wait(running)
                        running.clear()
                    except KeyboardInterrupt:
                        continue

    def close(self) -> None:
        for runner in self.runners:
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
