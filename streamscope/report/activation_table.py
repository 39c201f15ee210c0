"""The terminal summary of an activation run (``streamscope activations``): the module inputs and outputs with
the largest |x|, the outlier tokens, and what was read.

Names are the figures' short labels (``L3.mlp.down_proj``; a decoder layer is ``L3``). A value is shown once:
a decoder layer's input is the previous layer's output, so that input's row is left out. Numbers are never cut:
the columns are fitted to the console (every statistic with 4 significant digits, then 3, then the largest,
median, least and mean alone), at 80 columns (a redirected log) too.
"""

from __future__ import annotations

import math
import re

from rich import box
from rich.console import Console
from rich.table import Table

from streamscope.report.labels import plain, short_label
from streamscope.units import format_bytes

#: Rows shown: the module inputs and outputs with the largest top-1 |x|.
TOP = 15
STATS = ("top1", "top2", "top3", "median", "min", "mean_abs")
HEADERS = {"top1": "top-1", "top2": "top-2", "top3": "top-3", "median": "median", "min": "min", "mean_abs": "mean"}
#: Tried in turn until the table fits the console: (statistics shown, significant digits).
LAYOUTS = ((STATS, 4), (STATS, 3), (("top1", "median", "min", "mean_abs"), 3))
#: What the statistics run over, by ``visualization.magnitude.reduce_dim``.
OVER = {None: "|x| over every value (all tokens and channels)", -1: "each token's largest |x|",
        -2: "each channel's largest |x| over the tokens"}
_ENDS_IN_INDEX = re.compile(r"\.\d+$")


def number(v: float | None, digits: int = 3) -> str:
    """A statistic with ``digits`` significant digits in at most ``digits + 4`` characters (``digits + 5`` below
    1e-9), never cut: ``2.436``, ``0.06240``, ``12345``, ``3.643e-5``."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0:
        return "0"
    a = abs(float(f"{v:.{digits - 1}e}"))  # the range of the rounded value: 999.96 is 1000 (not "1.00e+03") at 3 digits
    if 1e-2 <= a < 10**digits:
        return f"{v:#.{digits}g}".rstrip(".")  # trailing zeros kept: 3.000 beside 2.999
    if 10**digits <= a < 1e5:
        return f"{v:.0f}"
    mantissa, exponent = f"{v:.{digits - 1}e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def module_label(name: str) -> str:
    """``model.layers.3.mlp.down_proj`` -> ``L3.mlp.down_proj``; a decoder layer, ``model.layers.3``, -> ``L3``."""
    if _ENDS_IN_INDEX.search(name):
        label = short_label(name + ".").rstrip(".")
        if label[:1] in "LhV" and label[1:].isdigit():
            return label
    return short_label(name)


def activation_rows(record: dict) -> tuple[list[tuple[str, str, dict]], list[tuple[str, str, str, str]]]:
    """``(rows, left_out)``: ``(module, direction, statistics)`` rows sorted by top-1 |x|, largest first, each
    set of values once; ``left_out`` names each row dropped and the row that shows its values
    ``(module, direction, kept module, kept direction)``. Outputs are kept before inputs, so a decoder layer's
    input gives way to the previous layer's output."""
    entries = [(n, d, r) for n, dirs in record.get("modules", {}).items() for d, r in dirs.items()]
    entries.sort(key=lambda e: e[1] != "output")  # stable: record order within outputs, then within inputs
    seen: dict[tuple, tuple[str, str]] = {}
    rows, left_out = [], []
    for n, d, r in entries:
        key = tuple(r.get(k) for k in (*STATS, "count"))
        if key in seen:
            left_out.append((n, d, *seen[key]))
            continue
        seen[key] = (n, d)
        rows.append((n, d, r))
    rows.sort(key=lambda e: -_sort_value(e[2].get("top1")))
    return rows, left_out


def print_activations(record: dict, console: Console, *, top: int = TOP, out=None) -> None:
    """Print the activation record (``activations.json``) as a table with the run's summary lines.

    Args:
        record: what ``streamscope.activations`` returns (or ``activations.json`` loaded).
        console: where to print; its width decides the columns (80 when redirected to a file).
        top: rows shown.
        out: the results directory, named in the last line with the files written there.

    Example:
        >>> print_activations(json.load(open("results/act/activations.json")), Console())  # doctest: +SKIP
    """
    run = record["run"]
    console.print(f"[bold]Activations[/] of {plain(str(run.get('architecture') or run.get('model')))}: {run['num_samples']} samples x "
                  f"{run['seq_len']} tokens of {plain(str(run.get('source', '?')))} data, {plain(run['dtype'])} on {plain(run['device'])}", highlight=False)  # fmt: skip
    rows, left_out = activation_rows(record)
    if rows:
        console.print(_fitted_table(rows[:top], len(rows), console, _over(record)))
    else:
        console.print("no module inputs or outputs recorded: the magnitude patterns matched none (--verbose lists the modules)")
    for line in _left_out_lines(left_out, run.get("decoder_layers")):
        console.print(line, highlight=False)
    if record.get("outliers"):
        console.print(_outlier_line(record["outliers"]), highlight=False)
    console.print(_run_line(run), highlight=False)
    if out is not None:
        files = run.get("files") or {}
        written = [f for f, note in files.items() if note is None]
        line = f"results in [bold]{plain(str(out))}[/]: " + ", ".join(plain(f) for f in ["activations.json", *written])
        console.print(line, highlight=False)
        for f, note in files.items():
            if note is not None:
                console.print(f"[yellow]{plain(f)}:[/] {plain(str(note))}", highlight=False)


