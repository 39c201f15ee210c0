"""Data-parallel activation runs on dask.distributed: the samples split over workers, the probe states merged.

Each worker streams every decoder layer over its share of the samples (weights read once per worker, from
storage every worker can read) and checkpoints its probe states per layer in ``OUT/.parts/wK/`` exactly as a
single run does (so a killed worker's share resumes too). The driver then merges the states module by module
(``Collector.restore``) and reduces them: maxima, counts and the pattern counts behind medians and quantiles
merge exactly, sums of |x| are kept per call and summed exactly, channel sums of squares add in float64.
Shares are whole batches of the single run's plan, so every layer call sees the samples a single run would
group with them: with the same number of BLAS threads per worker as the single run, the activations are the
same bits and so are the files. With another thread count the matrix products round differently (float32,
about 1e-7 relative), as they would in a single run with that thread count. A local cluster gives each
worker its share of the cores.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from streamscope.errors import StreamscopeError

CONNECT_TIMEOUT = 10  # seconds to reach a --scheduler address
PARTS = ".parts"


def shares(n: int, seq: int, batch_size: int | None, workers: int) -> list[tuple[int, int]]:
    """``(first, stop)`` sample ranges, one per worker that gets samples, cut at the single run's batch edges."""
    from streamscope.activation.forward import batches

    spans = batches(n, seq, batch_size)
    k = max(1, min(workers, len(spans)))
    cuts = [round(i * len(spans) / k) for i in range(k + 1)]
    return [(spans[cuts[i]][0], spans[cuts[i + 1] - 1][1]) for i in range(k)]


def run(prep, out: Path, scheduler: str, workers: int | None, resume: bool = True, echo=print, progress: bool = False):
    """Stream ``prep``'s samples over a dask cluster; returns ``(merged collector, run facts)``."""
    from streamscope.activation.collect import Collector
    from streamscope.activation.probes import PROBES

    client, cluster = _client(scheduler, workers)
    t0 = time.perf_counter()
    try:
        n_workers = len(client.nthreads()) or 1
        batch = prep.config["data"]["batch_size"]
        ranges = shares(int(prep.ids.shape[0]), int(prep.ids.shape[1]), None if batch == "auto" else batch, n_workers)
        threads = max(1, (os.cpu_count() or 1) // n_workers) if cluster is not None else None
        futures = [client.submit(_share, prep.model_dir, prep.config, prep.ids[a:b].clone(), a, str(out / PARTS / f"w{k}"), resume, threads,
                                 pure=False) for k, (a, b) in enumerate(ranges)]  # fmt: skip
        why = f" ({len(ranges)} batch{'es' if len(ranges) > 1 else ''} of samples to share: a worker takes whole batches)" if len(ranges) < n_workers else ""
        echo(f"{len(ranges)} dask worker{'s' if len(ranges) > 1 else ''}{why}, samples {', '.join(f'{a}-{b - 1}' for a, b in ranges)}")
        facts = _wait(futures, [out / PARTS / f"w{k}" for k in range(len(ranges))], len(prep.skeleton.layers), progress)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    from streamscope.activation.resume import LayerCheckpoint, load_dumps

    collector = Collector(PROBES, prep.config["visualization"], prep.watch, int(prep.ids.shape[0]))
    parts = [LayerCheckpoint(Path(f["out"]), "").parts() for f in facts]
    for layer in range(max(len(p) for p in parts)):  # one layer of every worker at a time: memory as a single run's
        collector.restore([load_dumps(p[layer]) for p in parts if layer < len(p)])
    shutil.rmtree(out / PARTS, ignore_errors=True)
    return collector, {"batch_size": facts[0]["batch_size"], "forward_seconds": time.perf_counter() - t0,
                       "bytes_read": sum(f["bytes_read"] for f in facts), "workers": len(facts),
                       "peak_rss_bytes": max(f["peak_rss_bytes"] for f in facts), "resumed_after_layer": None,
                       "hidden_states_spilled": any(f["spilled"] for f in facts)}  # fmt: skip


def _share(model_dir, config: dict, ids, first: int, out: str, resume: bool, threads: int | None) -> dict:
    """On a worker: stream every layer over samples ``first ..`` (``ids``), leaving the states in ``out``."""
    import resource

    import torch

    from streamscope.activation import profile

    if threads:
        torch.set_num_threads(threads)
    out_dir = Path(out)
    prep = profile.prepare(model_dir, config, echo=lambda s: None, ids=ids)
    _, result, checkpoint = profile.stream(prep, out_dir, resume=resume, echo=lambda s: None, first_sample=first)
    return {"out": str(checkpoint.dir.parent), "batch_size": result.batch_size, "bytes_read": result.bytes_read,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "spilled": result.spilled_to is not None}  # fmt: skip


def _wait(futures: list, dirs: list[Path], n_layers: int, progress: bool) -> list[dict]:
    """Every worker's facts; meanwhile the progress bar shows the layers every worker has finished."""
    import json

    from streamscope.activation.profile import _progress

    bar = _progress(progress, n_layers)
    try:
        while not all(f.done() for f in futures):
            if bar:
                done = []
                for d in dirs:
                    try:
                        done.append(json.loads((d / ".activations-resume" / "state.json").read_text())["done"] + 1)
                    except (OSError, ValueError, KeyError):
                        done.append(0)
                bar.update("layers", min(done), n_layers)
            time.sleep(0.25)
        return [f.result() for f in futures]
    except StreamscopeError:
        raise
    except Exception as e:  # noqa: BLE001 - a worker's failure comes back as whatever it raised
        raise StreamscopeError(f"a dask worker failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    finally:
        if bar:
            bar.close()


def _client(scheduler: str, workers: int | None):
    from dask.distributed import Client, LocalCluster

    if scheduler == "local":
        cluster = LocalCluster(n_workers=workers or 2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR)
        return Client(cluster), cluster
    try:
        return Client(scheduler, timeout=CONNECT_TIMEOUT), None
    except (OSError, TimeoutError) as e:
        raise StreamscopeError(f"--scheduler {scheduler}: cannot reach a dask scheduler there within {CONNECT_TIMEOUT} s "
                               f"({type(e).__name__}); check the address or use --scheduler local --workers N") from e  # fmt: skip
