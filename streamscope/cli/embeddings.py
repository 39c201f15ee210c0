"""``streamscope embeddings``: the embedding study."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streamscope.analyses.clusters import ClusterOptions
from streamscope.cli.app import OutOpt, PathArg, ReportOpt, RevisionOpt, app, console, default_name, report_into
from streamscope.cli.options import declared
from streamscope.engine.options import EngineOptions
from streamscope.report.labels import plain


@app.command()
@declared(ClusterOptions, into="clustering", advanced_panel="Clustering tuning")
@declared(EngineOptions, into="engine", only=("memory_budget", "device"))
def embeddings(
    path: PathArg,
    *,
    revision: RevisionOpt = None,
    out: OutOpt = None,
    report: ReportOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or tables.")] = False,
    clustering: dict,
    engine: dict,
) -> None:
    """The embedding study: row norms, embedding-related norm layers, and k-means clusters with the elbow.

    Example: [bold]streamscope embeddings Qwen2.5-7B/ --out results/qwen-emb --k-range 2:24 --metric cosine[/]
    """
    from streamscope.api import embeddings as study

    out = out or Path("results") / f"{default_name(path)}-embeddings"
    result = study(path, out=out, progress=not quiet, revision=revision, **engine, **clustering)
    if not quiet:
        from streamscope.report.embeddings_table import print_embeddings

        print_embeddings(result, console)
        console.print(f"results in [bold]{plain(out)}[/]: embeddings.json, clusters.csv, arrays.zarr")
    if report:
        report_into(out, quiet=quiet)