def _sort_value(v) -> float:
    return v if isinstance(v, (int, float)) and not math.isnan(v) else -math.inf


def _over(record: dict) -> str:
    reduce_dim = (record.get("config", {}).get("visualization", {}).get("magnitude", {}) or {}).get("reduce_dim")
    return OVER.get(reduce_dim, f"|x| reduced over dim {reduce_dim}")


def _table(rows, total: int, stats, digits: int, over: str) -> Table:
    shown = f"{len(rows)} of {total}" if total > len(rows) else f"all {total}"
    t = Table(title=f"Module inputs and outputs, largest top-1 |x| first ({shown})", caption=f"statistics of {over}",
              box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True, title_justify="left", caption_justify="left")  # fmt: skip
    t.add_column("module", overflow="ellipsis")
    t.add_column("dir", no_wrap=True)
    for s in stats:
        t.add_column(HEADERS[s], justify="right", no_wrap=True)
    for n, d, r in rows:
        t.add_row(plain(module_label(n)), "in" if d == "input" else "out" if d == "output" else plain(d), *(number(r.get(s), digits) for s in stats))
    return t


def _fitted_table(rows, total: int, console: Console, over: str) -> Table:
    for stats, digits in LAYOUTS:
        t = _table(rows, total, stats, digits, over)
        if console.measure(t, options=console.options.update_width(10_000)).maximum <= console.width:  # the width it wants
            return t
    return t  # the narrowest layout; only the module names give way (cut with "…") on a very narrow console


def _left_out_lines(left_out, decoder_layers: str | None) -> list[str]:
    layer = re.compile(rf"^{re.escape(decoder_layers)}\.\d+$") if decoder_layers else None
    chained = [e for e in left_out if layer and e[1] == "input" and e[3] == "output" and layer.match(e[0]) and layer.match(e[2])]
    lines = []
    if chained:
        lines.append(f"not repeated: {_pairs(chained, 1)} (a decoder layer's input is the previous layer's output)")
    other = [e for e in left_out if e not in chained]
    if other:
        lines.append(f"not repeated: {_pairs(other, 3)} (the same values)")
    return lines


def _pairs(left_out, most: int) -> str:
    text = ", ".join(f"{plain(module_label(a))} {plain(_dir(b))} = {plain(module_label(c))} {plain(_dir(d))}" for a, b, c, d in left_out[:most])
    return text + (f" and {len(left_out) - most} more" if len(left_out) > most else "")


def _dir(direction: str) -> str:
    return {"input": "in", "output": "out"}.get(direction, direction)


def _outlier_line(outliers: dict) -> str:
    layers = outliers.get("layers", {})
    if not layers:
        return f"outlier tokens: not looked for (no module matches {plain(str(outliers.get('pattern')))})"
    total = sum(r.get("count", 0) for r in layers.values())
    hit = sum(1 for r in layers.values() if r.get("count"))
    where = f"in {hit} of {len(layers)} modules" if total else f"in {len(layers)} modules"
    line = (f"outlier tokens: {total:,} {where} (a token's largest |x| above {outliers.get('threshold', 0):g} x its sample's "
            f"median |x|; modules matching {plain(str(outliers.get('pattern')))})")  # fmt: skip
    channels = outliers.get("massive_channels") or {}
    if channels:
        line += "; channels most often: " + ", ".join(f"{plain(c)} ({k:,})" for c, k in list(channels.items())[:8])
    return line


def _run_line(run: dict) -> str:
    read, size = run.get("bytes_read", 0), run.get("checkpoint_bytes", 0)
    if read == size:
        what = f"read the {format_bytes(size)} checkpoint once"
    elif read > size:
        # The weights before the layers are read again when the tail needs them: a head tied to the embeddings
        # (language models), or an embedding module the tail's forward runs through (BERT's, which adds positions).
        tied = any(k in str(run.get("architecture", "")) for k in ("ForCausalLM", "LMHead", "ForConditionalGeneration"))
        why = "for the head tied to them" if tied else "for the model's tail after the layers"
        what = (f"read {format_bytes(read)} from a {format_bytes(size)} checkpoint: every weight once "
                f"and the embeddings ({format_bytes(read - size)}) a second time, {why}")  # fmt: skip
    else:
        what = f"read {format_bytes(read)} of a {format_bytes(size)} checkpoint: only the weights the forward pass uses"
    secs, tps = run.get("seconds") or 0.0, run.get("tokens_per_second")
    speed = f", {tps:,.0f} tokens/s" if tps else ""
    if run.get("resumed_after_layer"):
        done, total = run["resumed_after_layer"], run.get("n_layers")
        speed = f" (resumed: {done} of {total} decoder layers came from the interrupted run; time and bytes are this run's)"
    rss = f"; peak memory (RSS) {format_bytes(run['peak_rss_bytes'])}" if run.get("peak_rss_bytes") else ""
    return f"{secs:.1f} s{speed}; {what}{rss}"
