"""Terminal summaries of scan results, as rich tables. Every name, token and message read from the results goes
through ``labels.plain``: printed as written, never as rich markup or terminal control sequences."""

from __future__ import annotations

import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table

from streamscope.report.labels import plain

#: Width the other columns of a tensor table take; the name gets the rest of the terminal (at least 20).
_OTHER_COLUMNS = 64


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


def _name_width(console: Console) -> int:
    return max(20, console.width - _OTHER_COLUMNS)


def _fmt(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def print_scan_summary(table: pd.DataFrame, model: dict, console: Console, top: int = 10) -> None:
    """Largest and most extreme tensors, embedding row norms, norm layers, errors."""
    ck = model["checkpoint"]
    timing = model.get("timing", {})
    secs = timing.get("seconds") or 0
    console.print(
        f"[bold]{plain(model['model_path'])}[/]: {ck['num_scanned']}/{ck['num_tensors']} tensors, "
        f"{ck['total_params']:,} parameters, {ck['total_bytes'] / 1e9:.2f} GB in {len(ck['shards'])} shard(s); "
        f"scanned in {secs:.1f} s ({rate(timing.get('bytes_scanned', 0), secs)})"
        + (f", {timing['tensors_reused']} reused from an earlier run" if timing.get("tensors_reused") else "")
    )
    if len(table) and "basic_stats.abs_max" in table:
        _tensor_table(console, "Largest tensors", table.sort_values("info.numel", ascending=False).head(top))
        _tensor_table(console, "Most extreme tensors (by |w| max)", table.sort_values("basic_stats.abs_max", ascending=False).head(top))
    if model.get("embedding"):
        t = Table(title="Embedding row L2 norms")
        for c in ("tensor", "vocab x dim", "mean", "std", "min", "max", "p50", "largest-norm tokens"):
            t.add_column(c, justify="left" if c in ("tensor", "largest-norm tokens") else "right")
        for name, e in model["embedding"].items():
            tokens = ", ".join(repr(r["token"]) if r["token"] is not None else str(r["id"]) for r in e["largest"][:3])
            t.add_row(plain(shorten(name, _name_width(console) // 2)), plain(f"{e['vocab_size']} x {e['embedding_dim']}"), _fmt(e["norm_mean"]), _fmt(e["norm_std"]),
                      _fmt(e["norm_min"]), _fmt(e["norm_max"]), _fmt(e["norm_percentiles"]["p50"]), plain(tokens))  # fmt: skip
        console.print(t)
    norms = model.get("norm_layers", {})
    if norms.get("count"):
        t = Table(title=f"Norm layers: {norms['count']} tensors; embedding-related shown")
        for c in ("tensor", "kind", "mean", "std", "min", "max", "why"):
            t.add_column(c, justify="left" if c in ("tensor", "kind", "why") else "right")
        for e in norms["embedding_related"][:top]:
            t.add_row(plain(shorten(e["name"], _name_width(console) - 10)), plain(e["kind"]), _fmt(e["mean"]), _fmt(e["std"]), _fmt(e["min"]), _fmt(e["max"]),
                      plain(e["embedding_related"]))
        console.print(t)
    health = model.get("health") or {}
    if health.get("graded_tensors"):
        counts = ", ".join(f"{g}: {n}" for g, n in health["counts"].items())
        t = Table(title=f"Health: {counts}; {health['compressible_tensors']} tensors with stable-rank utilisation < 0.3")
        for c in ("tensor", "grade", "why"):
            t.add_column(c)
        for r in health["riskiest"]:
            t.add_row(plain(shorten(r["name"], _name_width(console) - 10)), plain(r["grade"]), plain("; ".join(r["reasons"])))
        console.print(t)
    ww = model.get("weightwatcher")
    if ww:  # WeightWatcher's get_summary() and its warnings (definitions in model.json)
        console.print(f"WeightWatcher, {ww['matrices']} matrices: mean alpha {_fmt(ww['alpha'], 3)}, alpha_weighted "
                      f"{_fmt(ww['alpha_weighted'], 3)}, log_spectral_norm {_fmt(ww['log_spectral_norm'], 3)}; "
                      f"{ww['under_trained']} under-trained (alpha > 6), {ww['over_trained']} over-trained (alpha < 2); "
                      f"fitted tails: smallest {_fmt(ww['smallest_tail_size'])}, median {_fmt(ww['median_tail_size'], 3)} eigenvalues")
    for s in model.get("skipped", []):
        console.print(f"[yellow]skipped:[/] {plain(s['name'])}: {plain(s['reason'])}")
    for error in model.get("errors", []):
        console.print(f"[red]error:[/] {plain(error)}")


def _tensor_table(console: Console, title: str, rows: pd.DataFrame) -> None:
    """Tensors as rows; on a narrow terminal (or a pipe, 80 columns) dtype and type give way to the name."""
    wide = console.width >= 110
    columns = ("tensor", "shape", "dtype", "type", "mean", "std", "abs max", "zeros %") if wide else ("tensor", "shape", "mean", "std", "abs max", "zeros %")
    t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    for c in columns:
        t.add_column(c, justify="left" if c in ("tensor", "shape", "dtype", "type") else "right", no_wrap=True)
    name_width = max(20, console.width - (_OTHER_COLUMNS if wide else 50))
    for _, r in rows.iterrows():
        values = {"tensor": plain(shorten(r["tensor"], name_width)), "shape": plain(r["shape"]), "dtype": plain(r["dtype"]), "type": plain(r["block_type"]),
                  "mean": _fmt(r.get("basic_stats.mean"), 3), "std": _fmt(r.get("basic_stats.std"), 3),
                  "abs max": _fmt(r.get("basic_stats.abs_max"), 3), "zeros %": _fmt(r.get("basic_stats.zeros_percentage"), 3)}  # fmt: skip
        t.add_row(*(values[c] for c in columns))
    console.print(t)
