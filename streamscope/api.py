"""The Python API: ``open`` a checkpoint to stream its tensors yourself, ``scan`` it, count its ``params``,
``compare`` two. Each is a thin wrapper over ``io`` (headers), ``analyses`` and ``engine.pipeline``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from streamscope.analyses.compare import CompareOptions
from streamscope.engine.options import ENGINE
from streamscope.engine.pipeline import ScanResult
from streamscope.io.checkpoint import CheckpointIndex
from streamscope.io.handles import Checkpoint, Tensor
from streamscope.results_dir import Results

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Checkpoint", "Results", "ScanResult", "Tensor", "open", "scan", "scan_many", "result_name", "embeddings", "build_report", "params", "params_frame", "compare", "compare_frame", "imatrix"]


def _local_index(path, revision: str | None = None, progress: bool = False) -> tuple[CheckpointIndex, dict]:
    """The index of a local path, or of a hub repo's snapshot (downloaded when not cached), with its provenance."""
    from streamscope.io import hub

    local, origin = hub.resolve(path, revision=revision, progress=progress)
    return CheckpointIndex.from_path(local), origin


def _header_index(path, revision: str | None = None) -> tuple[CheckpointIndex, dict]:
    """Headers only: a hub repo's safetensors headers over HTTP ranges, or a local checkpoint's."""
    from streamscope.io import hub

    if hub.parse(path) is not None:
        return hub.remote_index(str(path), revision)
    return CheckpointIndex.from_path(path), hub.provenance(Path(path))


def open(path: str | os.PathLike) -> Checkpoint:  # noqa: A001 - mirrors the builtin on purpose
    """Open a checkpoint from its headers alone.

    Example:
        >>> ckpt = streamscope.open("model.safetensors")  # doctest: +SKIP
        >>> for block in ckpt["model.embed_tokens.weight"].blocks("32MB"):  # doctest: +SKIP
        ...     print(block.shape)
    """
    return Checkpoint(_local_index(path)[0])


def scan(
    path: str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    analyses=None,
    select: str | None = ENGINE.select,
    memory_budget: int | str = ENGINE.memory_budget,
    device: str = ENGINE.device,
    reader: str = ENGINE.reader,
    native: bool = ENGINE.native,
    resume: bool = ENGINE.resume,
    progress: bool = False,
    scheduler: str | None = ENGINE.scheduler,
    workers: int | None = ENGINE.workers,
    revision: str | None = None,
    **analysis_options,
) -> Results:
    """Stream every (selected) tensor of a checkpoint once through the requested analyses.

    Args:
        path: checkpoint file or directory (see ``CheckpointIndex.from_path``), or a hub repo id
            (``Qwen/Qwen2.5-7B``, ``hf://Qwen/Qwen2.5-7B@main``): its safetensors, JSON and tokenizer files are
            downloaded (nothing when cached) and its ``model_id``/``revision`` recorded.
        out: directory for ``tensors.json/csv/parquet``, ``model.json`` and ``arrays.zarr``; a temporary
            directory when None.
        analyses: names or aliases (``basic``, ``sparsity``, ``quantization``, ``spectral``, ...), a
            comma-separated string, or ``"all"``; ``streamscope.analyses.REGISTRY`` lists them. None: the
            registry's defaults (what ``streamscope scan`` runs without ``--analyses``).
        select: regex; only tensors whose name it matches (``re.search``) are scanned.
        memory_budget: bound on working memory, e.g. ``"512MB"``; larger tensors stream in row blocks.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        reader: ``auto`` (memory map on CPU, pinned ``pread`` buffers on GPUs), ``mmap`` or ``pread``.
        native: use the C block kernel when it was built (results are identical without it).
        resume: reuse results of an earlier, interrupted scan in ``out`` with the same options.
        progress: show a progress bar on the terminal.
        scheduler: a ``dask.distributed`` scheduler address, or ``"local"`` for a local cluster of
            ``workers`` processes; the memory budget is split over the workers.
        **analysis_options: options of the analyses, e.g. ``spectral="gram"``, ``rank=64``,
            ``quant_schemes="int8,int4_g128"``, ``histogram_bins=128`` (each analysis's options dataclass
            holds the defaults).

    Returns:
        ``Results``: ``tensors`` (name -> record), ``table`` (DataFrame), ``model`` (model-level dict), ``errors``
        and ``out``; ``Results.open(out)`` reads the same later.

    Example:
        >>> r = streamscope.scan("model.safetensors", out="results", memory_budget="512MB")  # doctest: +SKIP
        >>> r.table.sort_values("basic_stats.abs_max").tail()  # doctest: +SKIP
    """
    from streamscope.engine import pipeline
    from streamscope.engine.options import ScanOptions
    from streamscope.errors import OptionError

    if "block_elems" in analysis_options:  # ScanOptions.build's tuning knob: the budget sets the block size
        raise OptionError("block_elems is no option of scan(): memory_budget sets the block size")
    options = ScanOptions.build(analyses, select=select, memory_budget=memory_budget, device=device, reader=reader, native=native,
                                **analysis_options)  # fmt: skip
    index, origin = _local_index(path, revision, progress)
    out = out if out is not None else tempfile.mkdtemp(prefix="streamscope-")
    return pipeline.scan(index, options, out, resume=resume, progress=progress, scheduler=scheduler, workers=workers,
                         provenance=origin)  # fmt: skip


