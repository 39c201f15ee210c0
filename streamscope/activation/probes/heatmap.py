"""3-D heatmap: |x| of one sample (``heatmap_3d.sample_idx``) at every token and channel of each watched module
(the seed's ``heatmap_3d`` plot; ``arrays.zarr/activations/heatmap``). Each map (seq_len x hidden, 32 MiB at 2048
tokens of a 72B model) goes to a file under the output directory as it is made, so holding them does not grow
with the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamscope.activation.probes.base import Probe

class State:
    def __init__(self, vis: dict, path: Path | None):
        h = vis["heatmap_3d"]
        self.sample, self.is_input, self.path = int(h["sample_idx"]), bool(h["is_input"]), path
        self.map: np.ndarray | None = None

    def update(self, call) -> None:
        import torch

        x = call.x_in if self.is_input else call.x_out
        if x is None or not x.is_floating_point() or not call.sample <= self.sample < call.sample + call.batch:
            return
        xs = dict(call.samples(x)).get(self.sample, x)
        heat = xs.detach().abs().reshape(-1, x.shape[-1]).to("cpu", torch.float16).numpy()
        if self.path is None:
            self.map = heat
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            np.save(self.path, heat)

    def _held(self) -> np.ndarray | None:
        if self.map is not None:
            return self.map
        return np.load(self.path, mmap_mode="r") if self.path is not None and self.path.is_file() else None

    def merge(self, other: "State") -> "State":
        if self._held() is None and other._held() is not None:  # only the worker holding the sample made one
            self.map = np.asarray(other._held())
        return self

    def dump(self) -> dict:
        held = self._held()
        return {"map": np.asarray(held) if held is not None else np.zeros((0, 0), np.float16)}

    def reduce(self):
        return self.path if self.map is None and self.path is not None and self.path.is_file() else self.map


def arrays(group, reduced: dict, run) -> None:
    maps = [(n, m) for n, m in reduced.items() if m is not None]
    if not maps:
        return
    h = group.require_group("heatmap")
    for i, (name, m) in enumerate(maps):
        data = np.load(m, mmap_mode="r") if isinstance(m, Path) else m  # spilled: read back one at a time
        a = h.create_array(f"m{i:04d}", data=data)
        a.attrs["module"] = name
        del data


def new(vis: dict, name: str, scratch: Path | None) -> State:
    import hashlib

    return State(vis, scratch / f"{hashlib.sha1(name.encode()).hexdigest()[:16]}.npy" if scratch is not None else None)


def restore(vis: dict, data: dict) -> State:
    s = State(vis, None)
    s.map = data["map"] if data["map"].size else None
    return s


def check(vis: dict, fail) -> None:
    from streamscope.activation.config import check_patterns

    h = vis["heatmap_3d"]
    check_patterns(fail, "visualization.heatmap_3d.pattern", [h["pattern"]] if isinstance(h["pattern"], str) else h["pattern"], optional=True)
    if not isinstance(h["sample_idx"], int) or isinstance(h["sample_idx"], bool) or h["sample_idx"] < 0:
        fail("visualization.heatmap_3d.sample_idx", f"must be a sample index (0, 1, ...); got {h['sample_idx']!r}")


PROBE = Probe(
    name="heatmap",
    key="heatmap_3d",
    help="|x| of one sample at every token and channel of the watched modules (arrays.zarr)",
    section="heatmap_3d",
    options={"pattern": None, "sample_idx": 0, "is_input": False, "view_angle": [30, 45]},
    enabled={"heatmap_3d": False},
    active=lambda vis: bool(vis["enabled"]["heatmap_3d"]),
    watches=lambda watch, vis: watch.matching([vis["heatmap_3d"]["pattern"] or watch.layer_pattern], within_selection=False),
    new=new,
    restore=restore,
    check=check,
    arrays=arrays,
)
