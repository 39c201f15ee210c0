"""Layer importance for pruning, from the decoder layers' inputs and outputs (``activations.json["importance"]``).

- Block influence (ShortGPT, Men et al. 2024): per decoder layer l, ``BI_l = 1 - mean over every token of
  cos(x_l, y_l)``, x_l the layer's input hidden state and y_l its output.
- Angular distance of spans (Gromov et al. 2024, "The Unreasonable Ineffectiveness of the Deeper Layers"):
  ``d(l, n) = arccos(cos(h_l, h_{l+n})) / pi`` on the last token of each sample, averaged over samples, h_l the
  input of layer l and h_L the output of the last layer (before the final norm). Only each sample's last token
  is kept per layer: samples x layers x hidden.
- The pruning plan: for each span length n, the start l* with the smallest d(l, n) (the block of n layers whose
  removal changes the representation least).
"""

from __future__ import annotations

import math
import re

import numpy as np

from streamscope.activation.probes.base import Probe


class State:
    def __init__(self):
        self.cos: list[float] = []  # per call: the sum over its tokens of cos(x, y), summed exactly at the end
        self.tokens = 0
        self.last_in: dict[int, np.ndarray] = {}  # sample -> its last token's input hidden state
        self.last_out: dict[int, np.ndarray] = {}

    def update(self, call) -> None:
        import torch

        x, y = call.x_in, call.x_out
        if x is None or y is None or x.shape != y.shape or not x.is_floating_point():
            return
        cos = torch.nn.functional.cosine_similarity(x.detach().float(), y.detach().float(), dim=-1)  # (batch, tokens)
        self.cos.append(float(cos.double().sum()))
        self.tokens += cos.numel()
        for (s, xs), (_, ys) in zip(call.samples(x), call.samples(y)):
            # copies: the forward writes each layer's output over the hidden states its input is a view of
            self.last_in[s] = xs.reshape(-1, xs.shape[-1])[-1].detach().float().cpu().numpy().copy()
            self.last_out[s] = ys.reshape(-1, ys.shape[-1])[-1].detach().float().cpu().numpy().copy()

    def merge(self, other: "State") -> "State":
        self.cos += other.cos
        self.tokens += other.tokens
        self.last_in.update(other.last_in)
        self.last_out.update(other.last_out)
        return self

    def dump(self) -> dict:
        samples = sorted(self.last_in)
        width = next(iter(self.last_in.values())).shape[0] if samples else 0
        stack = lambda d: np.stack([d[s] for s in samples]) if samples else np.zeros((0, width), np.float32)  # noqa: E731
        return {"cos": np.array(self.cos, np.float64), "tokens": np.int64(self.tokens), "samples": np.array(samples, np.int64),
                "last_in": stack(self.last_in), "last_out": stack(self.last_out)}  # fmt: skip

    def reduce(self) -> dict:
        return {"block_influence": 1.0 - math.fsum(self.cos) / self.tokens if self.tokens else float("nan"), **self.dump()}


def restore(vis: dict, data: dict) -> State:
    s = State()
    s.cos, s.tokens = data["cos"].tolist(), int(data["tokens"])
    for i, sample in enumerate(data["samples"].tolist()):
        s.last_in[sample], s.last_out[sample] = data["last_in"][i], data["last_out"][i]
    return s


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over samples (rows) of arccos(cos(a, b)) / pi."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-300)
    return float(np.mean(np.arccos(np.clip(cos, -1.0, 1.0)) / np.pi))


def record(reduced: dict, run) -> dict:
    """``{"block_influence": [...], "angular_distance": {"n": [d(0, n), ...]}, "prune_plan": {"n": {"start", "distance"}}}``
    in layer order; empty where no decoder layer was watched."""
    layers = sorted(((int(re.search(r"(\d+)$", n).group(1)), r) for n, r in reduced.items() if r and re.search(r"(\d+)$", n)))
    if not layers:
        return {}
    h = [layers[0][1]["last_in"]] + [r["last_out"] for _, r in layers]  # h_0 .. h_L (the last before the final norm)
    n_layers = len(layers)
    distance, plan = {}, {}
    for n in range(1, n_layers):
        d = [_angle(h[start], h[start + n]) for start in range(n_layers - n + 1)]
        best = int(np.argmin(d))
        distance[str(n)], plan[str(n)] = d, {"start": best, "distance": d[best]}
    return {"block_influence": [r["block_influence"] for _, r in layers], "angular_distance": distance, "prune_plan": plan}


def table(reduced: dict, run) -> list[dict]:
    return [{"module": n, "direction": "output", "block_influence": r["block_influence"]} for n, r in reduced.items() if r]


def draw_block_influence(results):
    from streamscope.plotstyle import figure

    bi = ((results.activations or {}).get("importance") or {}).get("block_influence")
    if not bi:
        return None
    fig = figure(7, 3.2)
    ax = fig.add_subplot()
    ax.bar(range(len(bi)), bi, color="#1f77b4")
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("1 - mean cos(input, output)")
    ax.set_title("Block influence (lowest: the layer changes its input least)")
    return fig


def draw_angular_distance(results):
    from streamscope.plotstyle import figure

    imp = (results.activations or {}).get("importance") or {}
    dist, plan = imp.get("angular_distance") or {}, imp.get("prune_plan") or {}
    if not dist:
        return None
    n_max = max(int(n) for n in dist)
    starts = len(dist["1"])
    grid = np.full((n_max, starts), np.nan)
    for n, row in dist.items():
        grid[int(n) - 1, : len(row)] = row
    fig = figure(7, 4)
    ax = fig.add_subplot()
    im = ax.imshow(grid, aspect="auto", origin="lower", cmap="viridis", extent=(-0.5, starts - 0.5, 0.5, n_max + 0.5))
    for n, p in plan.items():
        ax.plot(p["start"], int(n), marker="s", mfc="none", mec="#d62728", ms=8)
    ax.set_xlabel("first layer of the block (l)")
    ax.set_ylabel("layers in the block (n)")
    ax.set_title("Angular distance d(l, n) of the last token; red: the block to prune for each n")
    fig.colorbar(im, ax=ax)
    return fig


PROBE = Probe(
    name="importance",
    help="layer importance for pruning: block influence, angular distance of spans, the block to prune per span length",
    watches=lambda watch, vis: watch.matching([watch.layer_pattern], within_selection=False),
    new=lambda vis, name, scratch: State(),
    restore=restore,
    record=record,
    table=table,
    figures=(("block_influence.png", "Block influence per decoder layer", draw_block_influence),
             ("angular_distance.png", "Angular distance of layer spans, and the block to prune", draw_angular_distance)),
)  # fmt: skip
