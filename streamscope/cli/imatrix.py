"""``streamscope imatrix FILE.gguf [OTHER.gguf]``: the statistics ``llama-imatrix --show-statistics`` prints for an
importance matrix, or two matrices compared tensor by tensor."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from streamscope.cli.app import app, console
from streamscope.errors import OptionError

SORTS = ("layer", "sum", "mean", "std", "skew", "kurt", "h_norm", "gain", "pcc", "cov")
COMPARE_SORTS = ("layer", "cos", "ratio")


@app.command()
def imatrix(
    file: Annotated[Path, typer.Argument(help="An importance matrix GGUF (llama-imatrix's, or streamscope activations' imatrix.gguf).")],
    other: Annotated[Optional[Path], typer.Argument(help="A second one: compare the two tensor by tensor.")] = None,
    *,
    sort: Annotated[Optional[str], typer.Option("--sort", help=f"Order of the tensor rows: {', '.join(SORTS)}; comparing: {', '.join(COMPARE_SORTS)}. "
                                                "Default: h_norm (one file; lowest first) or cos (two; lowest first); layer with --all.")] = None,
    top: Annotated[int, typer.Option("--top", "-n", min=1, help="Tensor rows shown.")] = 10,
    show_all: Annotated[bool, typer.Option("--all", "-a", help="Every tensor, in layer order unless --sort says otherwise.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON (every tensor, every statistic).")] = False,
) -> None:
    """Importance-matrix statistics, as llama-imatrix --show-statistics computes them; or two matrices compared.

    One file: a table per layer (ΣE[A²]; gain, cosine, PCC, covariance against the previous layer), then the tensors.

    By default the 10 tensors whose importance is most concentrated on few channels (lowest entropy H first).

    Two files: per tensor the cosine of the per-channel E[A²] vectors and the ratio of ΣE[A²], least similar first.

    Example: [bold]streamscope imatrix out/imatrix.gguf --sort kurt --top 20[/]
    Example: [bold]streamscope imatrix out/imatrix.gguf llama-imatrix.gguf --all[/]
    """
    from streamscope.api import imatrix as study

    allowed = COMPARE_SORTS if other is not None else SORTS
    if sort is not None and sort not in allowed:
        raise OptionError(f"--sort must be one of {', '.join(allowed)}{' when comparing two files' if other else ''}; got {sort!r}")
    result = study(file, other)
    if other is None:
        show = lambda: _print("print_statistics", result, sort or ("layer" if show_all else "h_norm"), None if show_all else top)  # noqa: E731
    else:
        show = lambda: _print("print_comparison", result, sort or ("layer" if show_all else "cos"), None if show_all else top)  # noqa: E731
    if as_json:
        from streamscope.results import json_text

        print(json_text(result))
    else:
        show()


def _print(name: str, result: dict, sort: str, top: int | None) -> None:
    from streamscope.report import imatrix_table

    getattr(imatrix_table, name)(result, console, sort=sort, top=top)
