"""The terminal view of ``streamscope imatrix``: an importance matrix's statistics (a line about the file, a table
per layer, the tensors sorted as asked), or two matrices compared.

Tensor names are llama.cpp's without ``.weight`` (``blk.3.attn_q``). Numbers are never cut: the columns are fitted
to the console (every statistic with 4 significant digits, then 3, then without covariance and skew), at 80
columns (a redirected log) too; ``--json`` has every value in full.
"""

from __future__ import annotations

import math

from rich import box
from rich.console import Console
from rich.table import Table

from streamscope.report.activation_table import number
from streamscope.report.labels import plain

#: --sort key -> (statistic, smallest first): the unusual end first (concentrated importance, low similarity).
ORDER = {"sum": ("sum_e_a2", False), "mean": ("mean", False), "std": ("std", False), "skew": ("skew", False), "kurt": ("kurt", False),
         "h_norm": ("h_norm", True), "gain": ("gain", False), "pcc": ("pcc", True), "cov": ("cov", False), "cos": ("cosine", True),
         "ratio": ("ratio", None)}  # fmt: skip
HEADERS = {"sum_e_a2": "ΣE[A²]", "mean": "mean", "std": "std", "skew": "skew", "kurt": "kurt", "h_norm": "H %", "gain": "gain",
           "l2_dist": "L2", "cossim": "cos", "pcc": "PCC", "cov": "cov"}  # fmt: skip
TENSOR_COLUMNS = ("mean", "std", "skew", "kurt", "h_norm", "sum_e_a2", "gain", "pcc", "cov")
#: Bounded statistics in fixed point (H in percent, gain near 1, correlations in [-1, 1]); the others significant digits.
FIXED = {"h_norm": "{:.1f}", "gain": "{:.2f}", "pcc": "{:.3f}", "cossim": "{:.4f}"}
#: Tried in turn until the tensor table fits the console: (columns, significant digits).
LAYOUTS = ((TENSOR_COLUMNS, 4), (TENSOR_COLUMNS, 3), (tuple(c for c in TENSOR_COLUMNS if c != "cov"), 3),
           (tuple(c for c in TENSOR_COLUMNS if c not in ("cov", "skew")), 3))  # fmt: skip


def short(name: str) -> str:
    """``blk.3.attn_q.weight`` -> ``blk.3.attn_q``."""
    return name[: -len(".weight")] if name.endswith(".weight") else name


def ordered(rows: dict, sort: str) -> list[str]:
    """Names of ``rows`` in ``sort`` order (``layer``: as given); a missing value last."""
    if sort == "layer":
        return list(rows)
    key, ascending = ORDER[sort]

    def value(n):
        v = rows[n].get(key)
        if v is None or not math.isfinite(v):
            return math.inf
        if ascending is None:  # a ratio: the furthest from 1 either way first
            return -abs(math.log(v)) if v > 0 else -math.inf
        return v if ascending else -v

    return sorted(rows, key=value)


def _table() -> Table:
    return Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)


