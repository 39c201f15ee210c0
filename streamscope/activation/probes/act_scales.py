"""SmoothQuant's activation scales: per input channel of every Linear, the largest |x| over every token of every
sample (``act_scales.pt``: ``{module name: float32 tensor [in_features]}``, as SmoothQuant's
``generate_act_scales.py`` saves them; ``torch.load(..., weights_only=True)``)."""

from __future__ import annotations

from streamscope.activation.probes.base import Probe
from streamscope.activation.stats import ChannelStats


class State(ChannelStats):
    def __init__(self):
        super().__init__(sum2=False)

    def reduce(self):
        return self.absmax


def files(reduced: dict, run) -> dict:
    import torch

    from streamscope.results import write_atomic

    scales = {n: a.to("cpu", torch.float32).contiguous() for n, a in reduced.items() if a is not None}
    write_atomic(run.out / "act_scales.pt", lambda p: torch.save(scales, p))
    return {"act_scales.pt": None}


def restore(vis: dict, data: dict) -> State:
    s = State()
    s.merge(ChannelStats.restore(data))
    return s


PROBE = Probe(
    name="act_scales",
    help="SmoothQuant act scales: per input channel of every Linear, max |x| (act_scales.pt)",
    watches=lambda watch, vis: watch.linear(),
    new=lambda vis, name, scratch: State(),
    restore=restore,
    files=files,
)
