"""``streamscope report``, ``bench`` and ``download``: a report of finished results, throughput figures, a hub download."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from streamscope.cli.app import JsonOpt, RevisionOpt, app, console, emit, report_into
from streamscope.cli.options import declared
from streamscope.cli.scan import resolve_analyses
from streamscope.engine.options import EngineOptions
from streamscope.errors import OptionError
from streamscope.report.labels import plain


@app.command()
def report(
    results: Annotated[Path, typer.Argument(help="A results directory written by `streamscope scan --out`.")],
    *,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Where figures/ and report.html go (default: RESULTS).")] = None,
    details: Annotated[str, typer.Option("--details", help="Detail figures for the N riskiest tensors, or 'all'.")] = "10",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Draw the figures and write one offline report.html from a finished scan; the checkpoint is not read.

    Example: [bold]streamscope report results/Qwen2.5-7B --details 20[/]
    """
    report_into(results, out, details)


@app.command()
@declared(EngineOptions, into="engine", only=("device", "memory_budget"))
def bench(
    *,
    size: Annotated[str, typer.Option("--size", help="Size of the synthetic checkpoint, e.g. 2GB.")] = "2GB",
    layout: Annotated[Optional[str], typer.Option("--layout", help="llama-7b, qwen2.5-72b-embedding or small.", show_default="llama-7b; small where --size holds no llama-7b layer (0.4 GB)")] = None,
    analyses: Annotated[str, typer.Option("--analyses", help="Analysis sets to time, ';'-separated, each comma-separated.")] = "basic,sparsity;quant;spectral",
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", help="Where the synthetic checkpoint is kept.")] = None,
    naive: Annotated[bool, typer.Option("--naive/--no-naive", help="Time the naive load_file approach too.")] = True,
    repeat: Annotated[int, typer.Option("--repeat", min=1, help="Runs of each warm-cache method, in turns; the median counts (naive and cold: one run).")] = 3,
    as_json: JsonOpt = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the figures as JSON here.")] = None,
    engine: dict,
) -> None:
    """Throughput and peak memory on a synthetic checkpoint: raw floor, naive approach, streamscope.

    Example: [bold]streamscope bench --device cuda --size 4GB --analyses 'basic,sparsity;spectral'[/]
    """
    from streamscope.bench import run_bench
    from streamscope.report.terminal import print_bench
    from streamscope.synthetic import LAYOUTS
    from streamscope.units import parse_bytes

    if layout is not None and layout not in LAYOUTS:
        raise OptionError(f"--layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
    sets = tuple(a.strip() for a in analyses.split(";") if a.strip())
    for s in sets:
        resolve_analyses(s)  # unknown names fail before the checkpoint is built
    echo = (lambda *a: None) if as_json else (lambda s: console.print(s, soft_wrap=True, markup=False, highlight=False))
    fig = run_bench(device=engine["device"], size=parse_bytes(size, "--size"), layout=layout, analyses=sets, cache_dir=cache_dir,
                    budget=engine["memory_budget"], naive=naive, repeat=repeat, echo=echo)  # fmt: skip
    m = fig["machine"]
    if not as_json:
        console.print(f"machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GiB, torch {m['torch']}" + (f", {m['cuda_device']}" if m.get("cuda_device") else ""))
        if fig["host_to_device_gbs"]:
            console.print(f"host -> device (pinned): {fig['host_to_device_gbs']:.1f} GB/s")
        console.print(f"cold cache: {fig['cold_cache']}")
        print_bench(fig, console)
    emit(fig, out, as_json, lambda: None)


@app.command()
def download(
    repo: Annotated[str, typer.Argument(help="A hub repo id, e.g. Qwen/Qwen2.5-7B.")],
    *,
    revision: RevisionOpt = None,
    local_dir: Annotated[Optional[Path], typer.Option("--local-dir", help="Copy the files here instead of the hub cache only.")] = None,
    include: Annotated[Optional[list[str]], typer.Option("--include", help="Glob of files to fetch (repeatable); default: safetensors, JSON, tokenizer.")] = None,
) -> None:
    """Download a hub repo's weights, configs and tokenizer (into the hub cache, or --local-dir).

    Example: [bold]streamscope download Qwen/Qwen2.5-0.5B --revision main --local-dir models/qwen0.5b[/]
    """
    from streamscope.io import hub

    if hub.parse(repo) is None:
        raise OptionError(f"{repo!r} is not a hub repo id (org/name, or hf://org/name@revision)")
    local, origin = hub.resolve(repo if repo.startswith("hf://") else f"hf://{repo}", revision=revision, allow=include or None, local_dir=local_dir)
    console.print(f"{plain(origin['model_id'])}@{plain(origin['revision'])}: [bold]{plain(local)}[/]")
