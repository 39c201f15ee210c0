"""Printed reports of parameter accounting and checkpoint comparison, in the layout of the pruning tool."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from streamscope.report.labels import plain, short_label, table_labels
from streamscope.report.terminal import Column, fitted_table, num


def count(n: int) -> str:
    """A parameter count a person reads at a glance: ``134.5M``, ``1.24B``, ``418.9K``, ``576``."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.4g}{unit}"
    return f"{n}"


def change(before: int, after: int) -> str:
    """``before → after (±x.xx%)``: one sign convention everywhere, the change relative to ``before`` (growth +)."""
    if before == after:
        return f"{before:,} (unchanged)"
    pct = f" ({(after - before) / before * 100:+.2f}%)" if before else " (new)"
    return f"{before:,} → {after:,}{pct}"


def _heads(att: dict) -> str:
    return f"{att['num_heads']}Q:{att['num_kv_heads']}KV"


def _spans(ids: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``0-2, 5``."""
    out, start = [], None
    for i, x in enumerate(ids):
        if start is None:
            start = x
        if i + 1 == len(ids) or ids[i + 1] != x + 1:
            out.append(f"{start}" if start == x else f"{start}-{x}")
            start = None
    return ", ".join(out)


def _runs(rows: list[dict], key) -> list[tuple[list[dict], dict]]:
    """Consecutive rows whose ``key(row)`` is equal, as ``(rows, first row)``."""
    runs: list[tuple[list[dict], dict]] = []
    for r in rows:
        if runs and key(runs[-1][1]) == key(r):
            runs[-1][0].append(r)
        else:
            runs.append(([r], r))
    return runs


def _layer_word(rows: list[dict], idx: str = "layer_idx") -> str:
    ids = [r[idx] for r in rows]
    return f"Layer {ids[0]:2d}" if len(ids) == 1 else f"Layers {_spans(ids)} ({len(ids)}, each)"


def _lm_head(p: dict) -> str:
    if p["tied_embeddings"]:
        return f"{p['lm_head_params']:,}  (tied to the embedding, not counted twice)"
    if p["lm_head_params"] == 0 and str(p.get("model_path", "")).endswith(".gguf") and p["embedding_params"]:
        return "0  (tied: no output.weight, llama.cpp reads token_embd)"
    if p["lm_head_params"] == 0:
        return "0  (no LM head stored)"
    return f"{p['lm_head_params']:,}"


def _layer_key(l: dict) -> tuple:
    a, m = l["attention"], l["mlp"]
    moe = (m.get("num_experts"), m.get("params_per_expert"), m.get("router"), m.get("shared_expert"))
    return (l["total"], l["is_zero_layer"], a["total"], _heads(a), a["head_dim"], a["heads_from"], m["total"], m["intermediate_size"], moe, l["norm"])


def _print_layers(p: dict, console: Console) -> None:
    """One block per run of identical consecutive layers."""
    for rows, l in _runs(p["layers"], _layer_key):
        a, m = l["attention"], l["mlp"]
        mark = escape(" [emptied]") if l["is_zero_layer"] else ""
        console.print(f"{_layer_word(rows)}{mark}: {l['total']:,}")
        console.print(f"  Attention: {a['total']:,}  heads {_heads(a)}, head_dim {a['head_dim']} ({a['heads_from']})")
        moe = f", {m['num_experts']} experts x {m['params_per_expert']:,}, router {m['router']:,}, shared {m['shared_expert']:,}" if "num_experts" in m else ""
        console.print(f"  MLP: {m['total']:,}  intermediate {m['intermediate_size']}{moe}")
        console.print(f"  Norm: {l['norm']:,}")


def print_params(p: dict, console: Console, verbose: bool = False) -> None:
    console.print("=" * 60)
    console.print(f"[bold]{plain(p['model_name'] or Path(p['model_path']).name)}[/] ({plain(p['model_type'] or 'unknown type')})  {plain(p['model_path'])}", soft_wrap=True)
    console.print("=" * 60)
    console.print(f"Total parameters:     {p['total_params']:,} ({count(p['total_params'])})")
    console.print(f"Embedding:            {p['embedding_params']:,}")
    console.print(f"LM head:              {_lm_head(p)}")
    ls = p["layer_summary"]
    kind = f"{p.get('layer_kind', 'decoder').title()} layers:"
    console.print(f"{kind:<22}{ls['num_layers']} layers, {ls['total_layer_params']:,} parameters")
    if p.get("buffers"):
        console.print(f"Buffers (not counted): {len(p['buffers'])} tensors, {p['buffer_elements']:,} elements")
    for tower, t in p.get("towers", {}).items():
        console.print(f"{tower.title()} tower:         {t['total']:,} parameters in {t['num_layers']} blocks")
    other = p["other_params"]
    console.print(f"Norms outside layers: {other['norms']:,}  (the final or embedding norm, outside the layers)")
    if other["other"]:
        console.print(f"Other tensors:        {other['other']:,}  (the rest outside the layers, e.g. a pooler)")
    dtypes = ", ".join(f"{d}: {v['params']:,} ({v['bytes'] / 1e9:.3f} GB)" for d, v in p["by_dtype"].items())
    console.print(f"By dtype:             {dtypes}")
    console.print(f"On disk:              {p['bytes_on_disk'] / 1e9:.3f} GB")
    origin = p.get("provenance") or {}
    if origin.get("remote"):
        console.print(f"From the hub:         {plain(origin['model_id'])}@{plain(str(origin['revision'])[:12])}, "
                      f"{origin['bytes_transferred']:,} bytes of headers and JSON fetched (no tensor data)")
    zero = [l["layer_idx"] for l in p["layers"] if l["is_zero_layer"]]
    if verbose:
        console.print("-" * 60)
        _print_layers(p, console)
    if zero:
        console.print(f"Emptied layers ({len(zero)}): {zero}")


def structure_identical(c: dict) -> bool:
    """Same parameters in every layer, part and tensor shape (a dtype may differ); no tensor only on one side."""
    t = c.get("tensors") or {}
    same = lambda v: v["before"] == v["after"]  # noqa: E731
    reshaped = any(x["before"]["shape"] != x["after"]["shape"] for x in t.get("changed", []))
    return (same(c["total_params"]) and same(c["num_layers"]) and not any(t.get(k) for k in ("only_before", "only_after")) and not reshaped
            and all(_unchanged(l) for l in c["layers"]))  # fmt: skip


def _unchanged(l: dict) -> bool:
    a, m = l["attention"], l["mlp"]
    pairs = (l["total"], a, m, a["num_heads"], a["num_kv_heads"], m["intermediate_size"], l["norm"])
    return not l["missing"] and not l["is_zero_layer"] and all(v["before"] == v["after"] for v in pairs)


def _compare_key(l: dict) -> tuple:
    a, m = l["attention"], l["mlp"]
    return (l["missing"], l["is_zero_layer"], *((v["before"], v["after"]) for v in (
        l["total"], a, a["num_heads"], a["num_kv_heads"], m, m["intermediate_size"], l["norm"])))


def _print_compare_layers(c: dict, console: Console) -> None:
    """One block per run of consecutive layers that changed alike."""
    console.print("\nPer layer (change relative to before; + is growth):")
    for rows, l in _runs(c["layers"], _compare_key):
        t, a, m = l["total"], l["attention"], l["mlp"]
        mark = escape(f" [missing {l['missing']}]" if l["missing"] else (" [emptied]" if l["is_zero_layer"] else ""))
        console.print(f"  {_layer_word(rows)}{mark}: {change(t['before'], t['after'])}")
        heads = f"{a['num_heads']['before']}Q:{a['num_kv_heads']['before']}KV"
        heads_after = f"{a['num_heads']['after']}Q:{a['num_kv_heads']['after']}KV"
        console.print(f"    attention: {change(a['before'], a['after'])}, heads {heads}" + ("" if heads == heads_after else f" → {heads_after}"))
        inter = m["intermediate_size"]
        console.print(f"    MLP: {change(m['before'], m['after'])}, intermediate: {inter['before']}"
                      + ("" if inter["before"] == inter["after"] else f" → {inter['after']}"))  # fmt: skip


def print_compare(c: dict, console: Console, verbose: bool = True) -> None:
    """The comparison in the fewest lines that say it: one line when the structure is identical, runs of layers
    that changed alike, the worst SQNR and the ten most changed tensors."""
    console.print("=" * 60)
    console.print(f"[bold]Comparison[/]: {plain(c['before_name'])} → {plain(c['after_name'])}", soft_wrap=True)
    console.print("=" * 60)
    total = c["total_params"]
    if structure_identical(c):
        console.print(f"structure identical: {c['num_layers']['before']} layers, {count(total['before'])} parameters ({total['before']:,})")
        _print_tensor_sets(c, console)
    else:
        layers = c["num_layers"]
        console.print(f"parameters:       {change(total['before'], total['after'])}")
        console.print(f"layer parameters: {change(c['layer_params']['before'], c['layer_params']['after'])}")
        console.print(f"layers:           {layers['before']}" + ("" if layers["before"] == layers["after"] else f" → {layers['after']}"))
        _print_tensor_sets(c, console)
        if verbose:
            _print_compare_layers(c, console)
    missing = {i for ids in c["missing_layers"].values() for i in ids}
    emptied = [i for i in c["emptied_layers"] if i not in missing]
    if emptied:
        console.print(f"\nEmptied layers ({len(emptied)}): {emptied}")
    for side, ids in c["missing_layers"].items():
        if ids:
            console.print(f"Layers missing {side}: {_spans(ids)}")
    if "weights" in c:
        _print_weights(c, console)
    console.print("=" * 60)


def _print_tensor_sets(c: dict, console: Console) -> None:
    t = c.get("tensors") or {}
    changed = t.get("changed", [])
    reshaped = [x["name"] for x in changed if x["before"]["shape"] != x["after"]["shape"]]
    for names, what in ((t.get("only_before", []), "only in before"), (t.get("only_after", []), "only in after"), (reshaped, "with a new shape")):
        if names:
            shown = ", ".join(plain(n) for n in names[:3]) + (f", … ({len(names) - 3} more)" if len(names) > 3 else "")
            console.print(f"tensors {what}: {len(names)}: {shown}")
    recast: dict[str, int] = {}
    for x in changed:
        if x["before"]["shape"] == x["after"]["shape"]:
            key = f"{x['before']['dtype']} → {x['after']['dtype']}"
            recast[key] = recast.get(key, 0) + 1
    if recast:
        console.print(f"tensors with a new dtype: {sum(recast.values())} ({', '.join(f'{k}: {n}' for k, n in recast.items())})")


def _print_weights(c: dict, console: Console) -> None:
    weights = c["weights"]
    if not weights:  # the command says so as an error
        return
    changed = {n: w for n, w in weights.items() if w["frobenius_norm_change"] > 0}
    if not changed:
        console.print(f"\nWeights: all {len(weights)} compared tensors are identical (bit for bit).")
        return
    worst = min(changed, key=lambda n: changed[n]["sqnr_db"])
    rows = sorted(changed.items(), key=lambda kv: -(kv[1]["relative_frobenius_change"] or 0))[:10]
    names = [n for n, _ in rows]
    full = max(map(len, names)) <= console.width - 58
    labels = names if full else table_labels(names)
    console.print(f"\nWeights: {len(weights)} tensors compared, {len(weights) - len(changed)} identical, {len(changed)} changed")
    console.print(f"worst SQNR {num(changed[worst]['sqnr_db'])} dB ({plain(worst if full else short_label(worst))})")
    columns = [Column("tensor", "left", wrap=True, readable=40), Column("rel. change"), Column("SQNR dB", keep=5), Column("1 − cos", keep=3),
               Column("max |Δ|", keep=4), Column("Δ stable\nrank", keep=2)]  # fmt: skip
    cells = [[plain(label), num(w["relative_frobenius_change"]), num(w["sqnr_db"]), num(_cos_distance(w)), num(w["max_abs_change"]),
              num(w.get("diff_stable_rank"))] for label, (_, w) in zip(labels, rows)]  # fmt: skip
    console.print(fitted_table(f"The {len(rows)} most changed tensors (relative Frobenius change)", columns, cells, console.width))


def _cos_distance(w: dict) -> float:
    """1 - cos; from the record's exact form where present (see ``analyses.compare.weight_delta``)."""
    if "cosine_distance" in w:
        return w["cosine_distance"]
    return max(0.0, 1.0 - min(1.0, w["cosine_similarity"]))
