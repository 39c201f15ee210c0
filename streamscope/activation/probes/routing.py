"""Mixture-of-experts routing: which experts each router of the model sends the calibration tokens to
(``activations.json["routing"]``).

A router is a module inside the decoder layers whose class name ends in ``Router``, ``Gate`` or ``Gating`` and
that knows its number of experts and its top-k (transformers' ``MixtralTopKRouter``, ``Qwen2MoeTopKRouter``,
``Qwen3MoeTopKRouter``, ``DeepseekV2TopkRouter``, ``DeepseekV3TopkRouter``, ...). Those return
``(logits, weights, indices)``: the experts counted are the indices the model itself chose, after whatever
rules its class applies (softmax then top-k, DeepSeek's groups, sigmoid scores and score-correction bias), so
nothing of the routing is re-implemented here. A router that returns no integer indices has the top-k of its
first output counted (Llama 4's: its scores keep the chosen experts' order), and no router entropy. Dense
models have no router: the probe then watches nothing and costs nothing.

Per router (keyed by module name), over every token of every sample:

- ``tokens_per_expert``: how many of the router's selections went to each expert (a token counts once for each
  of its top-k experts); ``share``: those counts over all selections; ``dead_experts``: experts no token chose.
- ``entropy``: the mean over tokens of the entropy, in nats, of the router's probabilities over all its
  experts (softmax of the logits; for a router scoring with sigmoids, DeepSeek-V3-style, the sigmoid scores
  normalised to sum 1); ``entropy_normalised`` divides it by ln(experts): 1 is a router undecided between
  every expert, 0 one that is certain of a single expert.
- ``load_entropy``: the entropy of ``share`` itself (nats; ``load_entropy_normalised``: over ln(experts),
  1 for a perfectly even load); ``load_cv``: the coefficient of variation of ``tokens_per_expert``
  (population standard deviation over mean; 0 for an even load).

``routing["summary"]``: the number of routers and experts, and ``dead_experts``: decoder layer -> the experts
the calibration data never reached (llama.cpp's imatrix and llm-compressor's calibration have no data for
those, so calibrate on more or other text before quantizing them).

Counts are integers and the per-call entropy sums are added exactly (``math.fsum``), so resumed and
data-parallel runs give the single run's numbers to the bit.
"""

from __future__ import annotations

import math
import re

import numpy as np

from streamscope.activation.probes.base import Probe

ROUTER_CLASS = re.compile(r"(Router|Gate|Gating)$")


def _experts(module) -> int | None:
    for attr in ("num_experts", "num_local_experts", "n_routed_experts"):
        n = getattr(module, attr, None)
        if isinstance(n, int) and n > 0:
            return n
    return None


def _top_k(module) -> int | None:
    for attr in ("top_k", "num_experts_per_tok"):
        k = getattr(module, attr, None)
        if isinstance(k, int) and k > 0:
            return k
    return None


def is_router(module) -> bool:
    return bool(ROUTER_CLASS.search(type(module).__name__)) and _experts(module) is not None and _top_k(module) is not None


def routers(watch, vis) -> list[str]:
    """Every router of the decoder layers (the layer selection does not apply: dead experts are a whole-model
    question, and the counts cost next to nothing)."""
    return [n for n in watch.in_layers(watch.names) if is_router(watch.modules[n])]


def scoring(module) -> str:
    """``sigmoid`` for routers that score each expert on its own (DeepSeek-V3 and those with its
    score-correction bias), else ``softmax``."""
    named = getattr(module, "scoring_func", None)
    if named in ("sigmoid", "softmax"):
        return named
    return "sigmoid" if hasattr(module, "e_score_correction_bias") else "softmax"


def _chosen(call, experts: int):
    """The experts chosen in this call, ``(tokens, k)`` integers, and the router's logits ``(tokens, experts)``
    where its output is transformers' ``(logits, weights, indices)`` (else None: which output holds the logits
    is not known, so no entropy is claimed)."""
    import torch

    out = call.output if isinstance(call.output, tuple) else (call.x_out,)
    idx = next((o for o in out if isinstance(o, torch.Tensor) and not o.is_floating_point() and o.dim() >= 1), None)
    if idx is None:  # no indices returned: the top-k of the scores
        idx = torch.topk(call.x_out.reshape(-1, experts).float(), _top_k(call.module), dim=-1).indices
        return idx, None
    logits = call.x_out.reshape(-1, call.x_out.shape[-1])
    return idx.reshape(-1, idx.shape[-1]), logits if logits.shape[-1] == experts and logits.is_floating_point() else None