def build_report(results: str | os.PathLike, *, out: str | os.PathLike | None = None, details: str | int = 10) -> Path:
    """Figures (``figures/*.png``) and a self-contained ``report.html`` from a finished results directory.

    Example:
        >>> streamscope.build_report("results/Qwen2.5-7B", details="all")  # doctest: +SKIP
        PosixPath('results/Qwen2.5-7B/report.html')
    """
    from streamscope.report.build import make_report

    return make_report(results, out, details)


def embeddings(
    path: str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    memory_budget: int | str = ENGINE.memory_budget,
    device: str = ENGINE.device,
    progress: bool = False,
    revision: str | None = None,
    **clustering,
) -> dict:
    """The embedding study: row-norm statistics, the embedding-related norm layers, and k-means clusters.

    Every embedding matrix (input embeddings, an untied output matrix, vision patch embeddings) is clustered with
    k-means++ on a seeded sample, a mini-batch pass and full Lloyd passes over all rows streamed in blocks, for
    every k of ``k_range`` (the elbow); ``clusters="auto"`` takes the knee of the elbow curve.
    ``**clustering``: the fields of ``analyses.clusters.ClusterOptions``, which holds their defaults and help
    (``clusters``, ``k_range`` as ``(2, 32)`` or ``"2:32"``, ``metric``, ``random_state``, ``sample_rows``, ...).

    Returns:
        ``{"norms", "norm_layers", "clusters": {tensor: {"k", "metric", "elbow", "sizes", "clusters"}}}``, also
        written to ``out/embeddings.json`` with ``clusters.csv`` and ``arrays.zarr/embeddings/<tensor>/``.

    Example:
        >>> streamscope.embeddings("Qwen2.5-7B/", out="results/qwen", k_range="2:16")  # doctest: +SKIP
    """
    from streamscope.analyses.clusters import ClusterOptions
    from streamscope.engine import embeddings as study
    from streamscope.engine.options import ScanOptions

    options = ScanOptions.build((), memory_budget=memory_budget, device=device)
    cluster_options = ClusterOptions.parse(**clustering)
    index, _ = _local_index(path, revision, progress)
    out = out if out is not None else tempfile.mkdtemp(prefix="streamscope-embeddings-")
    return study.run(index, options, cluster_options, out, progress=progress)


def params(path: str | os.PathLike, *, name: str | None = None, revision: str | None = None) -> dict:
    """Parameter accounting from headers and ``config.json`` alone (no tensor byte is read).

    A hub repo id (``hf://Qwen/Qwen2.5-72B``) is accounted for from its safetensors headers fetched with HTTP
    range requests; ``provenance["bytes_transferred"]`` says how many bytes that took.

    Returns:
        ``total_params, embedding_params, lm_head_params, tied_embeddings, layer_summary, layers, ...``
        (see ``streamscope.analyses.params.count_params``); ``params_frame`` turns ``layers`` into a DataFrame.

    Example:
        >>> p = streamscope.params("Llama-2-7b-hf/")  # doctest: +SKIP
        >>> p["layers"][0]["attention"]["num_kv_heads"]  # doctest: +SKIP
        32
    """
    from streamscope.analyses.params import count_params

    index, origin = _header_index(path, revision)
    result = count_params(index, name=name or (origin.get("model_id") if origin.get("remote") else None))
    result["provenance"] = origin
    return result


