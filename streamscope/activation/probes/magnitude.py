"""Magnitude: top-1/2/3, median, min and mean of |x| of each watched module's input and output (the seed's
magnitude plots; ``activations.json["modules"]`` and the rows of ``activations.csv``)."""

from __future__ import annotations

from streamscope.activation.probes.base import Probe
from streamscope.activation.stats import Magnitude

DIRECTIONS = ("input", "output")
DEFAULT_PATTERNS = [r"mlp\.down_proj", r"mlp\.up_proj", r"self_attn\.q_proj", r"self_attn\.o_proj"]
COLUMNS = ("top1", "top2", "top3", "median", "min", "mean_abs", "count")


class State:
    def __init__(self, reduce_dim: int | None):
        self.dirs = {d: Magnitude(reduce_dim, inputs=d == "input") for d in DIRECTIONS}

    def update(self, call) -> None:
        for direction, x in (("input", call.x_in), ("output", call.x_out)):
            if x is not None and x.is_floating_point():
                self.dirs[direction].add(x)

    def merge(self, other: "State") -> "State":
        for d in DIRECTIONS:
            self.dirs[d].merge(other.dirs[d])
        return self

    def dump(self) -> dict:
        return {f"{d}/{k}": v for d in DIRECTIONS for k, v in self.dirs[d].dump().items()}

    def reduce(self) -> dict:
        return {d: m.result() for d, m in self.dirs.items() if m.count}


def restore(vis: dict, data: dict) -> State:
    s = State(vis["magnitude"]["reduce_dim"])
    for d in DIRECTIONS:
        s.dirs[d].merge(Magnitude.restore({k.split("/", 1)[1]: v for k, v in data.items() if k.startswith(d + "/")}, vis["magnitude"]["reduce_dim"]))
    return s


def watches(watch, vis: dict) -> list[str]:
    """``magnitude.patterns`` (the seed's Llama names by default; where those match nothing, every Linear inside
    the decoder layers), and the modules whose outliers are counted (the decoder layers by default)."""
    patterns = vis["magnitude"]["patterns"]
    names = watch.matching(patterns)
    if not names and patterns == DEFAULT_PATTERNS:
        names = watch.in_layers(watch.linear())
    from streamscope.activation.probes.outliers import watched_layers

    return list(dict.fromkeys(names + watched_layers(watch, vis)))


def record(reduced: dict, run) -> dict:
    return {n: r for n, r in reduced.items() if r}


def table(reduced: dict, run) -> list[dict]:
    return [{"module": n, "direction": d, **r} for n, dirs in reduced.items() for d, r in dirs.items()]


def check(vis: dict, fail) -> None:
    from streamscope.activation.config import check_patterns

    if vis["magnitude"]["reduce_dim"] not in (None, -1, -2):
        fail("visualization.magnitude.reduce_dim",
             f"must be null, -1 (per token, over channels) or -2 (per channel, over tokens); got {vis['magnitude']['reduce_dim']!r}")
    check_patterns(fail, "visualization.magnitude.patterns", vis["magnitude"]["patterns"])


PROBE = Probe(
    name="magnitude",
    key="modules",
    help="top-1/2/3, median, min and mean |x| of module inputs and outputs",
    section="magnitude",
    options={"patterns": DEFAULT_PATTERNS, "reduce_dim": None},
    enabled={"magnitude_input": True, "magnitude_output": True},
    watches=watches,
    new=lambda vis, name, scratch: State(vis["magnitude"]["reduce_dim"]),
    restore=restore,
    check=check,
    record=record,
    table=table,
)
