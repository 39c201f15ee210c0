"""Terminal summaries of scan results, as rich tables. Every name, token and message read from the results goes
through ``labels.plain``: printed as written, never as rich markup or terminal control sequences.

Tables fit the console's width (80 columns in a pipe, a log or CI) without cutting a value: tensor names are
the figures' short labels (``L2.attn.q_proj``; full names stay in the files) unless the full names fit, the
least useful columns give way next, and a name or a reason wraps only when nothing else is left to drop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from streamscope.report.labels import plain, table_labels

#: Cells between two columns of ``fitted_table``'s style: padding, divider, padding.
_GAP = 3


@dataclass(frozen=True)
class Column:
    """A column of ``fitted_table``. ``keep``: columns with the lowest give way first when the width is short
    (``None``: never dropped). ``wrap``: the values may wrap (names, reasons) below ``readable`` cells; other
    values are never wrapped nor cut."""

    header: str
    justify: str = "right"
    keep: int | None = None
    wrap: bool = False
    readable: int = 24


def rate(nbytes: float, seconds: float) -> str:
    """Throughput with a unit that keeps three digits: ``2.31 GB/s``, ``35.2 MB/s``, ``812 KB/s``."""
    if not seconds:
        return "-"
    per = nbytes / seconds
    for unit, scale in (("GB/s", 1e9), ("MB/s", 1e6), ("KB/s", 1e3)):
        if per >= scale:
            return f"{per / scale:.3g} {unit}"
    return f"{per:.0f} B/s"


def shorten(name: str, width: int) -> str:
    """Keep the end of a tensor name, where it says what it is: ``…layers.3.mlp.down_proj.weight``."""
    return name if len(name) <= width else "…" + name[-(width - 1):]


def num(v, digits: int = 3) -> str:
    """A number in few cells: ``-4.04e-4``, ``0.0512``, ``1.34e6``, ``22,713,216``; ``-`` for none or NaN."""
    if v is None or isinstance(v, bool) or (isinstance(v, float) and math.isnan(v)):
        return "-" if not isinstance(v, bool) else str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, str):
        return v
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    text = f"{v:.{digits}e}" if v and abs(v) < 1e-2 else f"{v:.{digits}g}"
    if "e" in text:
        mantissa, exp = text.split("e")
        mantissa = f"{float(mantissa):.{digits}g}"
        text = f"{mantissa}e{int(exp)}"
    return text


def _cells(text: str) -> int:
    return max((Text.from_markup(line).cell_len for line in text.split("\n")), default=0)


def fit_columns(columns: list[Column], rows: list[list[str]], width: int) -> list[int]:
    """Indices of the columns that fit ``width`` at their natural widths (wrapping columns at ``readable``),
    dropping the lowest ``keep`` first."""
    natural = [max([_cells(c.header)] + [_cells(r[i]) for r in rows]) for i, c in enumerate(columns)]
    need = [min(n, c.readable) if c.wrap else n for n, c in zip(natural, columns)]
    active = list(range(len(columns)))

    def total() -> int:
        return sum(need[i] for i in active) + _GAP * (len(active) - 1)

    while total() > width:
        droppable = [i for i in active if columns[i].keep is not None]
        if not droppable:
            break
        active.remove(min(droppable, key=lambda i: (columns[i].keep, -i)))
    return active


def fitted_table(title: str, columns: list[Column], rows: list[list[str]], width: int) -> Table:
    """A table of ``rows`` (markup-safe strings, see ``plain``) that fits ``width``; see ``fit_columns``."""
    active = fit_columns(columns, rows, width)
    t = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for i in active:
        c = columns[i]
        natural = max([_cells(c.header)] + [_cells(r[i]) for r in rows])
        if c.wrap:
            t.add_column(c.header, justify=c.justify, overflow="fold")
        else:
            t.add_column(c.header, justify=c.justify, no_wrap=True, min_width=natural)
    for r in rows:
        t.add_row(*(r[i] for i in active))
    return t


def names_that_fit(names: list[str], room: int) -> list[str]:
    """The full names when the longest fits ``room`` cells, else the figures' short labels (distinct)."""
    if names and max(len(n) for n in names) <= room:
        return list(names)
    return table_labels(names)


def print_scan_summary(table: pd.DataFrame, model: dict, console: Console, top: int = 10) -> None:
    """Largest and most extreme tensors, embedding row norms, norm layers, health, errors."""
    ck = model["checkpoint"]
    timing = model.get("timing", {})
    secs = timing.get("seconds") or 0
    console.print(f"[bold]{plain(model['model_path'])}[/]:")  # on a line of its own: folded only where longer than the width
    console.print(
        f"{ck['num_scanned']}/{ck['num_tensors']} tensors, "
        f"{ck['total_params']:,} parameters, {ck['total_bytes'] / 1e9:.2f} GB in {len(ck['shards'])} shard(s); "
        f"scanned in {secs:.1f} s ({rate(timing.get('bytes_scanned', 0), secs)})"
        + (f", {timing['tensors_reused']} reused from an earlier run" if timing.get("tensors_reused") else "")
    )
    if len(table) and "basic_stats.abs_max" in table:
        _tensor_table(console, "Largest tensors", table.sort_values("info.numel", ascending=False).head(top))
        _tensor_table(console, "Most extreme tensors (by |w| max)", table.sort_values("basic_stats.abs_max", ascending=False).head(top))
    if model.get("embedding"):
        _embedding_table(console, model["embedding"])
    norms = model.get("norm_layers", {})
    if norms.get("count"):
        _norm_table(console, norms, top)
    health = model.get("health") or {}
    if health.get("graded_tensors"):
        _health_table(console, health)
    ww = model.get("weightwatcher")
    if ww:  # WeightWatcher's get_summary() and its warnings (definitions in model.json)
        console.print(f"WeightWatcher, {ww['matrices']} matrices: mean alpha {num(ww['alpha'], 3)}, alpha_weighted "
                      f"{num(ww['alpha_weighted'], 3)}, log_spectral_norm {num(ww['log_spectral_norm'], 3)}; "
                      f"{ww['under_trained']} under-trained (alpha > 6), {ww['over_trained']} over-trained (alpha < 2); "
                      f"fitted tails: smallest {num(ww['smallest_tail_size'])}, median {num(ww['median_tail_size'], 3)} eigenvalues")
    for s in model.get("skipped", []):
        console.print(f"[yellow]skipped:[/] {plain(s['name'])}: {plain(s['reason'])}")
    for error in model.get("errors", []):
        console.print(f"[red]error:[/] {plain(error)}")


