"""Benchmark harness: the raw floor, the naive eager approach and streamscope, on the same page-cached files.

Each method runs in a child process (``python -m streamscope.bench METHOD PATH ...``) so that its peak RSS,
read from ``wait4`` as ``/usr/bin/time -v`` reports it, is its own.

Methods:
- ``raw``: map the file, convert each tensor to float32 in 64 MiB row blocks into one reused buffer, sum.
  The floor that any analysis pays.
- ``naive``: what the seed tools do: ``safetensors.torch.load_file``, then torch ops per metric.
- ``scan``: ``streamscope.scan`` with the given analyses and budget.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from streamscope.engine.options import ENGINE
from streamscope.io.checkpoint import CheckpointIndex

BLOCK_BYTES = 64 << 20
#: A 72B-parameter checkpoint in bf16, in GB (the extrapolation's scale).
SIZE_72B_GB = 145.0


def method_raw(path: str, **_) -> dict:
    index = CheckpointIndex.from_path(path)
    buf = torch.empty(BLOCK_BYTES // 4)
    total = 0.0
    for f in index.files:
        with open(f.path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            for t in index:
                if t.shard != f.path or t.numel == 0:
                    continue
                data = torch.frombuffer(mm, dtype=t.torch_dtype, count=t.numel, offset=t.begin)
                for s in range(0, t.numel, buf.numel()):
                    part = data[s : s + buf.numel()]
                    x = buf[: part.numel()]
                    x.copy_(part)
                    total += float(x.sum())
                del data
    return {"checksum": total}


def method_naive(path: str, **_) -> dict:
    """The seed tools' approach: whole tensors in memory, a new tensor per metric."""
    from safetensors.torch import load_file

    index = CheckpointIndex.from_path(path)
    out = {}
    for f in index.files:
        tensors = load_file(str(f.path))
        for name, t in tensors.items():
            x = t.float()
            a = x.abs()
            stats = {
                "mean": x.mean().item(), "std": x.std().item(), "min": x.min().item(), "max": x.max().item(),
                "l2": x.norm().item(), "zeros": (x == 0).float().mean().item(),
                **{f"t{th}": (a < th).float().mean().item() for th in (1e-6, 1e-4, 1e-2)},
                "abs_mean": a.mean().item(),
            }  # fmt: skip
            flat = a.flatten()
            sample = flat if flat.numel() <= 1 << 24 else flat[torch.randperm(flat.numel())[: 1 << 24]]
            stats["pcts"] = torch.quantile(sample, torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9])).tolist()
            if x.dim() == 2:
                stats["dead_rows"] = int((a < 1e-6).all(dim=1).sum())
                stats["dead_cols"] = int((a < 1e-6).all(dim=0).sum())
                if "embed" in name:
                    stats["row_norms"] = x.norm(dim=1).mean().item()
            out[name] = stats
        del tensors
    return {"tensors": len(out)}


def method_scan(path: str, analyses: str = "basic,sparsity", budget: str = "512MB", device: str = "cpu", **_) -> dict:
    import streamscope

    with tempfile.TemporaryDirectory() as out:
        r = streamscope.scan(path, out=out, analyses=analyses, memory_budget=budget, device=device, resume=False)
    return {"tensors": len(r.tensors)}


METHODS = {"raw": method_raw, "naive": method_naive, "scan": method_scan}


def host_to_device_gbs(device: str, nbytes: int = 256 << 20) -> float | None:
    """Pinned host -> device copy bandwidth in GB/s, or None on the CPU."""
    if not device.startswith("cuda"):
        return None
    src = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    dst = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst.copy_(src, non_blocking=True)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(5):
        dst.copy_(src, non_blocking=True)
    torch.cuda.synchronize()
    return 5 * nbytes / (time.perf_counter() - t0) / 1e9


