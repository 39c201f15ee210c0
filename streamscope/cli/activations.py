"""``streamscope activations``: activation statistics from the streamed forward pass."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from streamscope.cli.app import ReportOpt, RevisionOpt, app, console, default_name, report_into
from streamscope.errors import OptionError
from streamscope.report.labels import plain


#: Options every forward-pass command (activations, sensitivity) takes alike.
ForwardDeviceOpt = Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or mps (memory.device).", show_default="auto")]
ForwardDtypeOpt = Annotated[Optional[str], typer.Option("--dtype", help="Compute dtype: auto (float32 on CPU, the checkpoint's on GPUs), float32, bfloat16, float16.", show_default="auto")]
ForwardResumeOpt = Annotated[bool, typer.Option("--resume/--no-resume", help="Continue an interrupted run after its last finished decoder layer.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or tables.")]


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
def activations(
    ctx: typer.Context,
    path: Annotated[Optional[str], typer.Argument(help="Model directory (config.json + safetensors), or a hub repo id; or model.path in --config.", show_default=False)] = None,
    *,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML file with any of the keys below (sections model, data, visualization, memory); optional.", show_default="none: the defaults below")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Directory for the result files.", show_default="results/NAME-activations")] = None,
    device: ForwardDeviceOpt = None,
    dtype: ForwardDtypeOpt = None,
    memory_budget: Annotated[Optional[str], typer.Option("--memory-budget", "-m", help="Memory for the hidden states; past it they spill to a memory-mapped file.", show_default="half the memory available")] = None,
    revision: RevisionOpt = None,
    report: ReportOpt = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List the first 20 module names (shown anyway when a pattern matches nothing).")] = False,
    quiet: QuietOpt = False,
    resume: ForwardResumeOpt = True,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Split the samples over dask workers: a scheduler address, or 'local'.", show_default="none: this process")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Worker processes of a local dask cluster (implies --scheduler local).", show_default="2 with --scheduler local")] = None,
) -> None:
    """Activation statistics from a forward pass streamed layer by layer; ``--help`` is ``_activations_help()``."""
    from streamscope.api import activations as run

    overrides, out = run_options(ctx, path, config, out, device, dtype, memory_budget, "activations")
    echo = (lambda s: None) if quiet else (lambda s: console.print(plain(s), highlight=False))
    if workers is not None and (workers < 1 or scheduler not in (None, "local")):
        raise OptionError("--workers N (N >= 1) sets the size of a local dask cluster; with a --scheduler address the cluster has its own")
    record = run(path, config=config, out=out, overrides=overrides, progress=not quiet, revision=revision, echo=echo, verbose=verbose,
                 resume=resume, scheduler=scheduler or ("local" if workers else None), workers=workers)  # fmt: skip
    if not quiet:
        _activation_table(record, out)
    if report:
        report_into(out, quiet=quiet)


def _activation_table(record: dict, out: Path) -> None:
    from streamscope.report.activation_table import print_activations

    print_activations(record, console, out=out)


def run_options(ctx: typer.Context, path, config, out, device, dtype, memory_budget, command: str) -> tuple[dict, Path]:
    """The config overrides of a forward-pass command (``--section.key VALUE`` pairs and ``--device``, ``--dtype``,
    ``--memory-budget``) and its output directory (default ``results/NAME-COMMAND``)."""
    from streamscope.activation.config import parse_overrides

    overrides = parse_overrides(list(ctx.args))
    for key, value in (("memory.device", device), ("model.dtype", dtype), ("memory.budget", memory_budget)):
        if value is not None:
            overrides[key] = value
    if path is None and config is None:
        raise OptionError("give a model PATH, or a --config with model.path")
    return overrides, out or Path("results") / f"{default_name(path or str(config))}-{command}"
