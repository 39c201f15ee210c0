"""``sensitivity.json`` of ``streamscope sensitivity``, read for the report, and the numbers its figures and its
page section share: the rank correlation of weight-only against measured SQNR, the SmoothQuant curves, the
plan's gains. A directory holding only ``sensitivity.json`` opens as results of its own.

The file is checked on read as ``results_dir`` checks the other results files: a value of another type than the
report uses is one error naming the file and the key.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from streamscope.report.labels import short_label
from streamscope.results_dir import INT, NONE, NUM, NUM_, STR, STR_, Each, Results, check, read_object

FILE = "sensitivity.json"
#: The schemes whose weight-only screening is set against the measured output error.
SCREENED = ("int8_channel", "int4_g128")

_ERROR = {"sqnr_db": NUM_, "rel_mse": NUM_, "weight_sqnr_db": NUM_}
_TOP = {
    "run": {"model": STR_, "n_layers": INT, "linears": INT, "schemes": [STR], "num_samples": INT, "seq_len": INT, "seconds": NUM},
    "local": Each(Each((dict, NONE))),
    "propagated": Each({"kl_mean": NUM_, "kl_p99": NUM_, "top1_agreement": NUM_, "ppl_float": NUM_, "ppl_quant": NUM_,
                         "layers": [{"cos": NUM_, "sqnr_db": NUM_}]}),
    "smoothquant": (dict, NONE), "plan": (dict, NONE), "recipes": (dict, NONE),
}  # fmt: skip
_SMOOTH = Each({"best_alpha": NUM_, "w8a8_sqnr_db": Each(NUM_), "gain_db": NUM_})
_PLAN = {"target_kl": NUM, "keep_scheme": STR, "recipe": STR, "keep": (list, NONE), "kl": NUM_, "bits_per_weight": NUM_,
         "note": STR_}  # fmt: skip


@dataclass
class SensitivityResults(Results):
    sensitivity: dict | None = None  # sensitivity.json, when present


def read(path: str | Path) -> dict | None:
    """``DIR/sensitivity.json`` checked against the types the report reads, or None where there is none."""
    file = Path(path) / FILE
    if not file.is_file():
        return None
    data = read_object(file)
    check(data, _TOP, "", file)
    for m, schemes in data["local"].items():
        for s, r in schemes.items():
            if r is not None:
                check(r, _ERROR, f"local[{m!r}][{s!r}]", file)
    if data.get("smoothquant"):
        check(data["smoothquant"], _SMOOTH, "smoothquant", file)
    if data.get("plan"):
        check(data["plan"], _PLAN, "plan", file)
        check(data["plan"].get("keep") or [], [STR], "plan.keep", file)
    return data


def open_results(path: str | Path) -> Results:
    """``Results.open`` with ``sensitivity.json`` beside; a directory with only ``sensitivity.json`` opens too.

    Raises:
        StreamscopeError: no results at all (``Results.open``'s error), or a damaged file.
    """
    path = Path(path)
    record = read(path)
    others = ("tensors.json", "embeddings.json", "activations.json")
    if record is None or any((path / f).is_file() for f in others):
        base = Results.open(path)
    else:
        base = Results(path, {}, {"model_path": record["run"].get("model")})
    return SensitivityResults(**{f.name: getattr(base, f.name) for f in fields(base)}, sensitivity=record)


def of(results) -> dict | None:
    """The sensitivity record of ``results``, or None (results opened without it)."""
    return getattr(results, "sensitivity", None)


def finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def spearman(x, y) -> float | None:
    """Spearman's rank correlation: Pearson's correlation of the average ranks (ties share their mean rank);
    None under three points or where one side has a single value."""
    import pandas as pd

    if len(x) < 3:
        return None
    rx, ry = pd.Series(x, dtype=float).rank().to_numpy(), pd.Series(y, dtype=float).rank().to_numpy()
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def screening(record: dict, scheme: str) -> tuple[list[str], list[float], list[float]]:
    """``(modules, weight-only SQNR, measured output SQNR)`` at ``scheme``, for the Linears with both finite."""
    names, weight, output = [], [], []
    for m, schemes in record["local"].items():
        r = schemes.get(scheme) or {}
        if finite(r.get("weight_sqnr_db")) and finite(r.get("sqnr_db")):
            names.append(m)
            weight.append(float(r["weight_sqnr_db"]))
            output.append(float(r["sqnr_db"]))
    return names, weight, output


_INDEXED = re.compile(r"^([A-Za-z]+)(\d+)\.(.+)$")


def place(module: str) -> tuple[int | None, str]:
    """``(decoder layer, Linear type)``: ``model.layers.3.self_attn.q_proj`` -> ``(3, "attn.q_proj")``."""
    label = short_label(module)
    m = _INDEXED.match(label)
    return (int(m.group(2)), m.group(3)) if m else (None, label)


def alpha_curves(record: dict) -> tuple[list[float], dict[str, tuple[float | None, list[float | None]]]]:
    """``(alphas, {module: (W8A8 SQNR unsmoothed, [W8A8 SQNR at each alpha])})`` of the smoothed Linears."""
    smooth = record.get("smoothquant") or {}
    keys = sorted({k for s in smooth.values() for k in s["w8a8_sqnr_db"] if k != "none"}, key=float)
    curves = {}
    for m, s in smooth.items():
        v = s["w8a8_sqnr_db"]
        curves[m] = (v.get("none") if finite(v.get("none")) else None, [v.get(k) if finite(v.get(k)) else None for k in keys])
    return [float(k) for k in keys], curves


def recipe_scheme(record: dict, recipe: str) -> str:
    """The scheme a recipe gives its Linears (a recipe named by a scheme, as the default ones are, is that scheme)."""
    return ((record.get("recipes") or {}).get(recipe) or {}).get("scheme") or recipe


def plan_gains(record: dict) -> dict[str, float]:
    """``{module: output SQNR at the keep scheme - at the recipe's scheme}`` (dB) for every measured Linear."""
    plan = record.get("plan") or {}
    if not plan.get("keep_scheme"):
        return {}
    keep, base = plan["keep_scheme"], recipe_scheme(record, plan.get("recipe", ""))
    out = {}
    for m, schemes in record["local"].items():
        hi, lo = (schemes.get(keep) or {}).get("sqnr_db"), (schemes.get(base) or {}).get("sqnr_db")
        if finite(hi) and finite(lo):
            out[m] = float(hi) - float(lo)
    return out


def _fmt(v, digits: int = 3) -> str:
    return f"{v:.{digits}g}" if finite(v) else "n/a"


def screening_line(record: dict, scheme: str) -> str | None:
    names, weight, output = screening(record, scheme)
    if not names:
        return None
    rho = spearman(weight, output)
    return (f"{scheme}: Spearman rank correlation of weight-only SQNR with measured output SQNR {_fmt(rho)} "
            f"over {len(names)} Linears")


def summary_lines(record: dict | None) -> list[str]:
    """The section's facts as plain sentences (the text beside, and in place of, its figures)."""
    if not record:
        return []
    run = record["run"]
    lines = [f"{run['linears']} Linears in {run['n_layers']} layers, {len(run['schemes'])} schemes ({', '.join(run['schemes'])}), "
             f"{run['num_samples']} x {run['seq_len']} tokens, {run['seconds']:.1f} s."]  # fmt: skip
    screened = [line for line in (screening_line(record, s) for s in SCREENED) if line]
    if screened:
        lines.append("; ".join(screened) + ". A rank correlation well below 1 says that ranking Linears by their weights' "
                     "quantization error alone (weight-only screening) misranks them: the measured output error decides.")  # fmt: skip
    smooth = record.get("smoothquant") or {}
    if smooth:
        gains = [s["gain_db"] for s in smooth.values() if finite(s.get("gain_db"))]
        median = float(np.median(gains)) if gains else None
        lines.append(f"SmoothQuant on {len(smooth)} Linears: median W8A8 SQNR gain at the best alpha {_fmt(median)} dB.")
    lines += [_propagated_line(name, p) for name, p in record["propagated"].items()]
    plan = record.get("plan")
    if plan:
        lines.append(plan_line(plan))
    return lines


def _propagated_line(name: str, p: dict) -> str:
    layers = [l for l in p.get("layers") or [] if finite(l.get("cos"))]
    worst = min(range(len(layers)), key=lambda i: layers[i]["cos"]) if layers else None
    tail = f"; lowest cosine after layer {worst}: {layers[worst]['cos']:.6f}" if worst is not None else ""
    if p.get("kl_mean") is None:
        o = p.get("output") or {}
        return (f"{name}: last hidden state cosine {_fmt(o.get('cos'), 6)}, SQNR {_fmt(o.get('sqnr_db'))} dB "
                f"(an encoder: no KL){tail}.")
    top1 = p.get("top1_agreement")
    return (f"{name}: KL {_fmt(p['kl_mean'])} nats (p99 {_fmt(p.get('kl_p99'))}), top-1 agreement "
            f"{_fmt(100 * top1 if finite(top1) else None, 4)}%, perplexity {_fmt(p.get('ppl_float'), 5)} -> {_fmt(p.get('ppl_quant'), 5)}{tail}.")  # fmt: skip


def plan_line(plan: dict) -> str:
    bpw = f"{plan['bits_per_weight']:.2f}" if finite(plan.get("bits_per_weight")) else "n/a"
    if plan.get("keep") is None:
        return f"Plan: none ({plan.get('note') or 'no plan'}); {bpw} bits per weight as the recipe stands."
    met = plan.get("met")
    met = finite(plan.get("kl")) and plan["kl"] <= plan["target_kl"] if met is None else met
    verdict = "meets" if met else "misses"
    return (f"Plan: keep {len(plan['keep'])} Linears at {plan['keep_scheme']}, the rest at {plan['recipe']}: measured KL "
            f"{_fmt(plan.get('kl'))} {verdict} the target {plan['target_kl']:g}; {bpw} bits per weight.")  # fmt: skip