def params_frame(result: dict | str | os.PathLike) -> "pd.DataFrame":
    """One row per layer of a ``params`` result, nested fields flattened (``attention.num_heads``, ...).

    ``result`` is what ``params`` returned, a JSON file that ``streamscope params --out`` wrote, or a checkpoint path.
    """
    import pandas as pd

    return pd.json_normalize(_result(result, params)["layers"])


def _result(result, compute) -> dict:
    if isinstance(result, dict):
        return result
    if isinstance(result, (str, os.PathLike)) and Path(result).suffix == ".json" and Path(result).is_file():
        import json

        return json.loads(Path(result).read_text(encoding="utf-8"))
    return compute(*result) if isinstance(result, tuple) else compute(result)


def scan_many(paths: list[str], *, out: str | os.PathLike = "results", on_error=None, on_done=None, **scan_options) -> dict:
    """Scan several checkpoints one after another, each into ``OUT/<name>/`` (``result_name``; inputs of the same
    name get ``-2``, ``-3``, ... in the order given, so a rerun resumes), and write ``OUT/summary.csv``.

    A checkpoint that fails is reported to ``on_error(path, problem)`` and the others go on; one whose tensors had
    errors keeps its results but counts as failed. ``on_done(result)`` follows each finished scan. Every other
    keyword is ``scan``'s.

    Returns:
        ``{"rows": [summary row per scanned model], "failed": [paths], "summary": summary.csv or None}``.
    """
    from streamscope.errors import StreamscopeError
    from streamscope.report.batch import csv_rows, summary_row
    from streamscope.results import write_atomic

    out = Path(out)
    rows, failed = [], []
    for path, name in zip(paths, _distinct_names(paths)):
        try:
            result = scan(path, out=out / name, **scan_options)
        except StreamscopeError as e:
            if on_error:
                on_error(path, e)
            failed.append(path)
            continue
        rows.append(summary_row(name, result))
        if result.errors:
            if on_error:
                on_error(path, f"{path}: {len(result.errors)} tensor error(s), first: {result.errors[0]}")
            failed.append(path)
        if on_done:
            on_done(result)
    summary = None
    if rows:
        import pandas as pd

        summary = out / "summary.csv"
        write_atomic(summary, lambda p: pd.DataFrame(csv_rows(rows)).to_csv(p, index=False))
    return {"rows": rows, "failed": failed, "summary": summary}


def result_name(path: str | os.PathLike) -> str:
    """The directory name a checkpoint's results get by default: a hub id's ``org--name``, else the file's stem
    or the directory's name."""
    from streamscope.io import hub

    parsed = hub.parse(str(path))
    if parsed:
        return parsed[0].replace("/", "--")
    p = Path(path)
    return p.stem if p.is_file() else p.resolve().name


def _distinct_names(paths: list[str]) -> list[str]:
    """One subdirectory name per path: ``result_name``, then ``-2``, ``-3``, ... for later inputs of the same name."""
    used: set[str] = set()
    names = []
    for path in paths:
        base = name = result_name(path)
        n = 1
        while name in used:
            n += 1
            name = f"{base}-{n}"
        used.add(name)
        names.append(name)
    return names


