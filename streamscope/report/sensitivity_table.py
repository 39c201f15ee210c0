"""The terminal summary of ``streamscope sensitivity``: the Linears that lose most, the quantized model's
divergence, the plan. Names are the figures' short labels; numbers are never cut (80 columns fit)."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from streamscope.report.activation_table import module_label, number
from streamscope.report.labels import plain

TOP = 12
#: Scheme columns of the table, those present in the run, at most four.
SHOWN = ("int8_channel", "fp8_e4m3", "int4_g128", "q4_0", "mxfp4", "int4_g128_asym", "int8", "q8_0")


def _sqnr(r) -> str:
    return "n/a" if not r else number(r.get("sqnr_db"), 3)


def local_table(record: dict, default: str) -> Table:
    local, smooth = record["local"], record.get("smoothquant") or {}
    schemes = [s for s in SHOWN if s in record["run"]["schemes"]][:4]
    key = default if default in record["run"]["schemes"] else schemes[0]
    worst = sorted(local, key=lambda m: (local[m].get(key) or {}).get("sqnr_db") or float("inf"))[:TOP]
    t = Table(box=box.SIMPLE_HEAD, title=f"output SQNR (dB) on real inputs, lowest at {key} first", title_justify="left", pad_edge=False)
    t.add_column("Linear", no_wrap=True)
    for s in schemes:
        t.add_column(s.replace("_channel", "_ch").replace("_asym", "a"), justify="right", no_wrap=True)
    if smooth:
        t.add_column("W8A8", justify="right", no_wrap=True)
        t.add_column("SQ α", justify="right", no_wrap=True)
    for m in worst:
        row = [module_label(m)] + [_sqnr(local[m].get(s)) for s in schemes]
        sq = smooth.get(m)
        if smooth:
            row += [number(sq["w8a8_sqnr_db"]["none"], 3), f"{sq['best_alpha']:g} +{sq['gain_db']:.1f}"] if sq else ["-", "-"]
        t.add_row(*row)
    return t


def propagated_lines(record: dict) -> list[str]:
    lines = []
    for name, p in record["propagated"].items():
        layers = p.get("layers") or []
        worst = min(range(len(layers)), key=lambda i: layers[i]["cos"] if layers[i]["cos"] is not None else 1.0) if layers else None
        tail = f"; worst layer L{worst}: cos {layers[worst]['cos']:.5f}, {number(layers[worst]['sqnr_db'], 3)} dB" if worst is not None else ""
        if p.get("kl_mean") is None:
            out = p.get("output") or {}
            lines.append(f"{name}: last hidden state cos {number(out.get('cos'), 6)}, SQNR {number(out.get('sqnr_db'), 3)} dB{tail}")
        else:
            lines.append(f"{name}: KL {number(p['kl_mean'], 3)} nats (p99 {number(p['kl_p99'], 3)}), top-1 agreement "
                         f"{100 * p['top1_agreement']:.1f}%, perplexity {number(p['ppl_float'], 4)} -> {number(p['ppl_quant'], 4)}{tail}")  # fmt: skip
    return lines


def plan_line(plan: dict | None) -> str | None:
    if not plan:
        return None
    if plan.get("keep") is None:
        return f"plan: none ({plan.get('note')})"
    kept, kl = plan["keep"], plan["kl"]
    verdict = "meets" if kl is not None and kl <= plan["target_kl"] else "misses"
    checked = f", checked by {len(plan['checks'])} propagated pass(es)" if plan.get("checks") else ""
    return (f"plan: keep {len(kept)} Linear(s) at {plan['keep_scheme']}, rest {plan['recipe']}: KL {number(kl, 3)} {verdict} the "
            f"target {plan['target_kl']:g}{checked}; {plan['bits_per_weight']:.2f} bits/weight")  # fmt: skip


def print_sensitivity(record: dict, out, console: Console | None = None) -> None:
    console = console or Console()
    run = record["run"]
    console.print(plain(f"sensitivity of {run['linears']} Linears in {run['n_layers']} layers, {len(run['schemes'])} schemes, "
                        f"{run['num_samples']} x {run['seq_len']} tokens ({run['seconds']:.1f} s)"), highlight=False)  # fmt: skip
    skipped = run.get("not_measured") or []
    if skipped:
        console.print(plain(f"note: {len(skipped)} weights in the layers are not Linears (fused experts, e.g. {module_label(skipped[0])}): "
                            "neither measured nor quantized here"), highlight=False)  # fmt: skip
    if record["local"]:
        console.print(local_table(record, next(iter(record["propagated"]), "int4_g128")))
    for line in propagated_lines(record):
        console.print(plain(line), highlight=False)
    line = plan_line(record.get("plan"))
    if line:
        console.print(plain(line), highlight=False)
    console.print(plain(f"files in {out}: sensitivity.json/.csv/.parquet, recipe.yaml (llm-compressor), tensor_types.txt (llama-quantize)"), highlight=False)