def drop_cache(path: str | Path) -> str | None:
    """Evict the checkpoint's pages from the page cache (``posix_fadvise(DONTNEED)``, no root needed).

    Returns how it was done, or None where the OS offers no way.
    """
    if not hasattr(os, "posix_fadvise"):
        return None
    for f in CheckpointIndex.from_path(path).files:
        fd = os.open(f.path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return "posix_fadvise(POSIX_FADV_DONTNEED) on every shard"


def layout_bytes(layout: str, dtype: str = "BF16") -> tuple[int, int]:
    """``(bytes outside the layers, bytes per layer)`` of a synthetic layout, as ``synthetic.write_sized`` lays it out."""
    from streamscope.io.tensor import DTYPES
    from streamscope.synthetic import LAYOUTS

    per = {True: 0, False: 0}
    for name, shape in LAYOUTS[layout]:
        per[".layers.0." in name] += math.prod(shape) * DTYPES[dtype][0]
    return per[False], per[True]


def pick_layout(size: int, layout: str | None) -> str:
    """``layout``, or without one the largest-layer layout that ``size`` holds (llama-7b, else small).

    Raises:
        OptionError: ``size`` is below one layer of the layout given, which would otherwise be built anyway.
    """
    from streamscope.errors import OptionError
    from streamscope.units import format_bytes

    if layout is None:
        fixed, per_layer = layout_bytes("llama-7b")
        return "llama-7b" if size >= fixed + per_layer else "small"
    fixed, per_layer = layout_bytes(layout)
    if per_layer and size < fixed + per_layer:
        raise OptionError(f"--size {format_bytes(size)} is below the smallest {layout} checkpoint (one layer{' and what lies outside the layers' if fixed else ''}: "
                          f"{format_bytes(fixed + per_layer)}): give a larger --size{', or --layout small' if layout != 'small' else ''}")  # fmt: skip
    return layout


def run_bench(
    device: str = "cpu",
    size: int = 2 << 30,
    layout: str | None = None,
    analyses: tuple[str, ...] = ("basic,sparsity", "quantization", "spectral"),
    cache_dir: str | Path | None = None,
    budget: str = ENGINE.memory_budget,
    naive: bool = True,
    cold: bool = True,
    repeat: int = 1,
    echo=print,
) -> dict:
    """Build (or reuse) a synthetic checkpoint and measure raw, naive and streamscope on it, in child processes.

    ``layout``: None picks llama-7b, or the small layout where ``size`` holds no llama-7b layer (see ``pick_layout``).
    ``repeat``: warm-cache methods run this many times, in turns (raw, each analysis set, raw, ...), and the
    median counts: on a shared machine one run of each can land on a busy second. The naive load runs once.

    Returns the figures: ``{"machine", "checkpoint", "rows": [{method, analyses, cache, seconds, gbs,
    vs_raw, vs_naive, peak_rss, runs, seconds_per_gb, extrapolated_72b_seconds}], "host_to_device_gbs",
    "cold_cache"}``; the extrapolation is seconds per GB times the 145 GB of a 72B bf16 checkpoint.
    """
    from streamscope.engine.options import resolve_device
    from streamscope.synthetic import write_sized

    dev = str(resolve_device(device))
    layout = pick_layout(size, layout)
    cache_dir = Path(cache_dir or Path(tempfile.gettempdir()) / "streamscope-bench")
    where = cache_dir / f"{layout}-{size}"
    if not (where / "model.safetensors.index.json").exists():
        echo(f"building a synthetic {layout} checkpoint of about {size / 1e9:.2f} GB in {where} (kept for the next run)")
    path = write_sized(where, layout, size)
    total = CheckpointIndex.from_path(path).total_bytes
    warm(path)

    def row(method: str, cache: str, label: str, runs: list[float], peak: int) -> dict:
        seconds = statistics.median(runs)
        per_gb = seconds / (total / 1e9)
        return {"method": method, "analyses": label, "cache": cache, "seconds": seconds, "gbs": total / seconds / 1e9, "peak_rss": peak,
                "runs": runs, "seconds_per_gb": per_gb, "extrapolated_72b_seconds": per_gb * SIZE_72B_GB}  # fmt: skip

    runs = "one run each" if repeat <= 1 else f"{repeat} runs of each warm method in turns, the median counts"
    echo(f"checkpoint: {layout}, {total / 1e9:.2f} GB bf16 in {path}; device {dev}; {runs}")
    steps = (len(analyses) + 1) * max(1, repeat) + bool(naive) + (2 if cold and hasattr(os, "posix_fadvise") else 0)
    done = 0

    def child(method: str, label: str, cache: str, **kwargs) -> dict:
        nonlocal done
        done += 1
        echo(f"  [{done}/{steps}] {method}{' ' + label if label else ''} ({cache} cache)")
        return run_child(method, path, **kwargs)

    # the naive load runs once, after the turns: it takes 40x as long and churns gigabytes of fresh memory, which
    # slowed the scans run after it by up to 2x here
    warm_jobs = [("raw", "", {})] + [("scan", a, {"analyses": a, "budget": budget, "device": dev}) for a in analyses]
    timings: dict[int, list[float]] = {i: [] for i in range(len(warm_jobs))}
    peaks: dict[int, int] = {i: 0 for i in range(len(warm_jobs))}
    for _ in range(max(1, repeat)):  # in turns, so that a busy spell spreads over all methods
        for i, (method, label, kwargs) in enumerate(warm_jobs):
            r = child(method, label, "warm", **kwargs)
            timings[i].append(r["seconds"])
            peaks[i] = max(peaks[i], r["peak_rss"])
    rows = [row(method, "warm", label, timings[i], peaks[i]) for i, (method, label, _) in enumerate(warm_jobs)]
    if naive:
        r = child("naive", "", "warm")
        rows.insert(1, row("naive", "warm", "", [r["seconds"]], r["peak_rss"]))
    raw = rows[0]
    base = rows[1] if naive else None
    cold_how = drop_cache(path) if cold else None
    if cold_how:
        for method, label, kwargs in (("raw", "", {}), ("scan", analyses[0], {"analyses": analyses[0], "budget": budget, "device": dev})):
            drop_cache(path)
            r = child(method, label, "cold", **kwargs)
            rows.append(row(method, "cold", label, [r["seconds"]], r["peak_rss"]))
    for row in rows:
        ref_raw = raw["seconds"] if row["cache"] == "warm" else next(r["seconds"] for r in rows if r["method"] == "raw" and r["cache"] == "cold")
        row["vs_raw"] = ref_raw / row["seconds"]
        row["vs_naive"] = base["seconds"] / row["seconds"] if base else None
        row["rss_vs_naive"] = row["peak_rss"] / base["peak_rss"] if base else None
    return {
        "machine": machine(), "device": dev, "host_to_device_gbs": host_to_device_gbs(dev),
        "checkpoint": {"layout": layout, "bytes": total, "path": str(path)}, "budget": budget,
        "cold_cache": cold_how or "not measured: this OS offers no way to drop a file's cached pages",
        "rows": rows,
    }  # fmt: skip


def format_table(fig: dict) -> str:
    """A markdown table of ``run_bench`` figures; GB/s is the median of the row's runs (``runs``: how many)."""
    lines = ["| method | analyses | cache | runs | GB/s (median) | vs raw | vs naive | peak RSS (MiB) | 72B (145 GB) |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for r in fig["rows"]:
        vs_naive = f"{r['vs_naive']:.1f}x" if r.get("vs_naive") else "-"
        ext = f"{r['extrapolated_72b_seconds'] / 60:.1f} min" if r.get("extrapolated_72b_seconds") else "-"
        lines.append(f"| {r['method']} | {r['analyses'] or '-'} | {r['cache']} | {len(r.get('runs') or [1])} | {r['gbs']:.2f} | {r['vs_raw']:.2f}x | "
                     f"{vs_naive} | {r['peak_rss'] / 2**20:.0f} | {ext} |")  # fmt: skip
    return "\n".join(lines)


def run_child(method: str, path: str | Path, **kwargs) -> dict:
    """Run one method in a child process; returns its seconds, peak RSS (bytes) and output."""
    cmd = [sys.executable, "-m", "streamscope.bench", method, str(path), json.dumps(kwargs)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"benchmark method {method!r} failed:\n{err[-2000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss"] = usage.ru_maxrss * 1024  # Linux reports KiB
    return result


def run_timed(cmd: list[str]) -> tuple[int, float]:
    """Run ``cmd`` under ``/usr/bin/time -v``: (peak RSS in bytes, wall seconds); exits with its stderr on failure."""
    import re

    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{proc.stderr[-3000:]}")
    kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", proc.stderr).group(1)
    return kib * 1024, sum(float(x) * 60**i for i, x in enumerate(reversed(wall.split(":"))))


def warm(path: str | Path) -> None:
    """Read every shard once so that all methods start from the page cache."""
    for f in CheckpointIndex.from_path(path).files:
        with open(f.path, "rb") as fh:
            while fh.read(64 << 20):
                pass


def machine() -> dict:
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu, "cores": os.cpu_count(), "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
    }  # fmt: skip
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def _child_main(argv: list[str]) -> None:
    method, path = argv[0], argv[1]
    kwargs = json.loads(argv[2]) if len(argv) > 2 else {}
    if method == "scan":  # imports are not part of the measured time of any method
        import pandas  # noqa: F401
        import pyarrow.parquet  # noqa: F401
        import rich.console  # noqa: F401
        import zarr  # noqa: F401

        import streamscope.api  # noqa: F401 - and the modules it loads on first use:
        import streamscope.analyses.quantization  # noqa: F401
        import streamscope.analyses.spectral  # noqa: F401
        import streamscope.engine.pipeline  # noqa: F401
        import streamscope.kernels.linalg  # noqa: F401
        import streamscope.progress  # noqa: F401
    t0 = time.perf_counter()
    out = METHODS[method](path, **kwargs)
    out["seconds"] = time.perf_counter() - t0
    print(json.dumps(out))


if __name__ == "__main__":
    _child_main(sys.argv[1:])