def _name_cells(names: list[str], console: Console, others: int) -> list[str]:
    return [plain(n) for n in names_that_fit(names, console.width - others)]


def _tensor_table(console: Console, title: str, rows: pd.DataFrame) -> None:
    """Tensors as rows; on a narrow terminal dtype and type give way first, then zeros % and the mean."""
    columns = [Column("tensor", "left", wrap=True, readable=40), Column("shape", "left", keep=6), Column("dtype", "left", keep=2),
               Column("type", "left", keep=1), Column("mean", keep=4), Column("std", keep=7), Column("abs max", keep=8),
               Column("zeros %", keep=3)]  # fmt: skip
    values = [[plain(r["shape"]), plain(r["dtype"]), plain(r["block_type"]), num(r.get("basic_stats.mean")), num(r.get("basic_stats.std")),
               num(r.get("basic_stats.abs_max")), num(r.get("basic_stats.zeros_percentage"))] for _, r in rows.iterrows()]  # fmt: skip
    names = _name_cells(list(rows["tensor"]), console, 62)
    console.print(fitted_table(title, columns, [[n, *v] for n, v in zip(names, values)], console.width))


def _embedding_table(console: Console, embedding: dict) -> None:
    columns = [Column("tensor", "left", wrap=True, readable=40), Column("vocab x dim", keep=7), Column("mean", keep=8), Column("std", keep=6),
               Column("min", keep=4), Column("max", keep=5), Column("p50", keep=3), Column("largest-norm tokens", "left", keep=2, wrap=True, readable=16)]  # fmt: skip
    names = _name_cells(list(embedding), console, 60)
    rows = []
    for name, e in zip(names, embedding.values()):
        tokens = ", ".join(repr(r["token"]) if r["token"] is not None else str(r["id"]) for r in e["largest"][:3])
        rows.append([name, f"{e['vocab_size']}x{e['embedding_dim']}", num(e["norm_mean"]), num(e["norm_std"]), num(e["norm_min"]),
                     num(e["norm_max"]), num(e["norm_percentiles"]["p50"]), plain(tokens)])  # fmt: skip
    console.print(fitted_table("Embedding row L2 norms", columns, rows, console.width))


def _norm_table(console: Console, norms: dict, top: int) -> None:
    shown = norms["embedding_related"][:top]
    columns = [Column("tensor", "left", wrap=True, readable=40), Column("kind", "left", keep=3), Column("mean", keep=8), Column("std", keep=7),
               Column("min", keep=5), Column("max", keep=6), Column("why", "left", keep=4, wrap=True, readable=14)]  # fmt: skip
    names = _name_cells([e["name"] for e in shown], console, 60)
    rows = [[n, plain(e["kind"]), num(e["mean"]), num(e["std"]), num(e["min"]), num(e["max"]), plain(e["embedding_related"])]
            for n, e in zip(names, shown)]  # fmt: skip
    console.print(fitted_table(f"Norm layers: {norms['count']} tensors; embedding-related shown", columns, rows, console.width))


def _health_table(console: Console, health: dict) -> None:
    counts = ", ".join(f"{g}: {n}" for g, n in health["counts"].items())
    columns = [Column("tensor", "left", wrap=True, readable=40), Column("grade", "left"), Column("why", "left", wrap=True, readable=30)]
    names = _name_cells([r["name"] for r in health["riskiest"]], console, 50)
    rows = [[n, plain(r["grade"]), plain("; ".join(r["reasons"]))] for n, r in zip(names, health["riskiest"])]
    title = f"Health: {counts}; {health['compressible_tensors']} tensors with stable-rank utilisation < 0.3"
    console.print(fitted_table(title, columns, rows, console.width))


def print_bench(fig: dict, console: Console) -> None:
    """``bench``'s figures, once: GB/s is the median of each row's runs (``runs`` says how many)."""
    columns = [Column("method", "left"), Column("analyses", "left", wrap=True, readable=14), Column("cache", "left"), Column("runs", keep=3),
               Column("GB/s\nmedian"), Column("vs raw", keep=5), Column("vs naive", keep=6), Column("peak RSS\nMiB", keep=4),
               Column("72B\n(145 GB)", keep=2)]  # fmt: skip
    rows = []
    for r in fig["rows"]:
        ext = f"{r['extrapolated_72b_seconds'] / 60:.1f} min" if r.get("extrapolated_72b_seconds") else "-"
        rows.append([r["method"], plain(r["analyses"] or "-"), r["cache"], str(len(r.get("runs") or [1])), f"{r['gbs']:.2f}", f"{r['vs_raw']:.2f}x",
                     f"{r['vs_naive']:.1f}x" if r.get("vs_naive") else "-", f"{r['peak_rss'] / 2**20:.0f}", ext])  # fmt: skip
    console.print(fitted_table(f"{fig['checkpoint']['layout']}, {fig['checkpoint']['bytes'] / 1e9:.2f} GB on {fig['device']}", columns, rows, console.width))
