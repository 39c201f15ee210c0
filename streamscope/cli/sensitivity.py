"""``streamscope sensitivity``: measured quantization sensitivity (see ``activation.sensitivity``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from streamscope.cli.activations import ForwardDeviceOpt, ForwardDtypeOpt, ForwardResumeOpt, QuietOpt
from streamscope.cli.app import JsonOpt, ReportOpt, RevisionOpt, app, console, report_into
from streamscope.kernels.fakequant import SCHEMES
from streamscope.report.labels import plain

HELP = f"""What quantizing each Linear does to this model's outputs, measured; a mixed-precision plan.

Streams the float model layer by layer and measures, on every decoder Linear's real inputs, each scheme's output error (SQNR, relative MSE) and SmoothQuant's W8A8 error per alpha; runs the quantized model's hidden states beside the float ones (cosine and SQNR per layer, next-token KL, top-1 agreement, perplexity); then searches the Linears to keep at --keep-scheme until the KL meets --target-kl, checks it with another pass, and writes it as an llm-compressor recipe (recipe.yaml) and llama-quantize lines (tensor_types.txt).

Schemes: {", ".join(SCHEMES)}. Data and model options are those of activations (--data.source, --data.num_samples, --data.seq_len, or --config); by default 64 x 1024 random tokens: give a text with --data.source custom:FILE for a real measurement.

Example: [bold]streamscope sensitivity Qwen2.5-7B/ --data.source custom:calib.txt --data.num_samples 16 --target-kl 0.01[/]"""


@app.command(help=HELP, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def sensitivity(
    ctx: typer.Context,
    path: Annotated[Optional[str], typer.Argument(help="Model directory or hub repo id; or model.path in --config.", show_default=False)] = None,
    *,
    schemes: Annotated[Optional[str], typer.Option("--schemes", metavar="LIST", help="Comma-separated schemes for the local errors; each also gets a whole-model quantized stream.", show_default="all, one stream at int4_g128")] = None,
    recipe: Annotated[Optional[Path], typer.Option("--recipe", metavar="FILE", help="YAML recipe: scheme, overrides (target: scheme), ignore; or an llm-compressor recipe.", show_default="every decoder Linear at int4_g128")] = None,
    target_kl: Annotated[float, typer.Option("--target-kl", metavar="NATS", help="Mean next-token KL the plan must meet.")] = 0.01,
    keep_scheme: Annotated[str, typer.Option("--keep-scheme", metavar="SCHEME", help="The higher-precision scheme of the Linears the plan keeps.")] = "int8_channel",
    max_bpw: Annotated[Optional[float], typer.Option("--max-bpw", metavar="BITS", help="Bits per weight the plan may not pass.", show_default="no limit")] = None,
    local: Annotated[bool, typer.Option("--local/--no-local", help="Measure every scheme's output error per Linear.")] = True,
    smoothquant: Annotated[bool, typer.Option("--smoothquant/--no-smoothquant", help="Measure SmoothQuant's W8A8 error per alpha 0.3..0.9.")] = True,
    propagate: Annotated[bool, typer.Option("--propagate/--no-propagate", help="Run the quantized stream(s) beside the float one.")] = True,
    plan: Annotated[bool, typer.Option("--plan/--no-plan", help="Search and check the mixed-precision plan.")] = True,
    resume: ForwardResumeOpt = True,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", metavar="FILE", help="Activation config YAML (model, data, memory sections).", show_default="none")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Directory for the result files.", show_default="results/NAME-sensitivity")] = None,
    device: ForwardDeviceOpt = None,
    dtype: ForwardDtypeOpt = None,
    memory_budget: Annotated[Optional[str], typer.Option("--memory-budget", "-m", help="Memory for hidden states and kept inputs.", show_default="half the memory available")] = None,
    revision: RevisionOpt = None,
    report: ReportOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Measured quantization sensitivity; ``--help`` is ``HELP``."""
    from streamscope.api import sensitivity as run
    from streamscope.cli.activations import run_options
    from streamscope.results import json_text

    overrides, out = run_options(ctx, path, config, out, device, dtype, memory_budget, "sensitivity")
    chosen = [s.strip() for s in schemes.split(",") if s.strip()] if schemes else None
    echo = (lambda s: None) if quiet or as_json else (lambda s: console.print(plain(s), highlight=False))
    record = run(path, config=config, out=out, overrides=overrides, schemes=chosen, recipe=recipe, target_kl=target_kl, keep_scheme=keep_scheme,
                 max_bpw=max_bpw, local=local, smoothquant=smoothquant, propagate=propagate, plan=plan, resume=resume, progress=not (quiet or as_json), revision=revision, echo=echo)  # fmt: skip
    if as_json:
        print(json_text(record))
    elif not quiet:
        from streamscope.report.sensitivity_table import print_sensitivity

        print_sensitivity(record, out, console)
    if report:
        report_into(out, quiet=quiet or as_json)
