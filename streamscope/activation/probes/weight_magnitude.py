"""Weight magnitude: the magnitude statistics of the watched modules' weights, taken while each decoder layer's
weights are loaded (``activations.json["weights"]``, the seed's ``magnitude_weight`` plot)."""

from __future__ import annotations

from streamscope.activation.probes.base import Probe
from streamscope.activation.stats import Magnitude


class State:
    def __init__(self):
        self.result: dict | None = None

    def update(self, call) -> None:
        pass  # weights, not calls

    def weights(self, module) -> None:
        import torch

        w = getattr(module, "weight", None)
        if isinstance(w, torch.Tensor) and w.device.type != "meta":
            m = Magnitude(None)
            m.add(w)
            self.result = m.result()

    def merge(self, other: "State") -> "State":
        self.result = self.result or other.result  # the same weights on every worker
        return self

    def dump(self) -> dict:
        import json

        import numpy as np

        return {"json": np.frombuffer(json.dumps(self.result).encode(), np.uint8)}

    def reduce(self) -> dict | None:
        return self.result


def restore(vis: dict, data: dict) -> State:
    import json

    s = State()
    s.result = json.loads(bytes(data["json"]).decode())
    return s


def watches(watch, vis: dict) -> list[str]:
    from streamscope.activation.probes.magnitude import DEFAULT_PATTERNS

    patterns = vis["magnitude"]["patterns"]
    names = watch.matching(patterns)
    if not names and patterns == DEFAULT_PATTERNS:
        names = watch.in_layers(watch.linear())
    return names


PROBE = Probe(
    name="weight_magnitude",
    key="weights",
    help="magnitude statistics of the watched modules' weights (visualization.enabled.magnitude_weight)",
    enabled={"magnitude_weight": False},
    active=lambda vis: bool(vis["enabled"]["magnitude_weight"]),
    watches=watches,
    new=lambda vis, name, scratch: State(),
    restore=restore,
    record=lambda reduced, run: {n: r for n, r in reduced.items() if r},
    weights=True,
)
