"""Printed reports of parameter accounting and checkpoint comparison, in the layout of the pruning tool."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from streamscope.report.labels import plain


def _pct(r: float) -> str:
    return f"{r * 100:.2f}%"


def _delta(r: float) -> str:
    """A reduction ratio as a signed change: 0.2 -> -20.00%."""
    return f"{-r * 100:+.2f}%"


def _heads(att: dict) -> str:
    return f"{att['num_heads']}Q:{att['num_kv_heads']}KV"


def print_params(p: dict, console: Console, verbose: bool = False) -> None:
    console.print("=" * 60)
    console.print(f"[bold]{plain(p['model_name'])}[/] ({plain(p['model_type'] or 'unknown type')})  {plain(p['model_path'])}")
    console.print("=" * 60)
    console.print(f"Total parameters:     {p['total_params']:,}")
    console.print(f"Embedding:            {p['embedding_params']:,}")
    lm = f"{p['lm_head_params']:,}" + ("  (tied to the embedding, not counted twice)" if p["tied_embeddings"] else "")
    console.print(f"LM head:              {lm}")
    ls = p["layer_summary"]
    kind = f"{p.get('layer_kind', 'decoder').title()} layers:"
    console.print(f"{kind:<22}{ls['num_layers']} layers, {ls['total_layer_params']:,} parameters")
    if p.get("buffers"):
        console.print(f"Buffers (not counted): {len(p['buffers'])} tensors, {p['buffer_elements']:,} elements")
    for tower, t in p.get("towers", {}).items():
        console.print(f"{tower.title()} tower:         {t['total']:,} parameters in {t['num_layers']} blocks")
    console.print(f"Other norms / other:  {p['other_params']['norms']:,} / {p['other_params']['other']:,}")
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
        for l in p["layers"]:
            a, m = l["attention"], l["mlp"]
            mark = escape(" [emptied]") if l["is_zero_layer"] else ""
            console.print(f"Layer {l['layer_idx']:2d}{mark}: {l['total']:,}")
            console.print(f"  Attention: {a['total']:,}  heads {_heads(a)}, head_dim {a['head_dim']} ({a['heads_from']})")
            moe = f", {m['num_experts']} experts x {m['params_per_expert']:,}, router {m['router']:,}, shared {m['shared_expert']:,}" if "num_experts" in m else ""
            console.print(f"  MLP: {m['total']:,}  intermediate {m['intermediate_size']}{moe}")
            console.print(f"  Norm: {l['norm']:,}")
    if zero:
        console.print(f"Emptied layers ({len(zero)}): {zero}")


def print_compare(c: dict, console: Console, verbose: bool = True) -> None:
    console.print("=" * 60)
    console.print(f"[bold]Comparison[/]: {plain(c['before_name'])} → {plain(c['after_name'])}")
    console.print("=" * 60)
    for title, key in (("Total parameters", "total_params"), ("Layers", "layer_params")):
        v = c[key]
        console.print(f"\n{title}:\n  before:  {v['before']:,}\n  after:   {v['after']:,}\n  reduced: {v['reduced']:,} ({_pct(v['reduction_ratio'])})")
    if verbose:
        console.print("\nPer layer:\n" + "-" * 60)
        for l in c["layers"]:
            mark = escape(" [emptied]" if l["is_zero_layer"] else (f" [missing {l['missing']}]" if l["missing"] else ""))
            t, a, m = l["total"], l["attention"], l["mlp"]
            console.print(f"\nLayer {l['layer_idx']:2d}{mark}:")
            console.print(f"  total: {t['before']:,} → {t['after']:,} ({_delta(t['reduction_ratio'])})")
            console.print(f"  Attention: {a['before']:,} → {a['after']:,} ({_delta(a['reduction_ratio'])})")
            console.print(f"    heads: {a['num_heads']['before']}Q:{a['num_kv_heads']['before']}KV → {a['num_heads']['after']}Q:{a['num_kv_heads']['after']}KV")
            console.print(f"  MLP: {m['before']:,} → {m['after']:,} ({_delta(m['reduction_ratio'])})")
            console.print(f"    intermediate: {m['intermediate_size']['before']} → {m['intermediate_size']['after']}")
    if c["emptied_layers"]:
        console.print(f"\nEmptied layers ({len(c['emptied_layers'])}): {c['emptied_layers']}")
    for side, ids in c["missing_layers"].items():
        if ids:
            console.print(f"Layers missing {side}: {ids}")
    if "weights" in c:
        changed = {n: w for n, w in c["weights"].items() if w["frobenius_norm_change"] > 0}
        if not changed:
            console.print(f"\nWeights: all {len(c['weights'])} compared tensors are identical.")
        else:
            console.print(f"\nLargest weight changes (relative Frobenius; {len(c['unchanged_tensors'])} of {len(c['weights'])} tensors unchanged):")
            rows = sorted(changed.items(), key=lambda kv: -(kv[1]["relative_frobenius_change"] or 0))[:10]
            for name, w in rows:
                sr = f", delta stable rank {w['diff_stable_rank']:.2f}" if "diff_stable_rank" in w else ""
                console.print(f"  {plain(name)}: {w['relative_frobenius_change']:.4g} (cos {w['cosine_similarity']:.6f}, max |Δ| {w['max_abs_change']:.4g}{sr})")
    console.print("=" * 60)