def cell(v, column: str, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return FIXED[column].format(v) if column in FIXED else number(v, digits)


def _fits(t: Table, console: Console) -> bool:
    return console.measure(t, options=console.options.update_width(10_000)).maximum <= console.width


def print_statistics(result: dict, console: Console, *, sort: str = "h_norm", top: int | None = 10) -> None:
    """Print one file's statistics (``analyses.imatrix.statistics_of``): its line, the layers, the tensors, the totals.

    Args:
        result: the dict ``streamscope imatrix FILE --json`` prints.
        console: where to print; its width decides the columns.
        sort: ``layer`` or a key of ``ORDER``.
        top: tensor rows shown (None: all).
    """
    s = result["summary"]
    chunks = f"{result['chunk_count']} chunks x {result['chunk_size']} tokens" if result.get("chunk_size") else "chunks unknown"
    data = f" of {', '.join(plain(d) for d in result['datasets'])}" if result.get("datasets") else ""
    console.print(f"[bold]{plain(result['file'])}[/]: {s['tensors']} tensors in {s['layers']} layers, {chunks}{data}", highlight=False)
    sums = "in_sum in the file" if result.get("in_sum") else "no in_sum in the file"
    console.print(f"mean to kurt: of {result['moments_of']} per channel ({sums}); H: entropy of E[A²] over the channels,\n"
                  "% of its largest; gain, L2, cos, PCC, cov: against the same tensor one layer before", highlight=False)  # fmt: skip
    if result["layers"]:
        console.print("\n[bold]Layers[/]")
        console.print(_layer_table(result["layers"], result.get("in_sum", False)))
    names = ordered(result["tensors"], sort)
    shown = names if top is None else names[:top]
    what = "in layer order" if sort == "layer" else f"by {sort}, {'lowest' if ORDER[sort][1] else 'highest'} first"
    console.print(f"\n[bold]Tensors[/] {what} ({len(shown)} of {len(names)}{', --all for all' if len(shown) < len(names) else ''})")
    for columns, digits in LAYOUTS:
        t = _tensor_table([(n, result["tensors"][n]) for n in shown], columns, digits)
        if _fits(t, console):
            break
    console.print(t)
    line = f"model: ΣE[A²] {number(s['sum_e_a2'], 4)} over {s['tensors']} tensors"
    if s.get("h_norm_min_tensor"):
        line += f"; H median {s['h_norm_median']:.2f}%, lowest {s['h_norm_min']:.2f}% ({plain(short(s['h_norm_min_tensor']))})"
    console.print(line, highlight=False)
    if s.get("unreadable"):
        console.print(f"[yellow]no finite value:[/] {', '.join(plain(short(n)) for n in s['unreadable'])} (left out, as llama-imatrix does)")


def _layer_table(layers: dict, in_sum: bool) -> Table:
    cols = ("sum_e_a2", "gain", *(("l2_dist",) if in_sum else ()), "cossim", "pcc", "cov")
    t = _table()
    t.add_column("layer", justify="right", no_wrap=True)
    t.add_column("tensors", justify="right", no_wrap=True)
    for c in cols:
        t.add_column(HEADERS[c], justify="right", no_wrap=True)
    for label, row in layers.items():
        t.add_row(plain(label), str(row["tensors"]), *(cell(row.get(c), c) for c in cols))
    return t


def _tensor_table(rows: list, columns, digits: int) -> Table:
    t = _table()
    t.add_column("tensor", overflow="ellipsis")
    for c in columns:
        t.add_column(HEADERS[c], justify="right", no_wrap=True)
    for n, r in rows:
        t.add_row(plain(short(n)), *(cell(r.get(c), c, digits) for c in columns))
    return t


def print_comparison(result: dict, console: Console, *, sort: str = "cos", top: int | None = 10) -> None:
    """Print two files compared (``analyses.imatrix.comparison``): the tensors as sorted, those of one file only, totals.

    Args:
        result: the dict ``streamscope imatrix A B --json`` prints.
        console: where to print.
        sort: ``layer``, ``cos`` (lowest first) or ``ratio`` (furthest from 1 first).
        top: rows shown (None: all).
    """
    console.print(f"A: [bold]{plain(result['a'])}[/]\nB: [bold]{plain(result['b'])}[/]", highlight=False)
    names = ordered(result["tensors"], sort)
    shown = names if top is None else names[:top]
    what = {"layer": "in layer order", "cos": "least similar first", "ratio": "ratio furthest from 1 first"}[sort]
    console.print("cos: cosine of the per-channel E[A²] vectors; ratio: ΣE[A²] of B / ΣE[A²] of A")
    if names:
        console.print(f"\n[bold]Tensors in both[/], {what} ({len(shown)} of {len(names)}{', --all for all' if len(shown) < len(names) else ''})")
    else:
        console.print("[yellow]no tensor is in both files with the same channel count[/]")
    t = _table()
    t.add_column("tensor", overflow="ellipsis")
    for h in ("cos", "ΣE[A²] A", "ΣE[A²] B", "ratio"):
        t.add_column(h, justify="right", no_wrap=True)
    for n in shown:
        r = result["tensors"][n]
        cos = "-" if r["cosine"] is None else f"{r['cosine']:.6f}"
        t.add_row(plain(short(n)), cos, number(r["sum_a"], 4), number(r["sum_b"], 4), number(r["ratio"], 4))
    if names:
        console.print(t)
    for key, label in (("only_a", "only in A"), ("only_b", "only in B"), ("mismatched", "channel counts differ")):
        if result[key]:
            more = f" and {len(result[key]) - 8} more" if len(result[key]) > 8 else ""
            console.print(f"[yellow]{label}:[/] {len(result[key])}: {', '.join(plain(short(n)) for n in result[key][:8])}{more}", highlight=False)
    s = result["summary"]
    line = f"model: {s['both']} tensors compared"
    if s["cosine_min_tensor"]:
        line += f"; cos median {s['cosine_median']:.6f}, lowest {s['cosine_min']:.6f} ({plain(short(s['cosine_min_tensor']))})"
    if s["ratio"] is not None:
        line += f"; ΣE[A²] B / A {number(s['ratio'], 4)}"
    console.print(line, highlight=False)
