"""Distribution: a count per bfloat16 bit pattern of each watched module's input (or output), giving exact
quantiles to bf16 precision and a histogram (the seed's distribution plot; ``activations.json["distribution"]``)."""

from __future__ import annotations

from streamscope.activation.probes.base import Probe
from streamscope.activation.stats import Distribution


def direction(vis: dict) -> str:
    return "input" if vis["distribution"]["is_input"] else "output"


class State(Distribution):
    def __init__(self, direction: str = "input"):
        super().__init__()
        self.direction = direction

    def update(self, call) -> None:
        x = call.x_in if self.direction == "input" else call.x_out
        if x is not None and x.is_floating_point():
            self.add(x)

    def reduce(self) -> dict:
        return self.result()


def restore(vis: dict, data: dict) -> State:
    s = State(direction(vis))
    s.merge(Distribution.restore(data))
    return s


def check(vis: dict, fail) -> None:
    from streamscope.activation.config import check_patterns

    check_patterns(fail, "visualization.distribution.patterns", vis["distribution"]["patterns"])
    kinds = vis["distribution"]["plot_types"]
    if not isinstance(kinds, list) or not kinds or not set(kinds) <= set(PLOT_TYPES):
        fail("visualization.distribution.plot_types", f"must be a non-empty list of {', '.join(PLOT_TYPES)}; got {kinds!r}")


PLOT_TYPES = ("boxplot", "histogram")  # the panels of distribution.png


PROBE = Probe(
    name="distribution",
    help="quantiles and histogram of the watched modules' inputs (distribution.is_input) or outputs",
    section="distribution",
    options={"patterns": [r"mlp\.down_proj"], "plot_types": ["boxplot", "histogram"], "is_input": True},
    enabled={"distribution": False},
    active=lambda vis: bool(vis["enabled"]["distribution"]),
    watches=lambda watch, vis: watch.matching(vis["distribution"]["patterns"]),
    new=lambda vis, name, scratch: State(direction(vis)),
    restore=restore,
    check=check,
    record=lambda reduced, run: {"direction": direction(run.vis), "modules": reduced},
)