def _entropy_sum(logits, how: str) -> float:
    """The sum over tokens of the entropy (nats) of the router's probabilities."""
    import torch

    z = logits.detach().double()
    if how == "sigmoid":
        s = torch.sigmoid(z)
        p = s / s.sum(-1, keepdim=True)
        logp = torch.log(p)
    else:
        logp = torch.log_softmax(z, dim=-1)
        p = logp.exp()
    h = -(p * torch.nan_to_num(logp, neginf=0.0)).sum(-1)  # 0 log 0 = 0
    return float(h.sum())


class State:
    def __init__(self, experts: int = 0, top_k: int = 0, how: str = "softmax"):
        self.experts, self.top_k, self.how = experts, top_k, how
        self.counts = np.zeros(experts, np.int64)
        self.tokens = 0
        self.entropy: list[float] = []  # per call: the sum over its tokens, summed exactly at the end

    def update(self, call) -> None:
        import torch

        if call.x_out is None or call.module is None:
            return
        if not self.experts:  # the first call: the router says what it is
            self.experts, self.top_k, self.how = _experts(call.module), _top_k(call.module), scoring(call.module)
            self.counts = np.zeros(self.experts, np.int64)
        idx, logits = _chosen(call, self.experts)  # (tokens, k), (tokens, experts)
        flat = idx.reshape(-1)
        flat = flat[(flat >= 0) & (flat < self.experts)]  # an index past the experts marks a dropped selection
        self.counts += torch.bincount(flat.long(), minlength=self.experts).cpu().numpy().astype(np.int64)
        self.tokens += int(idx.shape[0])
        if logits is not None:
            self.entropy.append(_entropy_sum(logits, self.how))

    def merge(self, other: "State") -> "State":
        if not other.experts:
            return self
        if not self.experts:
            self.experts, self.top_k, self.how, self.counts = other.experts, other.top_k, other.how, np.zeros(other.experts, np.int64)
        if other.experts != self.experts:
            raise ValueError(f"routing states of {self.experts} and {other.experts} experts cannot be merged")
        self.counts = self.counts + other.counts
        self.tokens += other.tokens
        self.entropy += other.entropy
        return self

    def dump(self) -> dict:
        return {"counts": self.counts.copy(), "tokens": np.int64(self.tokens), "entropy": np.array(self.entropy, np.float64),
                "top_k": np.int64(self.top_k), "sigmoid": np.bool_(self.how == "sigmoid")}  # fmt: skip

    def reduce(self) -> dict:
        counts = self.counts
        selections = int(counts.sum())
        share = counts / selections if selections else np.full(self.experts, np.nan)
        ln_e = math.log(self.experts) if self.experts > 1 else float("nan")
        h = math.fsum(self.entropy) / self.tokens if self.entropy and self.tokens else float("nan")
        nz = share[share > 0]
        h_load = float(-(nz * np.log(nz)).sum()) if selections else float("nan")
        mean = counts.mean() if self.experts else 0.0
        return {"experts": self.experts, "top_k": self.top_k, "scoring": self.how, "tokens": self.tokens, "selections": selections,
                "tokens_per_expert": counts.tolist(), "share": share.tolist(), "dead_experts": np.flatnonzero(counts == 0).tolist(),
                "entropy": h, "entropy_normalised": h / ln_e, "load_entropy": h_load, "load_entropy_normalised": h_load / ln_e,
                "load_cv": float(counts.std() / mean) if mean else float("nan")}  # fmt: skip


def restore(vis: dict, data: dict) -> State:
    s = State(int(data["counts"].shape[0]), int(data["top_k"]), "sigmoid" if bool(data["sigmoid"]) else "softmax")
    s.counts, s.tokens, s.entropy = data["counts"].astype(np.int64), int(data["tokens"]), data["entropy"].tolist()
    return s


def layer_of(name: str) -> int | None:
    """The decoder layer index in a router's name (``model.layers.3.mlp.gate`` -> 3)."""
    m = re.search(r"\.(\d+)(?:\.|$)", name)
    return int(m.group(1)) if m else None


