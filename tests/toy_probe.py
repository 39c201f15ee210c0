"""A toy activation probe added through the registry alone: this file and one ``register`` line (see
test_activation_probes). Per decoder layer: the mean L2 norm of its output tokens, times ``token_norm.scale``."""

from __future__ import annotations

import numpy as np

from streamscope.activation.probes import Probe


class State:
    def __init__(self, scale: float):
        self.scale, self.sum, self.tokens = scale, 0.0, 0

    def update(self, call) -> None:
        x = call.x_out.detach().float()
        norms = x.reshape(-1, x.shape[-1]).norm(dim=-1)  # (tokens,)
        self.sum += float(norms.double().sum())
        self.tokens += norms.numel()

    def merge(self, other: "State") -> "State":
        self.sum += other.sum
        self.tokens += other.tokens
        return self

    def dump(self) -> dict:
        return {"sum": np.float64(self.sum), "tokens": np.int64(self.tokens)}

    def reduce(self) -> dict:
        return {"mean_norm": self.scale * self.sum / self.tokens if self.tokens else float("nan"), "tokens": self.tokens}


def restore(vis: dict, data: dict) -> State:
    s = State(vis["token_norm"]["scale"])
    s.sum, s.tokens = float(data["sum"]), int(data["tokens"])
    return s


def draw(results):
    from streamscope.plotstyle import figure

    records = (results.activations or {}).get("token_norm") or {}
    if not records:
        return None
    fig = figure(6, 3)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(range(len(records)), [r["mean_norm"] for r in records.values()])
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("mean token norm")
    return fig


TOY = Probe(
    name="token_norm",
    help="mean L2 norm of each decoder layer's output tokens, times token_norm.scale",
    section="token_norm",
    options={"scale": 1.0},
    enabled={"token_norm": True},
    active=lambda vis: bool(vis["enabled"]["token_norm"]),
    watches=lambda watch, vis: watch.matching([watch.layer_pattern], within_selection=False),
    new=lambda vis, name, scratch: State(vis["token_norm"]["scale"]),
    restore=restore,
    record=lambda reduced, run: reduced,
    table=lambda reduced, run: [{"module": n, "direction": "output", "token_norm": r["mean_norm"]} for n, r in reduced.items()],
    figures=(("token_norm.png", "Mean token norm per decoder layer", draw),),
)
