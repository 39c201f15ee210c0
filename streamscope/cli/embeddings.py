"""``streamscope embeddings``: the embedding study."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streamscope.cli.app import BudgetOpt, DeviceOpt, OutOpt, PathArg, ReportOpt, RevisionOpt, app, console, default_name, report_into
from streamscope.report.labels import plain


@app.command()
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
) -> None:
    """The embedding study: row norms, embedding-related norm layers, and k-means clusters with the elbow.

    Example: [bold]streamscope embeddings Qwen2.5-7B/ --out results/qwen-emb --k-range 2:24 --metric cosine[/]
    """
    from streamscope.api import embeddings as study

    out = out or Path("results") / f"{default_name(path)}-embeddings"
    result = study(path, out=out, clusters=clusters, k_range=k_range, metric=metric, random_state=random_state,
                   memory_budget=memory_budget, device=device, progress=not quiet, revision=revision)  # fmt: skip
    if not quiet:
        from streamscope.report.embeddings_table import print_embeddings

        print_embeddings(result, console)
        console.print(f"results in [bold]{plain(out)}[/]: embeddings.json, clusters.csv, arrays.zarr")
    if report:
        report_into(out, quiet=quiet)
