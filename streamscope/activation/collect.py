"""Which modules are watched, and the forward hooks that feed their statistics (``stats``) as samples pass.

``Selection.of(names, modules, vis)`` applies the config's patterns to the model's module names;
``Collector`` holds every accumulator, registers one hook per watched module, knows which sample is passing
(pre-hooks on the model and on each decoder layer) and turns the accumulators into the JSON records.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from streamscope.activation import stats

DIRECTIONS = ("input", "output")


@dataclass
class Selection:
    magnitude: list[str]  # magnitude.patterns (within layer_selection)
    outliers: list[str]  # outlier.pattern
    distribution: list[str]  # distribution.patterns (within layer_selection), when enabled
    heatmap: list[str]  # heatmap_3d.pattern, when enabled
    linear: list[str]  # every Linear / Conv1D: act scales and imatrix

    @classmethod
    def of(cls, names: list[str], modules: dict, vis: dict) -> "Selection":
        enabled, chosen = vis["enabled"], vis["layer_selection"]["patterns"]

        def selected(name: str, pats: list[str]) -> bool:
            return any(re.search(p, name) for p in pats) and (not chosen or any(re.search(p, name) for p in chosen))

        return cls(
            magnitude=[n for n in names if selected(n, vis["magnitude"]["patterns"])],
            outliers=[n for n in names if re.search(vis["outlier"]["pattern"], n)],
            distribution=[n for n in names if enabled["distribution"] and selected(n, vis["distribution"]["patterns"])],
            heatmap=[n for n in names if enabled["heatmap_3d"] and re.search(vis["heatmap_3d"]["pattern"], n)],
            linear=[n for n in names if is_linear(modules[n])],
        )


class Collector:
    def __init__(self, selection: Selection, vis: dict, n_samples: int, heat_spill: Path | None = None):
        """``heat_spill``: a folder where each heatmap is written as it is made (``.npy``; ``heatmaps`` then holds
        paths): one per selected layer, seq_len x hidden each (32 MiB for 2048 tokens of a 72B model), so
        holding them all would grow with the model."""
        self.sel = selection
        self.heat_spill = heat_spill
        watched = dict.fromkeys(selection.magnitude + selection.outliers + selection.distribution + selection.heatmap)
        self.magnitude = {(n, d): stats.Magnitude(vis["magnitude"]["reduce_dim"]) for n in watched for d in DIRECTIONS}
        self.outliers = {n: stats.Outliers(float(vis["outlier"]["threshold"])) for n in selection.outliers}
        self.dist_dir = "input" if vis["distribution"]["is_input"] else "output"
        self.distribution = {n: stats.Distribution() for n in selection.distribution}
        self.heat_dir = "input" if vis["heatmap_3d"]["is_input"] else "output"
        self.heat_sample = int(vis["heatmap_3d"]["sample_idx"])
        self.heatmaps: dict = {}
        self.channels = {n: stats.ChannelStats() for n in selection.linear}
        self.weights: dict[str, dict] = {}
        self.want_weights = bool(vis["enabled"]["magnitude_weight"])
        self.n = n_samples
        self.sample = 0  # the first sample of the batch passing
        self.batch = 1  # samples in it
        self._seen: dict[int, int] = {}
        self._open: str | None = None  # the prefix of the decoder layer whose samples are passing
        self._handles: list = []

    def attach(self, model, layers, modules: dict) -> None:
        """Hooks on every watched module; sample counters on the model and each decoder layer (the capture
        and the tail call the model once per batch of samples, in order; the layer loop calls each layer so)."""
        for n in dict.fromkeys([n for n, _ in self.magnitude] + self.sel.outliers + self.sel.distribution + self.sel.heatmap + self.sel.linear):
            self._handles.append(modules[n].register_forward_hook(self._hook(n), with_kwargs=True))
        self._handles.append(model.register_forward_pre_hook(self._counter(-1), with_kwargs=True))
        self._handles += [layer.register_forward_pre_hook(self._counter(i), with_kwargs=True) for i, layer in enumerate(layers)]

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def on_layer(self, prefix: str, modules: dict) -> None:
        """Weight magnitudes of the watched modules under ``prefix``, while their weights are loaded; the
        previous layer's samples have all passed: its statistics are reduced to their results."""
        import torch

        if self._open is not None:
            self.close(self._open)
        self._open = prefix
        if not self.want_weights:
            return
        for n in self.sel.magnitude:
            w = getattr(modules[n], "weight", None)
            if n.startswith(prefix) and isinstance(w, torch.Tensor) and w.device.type != "meta":
                m = stats.Magnitude(None)
                m.add(w)
                self.weights[n] = m.result()

    def close(self, prefix: str) -> None:
        """Reduce the statistics of the decoder layer ``prefix`` (``model.layers.3.``) and its modules to
        their results: held to the end, their counters would grow with the number of layers."""
        layer = prefix[:-1]
        for table in (self.magnitude, self.distribution):
            for key, stat in table.items():
                name = key[0] if isinstance(key, tuple) else key
                if (name == layer or name.startswith(prefix)) and not isinstance(stat, stats.Done):
                    table[key] = stats.Done(stat)
        for name, channel in self.channels.items():
            if name.startswith(prefix):
                channel.close()

    def _counter(self, i: int):
        import torch

        def hook(module, args, kwargs):
            x = next((v for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)), None)
            b = int(x.shape[0]) if x is not None and x.dim() >= 2 else 1
            s = self._seen.get(i, 0)
            self.sample, self.batch = s % self.n, b  # the capture passes every sample through layer 0's hooks first
            self._seen[i] = s + b

        return hook

    def _samples(self, x):
        """``(sample index, that sample's part of x)`` for each sample of the batch passing."""
        if self.batch > 1 and x.dim() >= 2 and x.shape[0] == self.batch:
            return [(self.sample + b, x[b]) for b in range(self.batch)]
        return [(self.sample, x)]

    def _hook(self, name: str):
        import torch

        def hook(module, args, kwargs, output):
            x_in = args[0] if args else next((v for v in kwargs.values() if isinstance(v, torch.Tensor)), None)
            x_out = output[0] if isinstance(output, tuple) else getattr(output, "last_hidden_state", output)
            for direction, x in (("input", x_in), ("output", x_out)):
                if not isinstance(x, torch.Tensor) or not x.is_floating_point():
                    continue
                if (name, direction) in self.magnitude:
                    self.magnitude[(name, direction)].add(x)
                if direction == "output" and name in self.outliers:
                    for s, xs in self._samples(x):
                        self.outliers[name].add(xs, s)
                if direction == self.dist_dir and name in self.distribution:
                    self.distribution[name].add(x)
                if direction == self.heat_dir and name in self.sel.heatmap and self.sample <= self.heat_sample < self.sample + self.batch:
                    xs = dict(self._samples(x)).get(self.heat_sample, x)
                    heat = xs.detach().abs().reshape(-1, x.shape[-1]).to("cpu", torch.float16)
                    self._keep_heatmap(name, heat.numpy())
            if name in self.channels and isinstance(x_in, torch.Tensor) and x_in.is_floating_point():
                self.channels[name].add(x_in)

        return hook

    def _keep_heatmap(self, name: str, heat) -> None:
        if self.heat_spill is None:
            self.heatmaps[name] = heat
            return
        import numpy as np

        self.heat_spill.mkdir(parents=True, exist_ok=True)
        path = self.heatmaps.get(name) or self.heat_spill / f"m{len(self.heatmaps):04d}.npy"
        np.save(path, heat)
        self.heatmaps[name] = path

    def records(self, ids, decode=None) -> dict:
        """``modules``, ``outliers`` (per module, with token ids and text, and the model's massive channels),
        ``distribution`` and ``weights`` of ``activations.json``."""
        modules: dict[str, dict] = {}
        for (n, direction), m in self.magnitude.items():
            if m.count:
                modules.setdefault(n, {})[direction] = m.result()
        layers, massive = {}, {}
        for n, o in self.outliers.items():
            r = o.result()
            r["token_ids"] = [int(ids[s, t]) for s, t in o.positions]
            if decode is not None:
                r["tokens"] = [decode(i) for i in r["token_ids"]]
            for c, k in r["channels"].items():
                massive[c] = massive.get(c, 0) + k
            layers[n] = r
        return {
            "modules": modules,
            "weights": self.weights,
            "outliers": {"layers": layers, "massive_channels": dict(sorted(massive.items(), key=lambda kv: -kv[1])[:20])},
            "distribution": {"direction": self.dist_dir, "modules": {n: d.result() for n, d in self.distribution.items()}},
        }


def is_linear(module) -> bool:
    import torch

    return isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"