def compare(
    before: str | os.PathLike,
    after: str | os.PathLike,
    *,
    weights: bool = False,
    select: str | None = ENGINE.select,
    memory_budget: int | str = ENGINE.memory_budget,
    device: str = ENGINE.device,
    rank: int = CompareOptions.rank,
    out: str | os.PathLike | None = None,
    resume: bool = True,
    progress: bool = False,
    importance: str | os.PathLike | None = None,
) -> dict:
    """Compare two checkpoints, ``before`` and ``after`` a change: pruning, fine-tuning, quantization.

    Args:
        before, after: the checkpoint before and after the change (paths or hub ids, as ``streamscope compare``).
        weights: also stream every tensor present in both with equal shapes, side by side, and report its
            relative Frobenius change, cosine similarity, max |change| and the top ``rank`` singular values and
            stable rank of the difference. Runs through the scan engine: ``device``, ``memory_budget``,
            progress and resume hold.
        select: regex restricting the weight comparison to matching tensor names.
        memory_budget: bound on working memory for the weight comparison (both sides together).
        out: where the JSON report will be written; finished tensors are kept beside it
            (``.NAME.partial/``) so that an interrupted comparison resumes.
        importance: the output directory (or ``activations.json``) of ``streamscope activations`` on ``before``:
            the decoder layers ``after`` lacks (matched by their weights) are set against the layer importance
            it measured, under ``pruning`` (``analyses.pruning.view``).

    Returns:
        ``schema_version``, ``total_params / layer_params {before, after, reduced, reduction_ratio}``, ``layers``
        (per layer, with head and intermediate sizes before and after), ``emptied_layers``, ``missing_layers``,
        ``tensors`` (only on one side, changed shape), and with ``weights``: ``weights`` (per tensor),
        ``unchanged_tensors`` (names whose difference is exactly zero), ``errors`` and ``options``.
    """
    from streamscope.engine.compare import compare as run
    from streamscope.io.names import compile_select

    compile_select(select)  # a bad regex fails before any work, with or without --weights
    open_index = (lambda p: _local_index(p, progress=progress)) if weights else _header_index  # noqa: E731
    (ia, origin_a), (ib, origin_b) = open_index(before), open_index(after)
    options = None
    if weights:
        from streamscope.engine.options import ScanOptions

        options = ScanOptions.build((), select=select, memory_budget=memory_budget, device=device)
    # headers alone (a hub repo over HTTP) do not give the weights that the pruning view matches layers by
    readable = None if weights else (lambda: tuple(_local_index(p, progress=progress)[0] for p in (before, after)))
    return run(ia, ib, options, CompareOptions(rank=rank), out=out, resume=resume, progress=progress,
               provenance={"before": origin_a, "after": origin_b}, importance=importance, readable=readable)  # fmt: skip


def compare_frame(result: dict | str | os.PathLike | tuple) -> "pd.DataFrame":
    """One row per layer of a ``compare`` result, nested fields flattened.

    ``result`` is what ``compare`` returned, a JSON file that ``streamscope compare --out`` wrote, or a pair of
    checkpoint paths ``(before, after)``.
    """
    import pandas as pd

    def structural(*paths):
        if len(paths) != 2:
            raise TypeError("compare_frame takes a compare result, its JSON file, or a pair of checkpoint paths (before, after)")
        return compare(*paths)

    return pd.json_normalize(_result(result, structural)["layers"])


def activations(
    path: str | os.PathLike | None,
    *,
    config: str | os.PathLike | None = None,
    out: str | os.PathLike = "results/activations",
    overrides: dict | None = None,
    progress: bool = False,
    revision: str | None = None,
    echo=print,
    verbose: bool = False,
    resume: bool = True,
    scheduler: str | None = None,
    workers: int | None = None,
) -> dict:
    """Activation analysis by a forward pass streamed from the shards, one decoder layer in memory at a time.

    ``path``: the model directory (or hub repo id); None takes ``model.path`` of the config.
    ``config`` is a YAML file with the Quant Smooth Ana keys (optional; defaults in ``activations.config``);
    ``overrides`` sets dotted keys, e.g. ``{"data.num_samples": 128, "outlier.threshold": 100}``;
    ``verbose`` echoes the first 20 module names even when every pattern matches. A run killed before it wrote
    its files continues from its last finished decoder layer (``resume``). ``scheduler`` (``"local"`` with
    ``workers`` processes, or a dask scheduler address) splits the samples over dask workers; the merged
    results equal a single run's.

    Returns:
        The ``activations.json`` record: ``{"run", "modules", "weights", "outliers", "distribution", "config"}``.
        ``out`` also receives ``activations.csv``/``.parquet``, ``outliers.csv``, ``act_scales.pt``,
        ``imatrix.gguf`` and ``arrays.zarr``.

    Example:
        >>> streamscope.activations("Qwen2.5-7B/", out="results/qwen-act", overrides={"data.num_samples": 8})  # doctest: +SKIP
    """
    from streamscope.activation.profile import load_config, profile
    from streamscope.io import hub

    if path is not None and hub.parse(str(path)) is not None:
        local, _ = hub.resolve(str(path), revision=revision, progress=progress)
        path = local
    cfg = load_config(config, overrides, path)
    return profile(cfg["model"]["path"], cfg, out, echo=echo, progress=progress, verbose=verbose, resume=resume, scheduler=scheduler,
                   workers=workers)  # fmt: skip



