"""``streamscope params`` and ``streamscope compare``: parameter accounting of one checkpoint, or two side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from streamscope.analyses.compare import CompareOptions
from streamscope.cli.app import JsonOpt, PathArg, RevisionOpt, app, console, emit
from streamscope.cli.options import declared
from streamscope.engine.options import EngineOptions
from streamscope.errors import StreamscopeError


@app.command()
def params(
    path: PathArg,
    *,
    revision: RevisionOpt = None,
    as_json: JsonOpt = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="One block per layer.")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the JSON report here.")] = None,
) -> None:
    """Count parameters from safetensors headers and config.json alone: no tensor data is read.

    A hub repo id is counted from its headers fetched with HTTP range requests (kilobytes for a 72B model).

    Example: [bold]streamscope params hf://Qwen/Qwen2.5-72B-Instruct --verbose --out params.json[/]
    """
    from streamscope.api import params as count
    from streamscope.report.accounting import print_params

    result = count(path, revision=revision)
    emit(result, out, as_json, lambda: print_params(result, console, verbose))


@app.command()
@declared(CompareOptions, into="compared")
@declared(EngineOptions, into="engine", only=("select", "memory_budget", "device", "resume"))
def compare(
    before: Annotated[str, typer.Argument(help="The checkpoint before the change (path or hub repo id).")],
    after: Annotated[str, typer.Argument(help="The checkpoint after it: pruned, fine-tuned, quantized (a .gguf too).")],
    *,
    weights: Annotated[bool, typer.Option("--weights", help="Also stream both and compare every shared tensor.")] = False,
    as_json: JsonOpt = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the JSON report here.")] = None,
    importance: Annotated[Optional[Path], typer.Option("--importance", metavar="DIR", help="The activations output of BEFORE: set the layers a pruning removed against the layer importance it measured.")] = None,
    engine: dict,
    compared: dict,
) -> None:
    """Compare two checkpoints: parameters per layer, heads, intermediate sizes, emptied layers, weight changes.

    Example: [bold]streamscope compare Llama-2-7b-hf/ pruned/ --weights --out comparison.json[/]
    """
    from streamscope.api import compare as run_compare

    result = run_compare(before, after, weights=weights, out=out, progress=weights and not as_json, importance=importance, **engine, **compared)
    emit(result, out, as_json, lambda: _print_compare(result))
    if weights and not result["weights"]:
        which = f"matching --select {engine['select']!r} " if engine.get("select") else ""
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
