"""The probes' states and the forward hooks that feed them as samples pass (see ``probes`` for what a probe is).

``Collector(probes, vis, watch, n_samples)`` asks each active probe which modules it watches, registers one
hook per watched module, knows which samples are passing (pre-hooks on the model and on each decoder layer),
and keeps one state per probe and module, made at the module's first call. When a decoder layer is done,
``close_layer`` dumps the states of its modules (for the per-layer checkpoint and merging) and reduces them:
held to the end, their counters would grow with the number of layers.
"""

from __future__ import annotations

from pathlib import Path

from streamscope.activation.probes import Call, Probe, Watch


class Collector:
    def __init__(self, probes: list[Probe], vis: dict, watch: Watch, n_samples: int, scratch: Path | None = None, first_sample: int = 0):
        """``scratch``: a folder under the output directory where states too large to hold go (one per probe);
        ``first_sample``: the index of the first of the ``n_samples`` samples (a worker's share)."""
        self.vis = vis
        self.registered = list(probes)  # every probe has its key in activations.json, empty when it did not run
        self.probes = [p for p in probes if p.active(vis)]
        self.watched = {p.name: list(dict.fromkeys(p.watches(watch, vis))) for p in self.probes}
        self.by_module: dict[str, list[Probe]] = {}
        for p in self.probes:
            for n in self.watched[p.name]:
                self.by_module.setdefault(n, []).append(p)
        self.scratch = scratch
        self.states: dict[tuple[str, str], object] = {}  # (probe, module) -> live state
        self.reduced: dict[str, dict[str, object]] = {p.name: {} for p in probes}  # probe -> module -> result
        self.n, self.first = n_samples, first_sample
        self.sample = first_sample  # the first sample of the batch passing
        self.batch = 1  # samples in it
        self._seen: dict[int, int] = {}
        self._handles: list = []

    def attach(self, model, layers, modules: dict) -> None:
        """Hooks on every watched module; sample counters on the model and each decoder layer (the capture
        and the tail call the model once per batch of samples, in order; the layer loop calls each layer so)."""
        for n in self.by_module:
            if any(not p.weights for p in self.by_module[n]):
                self._handles.append(modules[n].register_forward_hook(self._hook(n), with_kwargs=True))
        self._handles.append(model.register_forward_pre_hook(self._counter(-1), with_kwargs=True))
        self._handles += [layer.register_forward_pre_hook(self._counter(i), with_kwargs=True) for i, layer in enumerate(layers)]

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def state(self, probe: Probe, module: str):
        key = (probe.name, module)
        if key not in self.states:
            scratch = self.scratch / probe.name if self.scratch is not None else None
            self.states[key] = probe.new(self.vis, module, scratch)
        return self.states[key]

    def on_weights(self, prefix: str, modules: dict) -> None:
        """The weights of the modules under ``prefix`` (``model.layers.3.``) are loaded: probes that read weights."""
        for n, probes in self.by_module.items():
            if n.startswith(prefix):
                for p in probes:
                    if p.weights:
                        self.state(p, n).weights(modules[n])

    def close_layer(self, prefix: str) -> dict[str, dict[str, dict]]:
        """Every sample has passed the decoder layer ``prefix`` (``model.layers.3.``): its modules' states are
        dumped (returned, ``{probe: {module: arrays}}``) and reduced."""
        from streamscope.activation.stats import forget

        forget()
        layer = prefix[:-1]
        return self._close([k for k in self.states if k[1] == layer or k[1].startswith(prefix)])

    def close_all(self) -> dict[str, dict[str, dict]]:
        """The run is over: the modules outside the decoder layers (embeddings, final norm, head)."""
        return self._close(list(self.states))

    def _close(self, keys: list[tuple[str, str]]) -> dict[str, dict[str, dict]]:
        dumps: dict[str, dict[str, dict]] = {}
        for key in keys:
            state = self.states.pop(key)
            dumps.setdefault(key[0], {})[key[1]] = state.dump()
            self.reduced[key[0]][key[1]] = state.reduce()
        return dumps

    def restore(self, parts: list[dict[str, dict[str, dict]]]) -> None:
        """States saved by ``close_layer`` for the same modules by one or more runs (a resumed run's finished
        layer; each worker's share of the samples): merged, then reduced into the results."""
        probes = {p.name: p for p in self.probes}
        merged: dict[tuple[str, str], object] = {}
        for dumps in parts:
            for name, modules in dumps.items():
                for module, data in modules.items():
                    state = probes[name].restore(self.vis, data)
                    key = (name, module)
                    merged[key] = merged[key].merge(state) if key in merged else state
        for (name, module), state in merged.items():
            self.reduced[name][module] = state.reduce()

    def _counter(self, i: int):
        import torch

        def hook(module, args, kwargs):
            x = next((v for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)), None)
            b = int(x.shape[0]) if x is not None and x.dim() >= 2 else 1
            s = self._seen.get(i, 0)
            self.sample, self.batch = self.first + s % self.n, b  # the capture passes every sample through layer 0's hooks first
            self._seen[i] = s + b

        return hook

    def _hook(self, name: str):
        import torch

        probes = [p for p in self.by_module[name] if not p.weights]

        def hook(module, args, kwargs, output):
            x_in = args[0] if args else next((v for v in kwargs.values() if isinstance(v, torch.Tensor)), None)
            x_out = output[0] if isinstance(output, tuple) else getattr(output, "last_hidden_state", output)
            call = Call(x_in if isinstance(x_in, torch.Tensor) else None, x_out if isinstance(x_out, torch.Tensor) else None,
                        self.sample, self.batch, output, module)  # fmt: skip
            for p in probes:
                self.state(p, name).update(call)

        return hook