def sensitivity(
    path: str | os.PathLike | None,
    *,
    config: str | os.PathLike | None = None,
    out: str | os.PathLike = "results/sensitivity",
    overrides: dict | None = None,
    schemes: list[str] | tuple[str, ...] | None = None,
    recipe: str | os.PathLike | None = None,
    target_kl: float = 0.01,
    keep_scheme: str = "int8_channel",
    max_bpw: float | None = None,
    local: bool = True,
    smoothquant: bool = True,
    propagate: bool = True,
    plan: bool = True,
    resume: bool = True,
    progress: bool = False,
    revision: str | None = None,
    echo=print,
) -> dict:
    """What quantizing each decoder Linear does to the model's outputs, measured on a streamed forward pass.

    Per Linear and scheme the output error on its real inputs (``local``); SmoothQuant's W8A8 error per alpha
    (``smoothquant``); a quantized hidden-state stream beside the float one (``propagated``: per-layer cosine
    and SQNR, next-token KL, top-1 agreement, perplexities) for the recipe (default: every decoder Linear at
    ``int4_g128``; ``recipe`` a YAML file) and, when ``schemes`` are given, a whole-model recipe per scheme;
    and a ``plan``: the Linears to keep at ``keep_scheme`` until the KL meets ``target_kl``. ``config`` and
    ``overrides`` are the activation config's (data, model, memory). A run killed in its first pass continues
    after its last finished decoder layer (``resume``).

    Returns:
        The ``sensitivity.json`` record; ``out`` also receives ``sensitivity.csv``/``.parquet``,
        ``recipe.yaml``, ``tensor_types.txt`` and ``arrays.zarr``.

    Example:
        >>> streamscope.sensitivity("Qwen2.5-7B/", out="results/qwen-sens", overrides={"data.num_samples": 8})  # doctest: +SKIP
    """
    from streamscope.activation.profile import load_config
    from streamscope.activation.sensitivity import recipe as recipe_mod
    from streamscope.activation.sensitivity.run import Options, measure
    from streamscope.io import hub
    from streamscope.kernels.fakequant import SCHEMES

    if path is not None and hub.parse(str(path)) is not None:
        path, _ = hub.resolve(str(path), revision=revision, progress=progress)
    cfg = load_config(config, overrides, path)
    opts = Options(schemes=tuple(schemes) if schemes else SCHEMES, schemes_given=bool(schemes),
                   recipe=recipe_mod.load(recipe) if recipe else None, target_kl=target_kl, keep_scheme=keep_scheme,
                   max_bits=max_bpw, local=local, smoothquant=smoothquant, propagate=propagate, plan=plan, resume=resume)  # fmt: skip
    return measure(cfg["model"]["path"], cfg, out, opts, echo=echo, progress=progress)


def imatrix(file: str | os.PathLike, other: str | os.PathLike | None = None) -> dict:
    """The statistics ``llama-imatrix --show-statistics`` prints for an importance-matrix GGUF (llama.cpp's, or the
    ``imatrix.gguf`` that ``activations`` writes), or, given ``other``, the two compared tensor by tensor.

    Returns:
        One file: ``{file, datasets, chunk_count, chunk_size, in_sum, moments_of, tensors, layers, summary}``;
        two: ``{a, b, tensors: {name: {cosine, sum_a, sum_b, ratio}}, only_a, only_b, mismatched, summary}``.

    Example:
        >>> streamscope.imatrix("results/qwen-act/imatrix.gguf")["summary"]["h_norm_min_tensor"]  # doctest: +SKIP
    """
    from streamscope.analyses.imatrix import comparison, statistics_of
    from streamscope.io.imatrix_file import read_imatrix

    first = read_imatrix(file)
    return statistics_of(first) if other is None else comparison(first, read_imatrix(other))