def record(reduced: dict, run) -> dict:
    """``{router name: its results, "summary": {...}}``; empty for a model without routers."""
    done = {n: r for n, r in reduced.items() if r and r["experts"]}
    if not done:
        return {}
    layers = [layer_of(n) for n in done]
    by_layer = len(set(layers)) == len(layers) and None not in layers  # else named by router
    dead = {str(layer if by_layer else n): r["dead_experts"] for n, layer, r in zip(done, layers, done.values()) if r["dead_experts"]}
    summary = {"routers": len(done), "experts": sum(r["experts"] for r in done.values()), "dead_count": sum(len(v) for v in dead.values()),
               "dead_experts": dead, "mean_entropy_normalised": _mean(r["entropy_normalised"] for r in done.values()),
               "mean_load_cv": _mean(r["load_cv"] for r in done.values())}  # fmt: skip
    return {**{n: {"layer": layer, **r} for (n, r), layer in zip(done.items(), layers)}, "summary": summary}


def _mean(values) -> float:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return math.fsum(v) / len(v) if v else float("nan")


def table(reduced: dict, run) -> list[dict]:
    return [{"module": n, "direction": "output", "routing_tokens": r["tokens"], "routing_experts": r["experts"],
             "routing_dead_experts": len(r["dead_experts"]), "routing_entropy": r["entropy"], "routing_load_cv": r["load_cv"]}
            for n, r in reduced.items() if r and r["experts"]]  # fmt: skip


def arrays(group, reduced: dict, run) -> None:
    """``routing/tokens_per_expert``: routers x experts (int64, -1 past a router's own experts where they differ),
    its ``modules`` and ``layers`` as attributes."""
    done = {n: r for n, r in reduced.items() if r and r["experts"]}
    if not done:
        return
    width = max(r["experts"] for r in done.values())
    counts = np.full((len(done), width), -1, np.int64)
    for i, r in enumerate(done.values()):
        counts[i, : r["experts"]] = r["tokens_per_expert"]
    a = group.require_group("routing").create_array("tokens_per_expert", data=counts)
    a.attrs["modules"] = list(done)
    a.attrs["layers"] = [layer_of(n) for n in done]


def draw(results):
    """Layers x experts: each expert's share of its router's selections; experts no token reached in red."""
    from streamscope.plotstyle import figure

    routing = (results.activations or {}).get("routing") or {}
    rows = [(n, r) for n, r in routing.items() if n != "summary" and isinstance(r, dict) and r.get("share")]
    if not rows:
        return None
    width = max(len(r["share"]) for _, r in rows)
    grid = np.full((len(rows), width), np.nan)
    for i, (_, r) in enumerate(rows):
        grid[i, : len(r["share"])] = [np.nan if s is None else s for s in r["share"]]
    from matplotlib.colors import ListedColormap

    fig = figure(min(14, max(7, 3 + 0.05 * width)), min(14, max(3, 1.6 + 0.25 * len(rows))))
    ax = fig.add_subplot()
    im = ax.imshow(grid, aspect="auto", interpolation="nearest", cmap="viridis")  # past a router's experts: blank
    dead_cells = np.where(grid == 0, 1.0, np.nan)  # drawn over in red, apart from the colour scale
    ax.imshow(dead_cells, aspect="auto", interpolation="nearest", cmap=ListedColormap(["#d62728"]), vmin=0, vmax=1)
    labels = [f"L{r['layer']}" if r.get("layer") is not None else n for n, r in rows]
    step = max(1, len(rows) // 40)
    ax.set_yticks(range(0, len(rows), step), labels[::step])
    ax.set_xlabel("expert")
    ax.set_ylabel("MoE layer")
    dead = sum(len(r.get("dead_experts") or []) for _, r in rows)
    ax.set_title(f"Each expert's share of its router's selections (red: no token, {dead} dead expert{'s' * (dead != 1)})")
    fig.colorbar(im, ax=ax, label="share of selections")
    return fig


PROBE = Probe(
    name="routing",
    help="MoE routing: tokens per expert of every router, dead experts, router and load entropy, load CV (models with routers)",
    enabled={"routing": True},
    active=lambda vis: bool(vis["enabled"]["routing"]),
    watches=routers,
    new=lambda vis, name, scratch: State(),
    restore=restore,
    record=record,
    table=table,
    arrays=arrays,
    figures=(("expert_routing.png", "Tokens routed to each expert, per MoE layer", draw),),
)
