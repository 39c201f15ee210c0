"""Weights of one part of the model at a time, read from the original shards and freed after use.

``WeightLoader.plan`` assigns every checkpoint tensor to a part: ``"layer N"`` for the N-th decoder layer, or
``"rest"`` (embeddings, final norm, head). Checkpoint names become model names through transformers' own
conversion rules where the installed version has them (renamed modules, fused MoE experts, base-model
prefixes), so each family loads exactly as ``from_pretrained`` would load it.

A decoder layer goes in with ``load_part``: tensors that need no more than a dtype cast are read with
``pread`` a few MiB at a time and converted straight into their parameters, whose storage is reused from the
layer freed before (``free`` gives it back), so no stored copy of the layer is ever held whole and no fresh
pages are touched after the first layer; tensors that transformers converts (fused MoE experts) are read whole
(``fetch_names``) and go through its loader (``load``). ``advise`` asks the operating system to read a part's
byte ranges into the page cache and may run on a helper thread while the previous layer computes: the read
ahead costs no process memory. ``free_names`` releases tensors outside the layers. Every byte of the
checkpoint is read once per run (``bytes_read``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from streamscope.errors import CheckpointError


@dataclass
class WeightLoader:
    model: object
    index: object  # io.checkpoint.CheckpointIndex
    layers_name: str
    n_layers: int
    dtype: object  # compute dtype
    parts: dict[str, list[str]] = field(default_factory=dict)  # part -> checkpoint tensor names
    bytes_read: int = 0
    _mapping: list | None = None
    _spare: dict = field(default_factory=dict)  # (shape, dtype) -> parameter storage given back by ``free``
    _owned: dict = field(default_factory=dict)  # data_ptr -> storage this loader made for a parameter
    _staging: object = None  # stored values on their way into a parameter

    def plan(self) -> None:
        """Assign every checkpoint tensor to a part; tensors the model has no place for are left out.

        Raises:
            ConfigMismatch: a tensor's shape is not its parameter's (``config.json`` does not describe these
                weights: another ``hidden_size``, ``intermediate_size``, ...).
            CheckpointError: a layer has no weights.
        """
        targets = self._target_names()
        prefix = re.compile(rf"^{re.escape(self.layers_name)}\.(\d+)\.")
        meta = self.model.state_dict()
        params = set(meta.keys())
        converted = getattr(self, "_converted", set())
        order = {k: i for i, k in enumerate(meta)}
        wrong = [(order[t], n, t) for n, t in targets.items()
                 if t in meta and n not in converted and tuple(self.index.tensors[n].shape) != tuple(meta[t].shape)]  # fmt: skip
        if wrong:
            _, name, target = min(wrong)
            self._mismatch([name], target, self.index.tensors[name].shape, tuple(meta[target].shape), len(wrong) - 1)
        for name, target in targets.items():
            if target is None:
                continue
            m = prefix.match(target)
            part = f"layer {int(m.group(1))}" if m and int(m.group(1)) < self.n_layers else "rest"
            if part == "rest" and target not in params and not any(p.startswith(target) for p in params):
                continue  # e.g. a vision tower's or an MTP head's weights: no module here to take them
            self.parts.setdefault(part, []).append(name)
        for i in range(self.n_layers):
            if f"layer {i}" not in self.parts:
                raise CheckpointError(f"{self.index.root}: no weights found for {self.layers_name}.{i}; "
                                      "the checkpoint's tensor names do not match the model built from config.json")  # fmt: skip

    def _mismatch(self, names: list[str], target: str, stored, expected, more: int = 0) -> None:
        from streamscope.activation.skeleton import ConfigMismatch, config_values

        shard = self.index.tensors[names[0]].shard
        tensors = ", ".join(repr(n) for n in names[:2]) + (f" and {len(names) - 2} more" if len(names) > 2 else "")
        what = f"tensor {tensors} has shape" if len(names) == 1 else f"tensors {tensors} make shape"
        differing = [e for s_, e in zip(stored, expected) if s_ != e] if len(stored) == len(expected) else list(expected)
        raise ConfigMismatch(f"{shard}: {what} {list(stored)}, but the model built from {self.index.root / 'config.json'} expects "
                             f"{list(expected)} for {target}{config_values(self.index.text_config(), differing)}"
                             + (f" ({more} more tensor{'s differ' if more > 1 else ' differs'})" if more else ""))  # fmt: skip

    def fetch_names(self, names: list[str]) -> dict:
        """These checkpoint tensors as stored (a fresh tensor each; a decoded format's float32), read with ``pread``."""
        from streamscope.io.reader import read_rows
        from streamscope.io.tensor import whole

        out = {}
        for name in names:
            info = self.index.tensors[name]
            out[name] = read_rows(info, whole(info), dtype=None).view(info.shape)
            self.bytes_read += info.nbytes
        return out

    def load(self, tensors: dict) -> None:
        """Put fetched tensors into the model, converted as transformers converts them, in the compute dtype.

        One module at a time (the tensors of one target module together: a fused MoE target takes all its
        experts), each stored tensor dropped from ``tensors`` once converted, so a layer's stored bytes and
        its converted copy are not held whole at once.
        """
        if not tensors:
            return
        import torch

        targets = self._target_names()
        groups: dict[str, list[str]] = {}
        for name in list(tensors):
            groups.setdefault(targets[name].rsplit(".", 1)[0], []).append(name)
        direct = self._direct_targets()
        for key in [g for g, names in groups.items() if all(n in direct for n in names)]:
            for name in groups.pop(key):
                module, attr = direct[name]
                t = tensors.pop(name)
                if t.is_floating_point() and t.dtype != self.dtype:
                    t = t.to(self.dtype)
                module._parameters[attr] = torch.nn.Parameter(t, requires_grad=False)
        if not groups:
            return
        if self._mapping is not None:
            from transformers.core_model_loading import convert_and_load_state_dict_in_model
            from transformers.modeling_utils import LoadStateDictConfig

            config = LoadStateDictConfig(dtype=self.dtype, weight_mapping=self._mapping)
            for names in groups.values():
                result = convert_and_load_state_dict_in_model(self.model, {n: tensors.pop(n) for n in names}, config)
                self._check_loaded(result[0] if isinstance(result, tuple) else result, names)
            return
        from accelerate.utils import set_module_tensor_to_device

        for names in groups.values():
            for name in names:
                info = self.index.tensors[name]
                try:
                    set_module_tensor_to_device(self.model, targets[name], "cpu", value=tensors.pop(name), dtype=self.dtype)
                except ValueError as e:  # accelerate: a value of another shape than the parameter
                    from streamscope.activation.skeleton import ConfigMismatch

                    raise ConfigMismatch(f"{info.shard}: tensor {name!r} of shape {list(info.shape)} does not fit {targets[name]} "
                                         f"({str(e).splitlines()[0][:200]}); config.json does not describe these weights") from e  # fmt: skip

    def _check_loaded(self, info, names: list[str]) -> None:
        """transformers' loader reports a converted tensor of the wrong shape (and a failed conversion) instead
        of raising, and leaves the parameter unloaded; that is an error here."""
        mismatched = sorted(getattr(info, "mismatched_keys", None) or [], key=str)
        if mismatched:
            target, stored, expected = mismatched[0]
            targets = self._target_names()
            self._mismatch([n for n in names if targets.get(n) == target] or names, target, tuple(stored), tuple(expected), len(mismatched) - 1)
        errors = getattr(info, "conversion_errors", None) or {}
        if errors:
            target, message = next(iter(errors.items()))
            raise CheckpointError(f"{self.index.tensors[names[0]].shard}: converting tensors for {target} failed "
                                  f"({str(message).splitlines()[0][:200]})")  # fmt: skip

    def _direct_targets(self) -> dict:
        """Checkpoint name -> (module, parameter name) for tensors that need no more than a dtype cast: no
        transformers converter applies, the target is a parameter of that very shape and not tied to another.
        These are set directly: transformers' loader spends milliseconds of bookkeeping per call, a large share
        of the loading time (benchmarks/README.md)."""
        if hasattr(self, "_direct"):
            return self._direct
        targets = self._target_names()
        converted = getattr(self, "_converted", set())
        seen: dict[int, int] = {}
        for _, p in self.model.named_parameters(remove_duplicate=False):
            seen[id(p)] = seen.get(id(p), 0) + 1
        modules = dict(self.model.named_modules())
        self._direct = {}
        for name, target in targets.items():
            if target is None or name in converted or "." not in target:
                continue
            owner, attr = target.rsplit(".", 1)
            module = modules.get(owner)
            p = module._parameters.get(attr) if module is not None else None
            info = self.index.tensors[name]
            if p is not None and seen.get(id(p)) == 1 and tuple(p.shape) == tuple(info.shape):
                self._direct[name] = (module, attr)
        return self._direct

    def advise(self, names: list[str]) -> None:
        """Have the operating system read these tensors' bytes into the page cache (no process memory)."""
        from streamscope.io.reader import prefetch

        for name in names:
            prefetch(self.index.tensors[name], STAGING_BYTES)

    def load_part(self, part: str) -> None:
        """Read and load every tensor of a part (see the module docstring)."""
        import torch

        names = self.parts.get(part, [])
        direct = self._direct_targets()
        for name in names:
            if name not in direct:
                continue
            info = self.index.tensors[name]
            module, attr = direct[name]
            dtype = self.dtype if info.torch_dtype.is_floating_point else info.torch_dtype
            t = self._storage(tuple(info.shape), dtype)
            self._read_into(info, t)
            module._parameters[attr] = torch.nn.Parameter(t, requires_grad=False)
        self._spare.clear()  # storage of shapes this part did not take
        others = [n for n in names if n not in direct]
        if others:
            self.load(self.fetch_names(others))

    def _storage(self, shape: tuple, dtype) -> object:
        import torch

        spare = self._spare.get((shape, dtype))
        t = spare.pop() if spare else torch.empty(shape, dtype=dtype)
        self._owned[t.data_ptr()] = t
        return t

    def _read_into(self, info, out) -> None:
        """Read a stored tensor into ``out`` (its shape, the compute dtype), converting a few MiB at a time."""
        from streamscope.io.reader import read_into

        read_into(info, out, self._stage, STAGING_BYTES)
        self.bytes_read += info.nbytes

    def _stage(self, dtype, n: int):
        """The staging buffer of stored values (one, of the last stored dtype asked for)."""
        import torch

        if self._staging is None or self._staging.dtype != dtype or self._staging.numel() < n:
            self._staging = torch.empty(n, dtype=dtype)
        return self._staging

    def free(self, module) -> None:
        """Release a module's parameters (back to the meta device; storage this loader made is kept for the
        next part's parameters of the same shape); buffers stay."""
        for sub in module.modules():
            for p in sub._parameters.values():
                t = self._owned.pop(p.data_ptr(), None) if p is not None and p.device.type == "cpu" else None
                if t is not None:
                    self._spare.setdefault((tuple(t.shape), t.dtype), []).append(t)
        _to_meta(module)

    def release(self) -> None:
        """Drop the storage kept for reuse (after the last layer)."""
        self._spare.clear()
        self._staging = None

    def moved(self) -> None:
        """The loaded part's parameters were copied to an accelerator: their host storage is free for reuse."""
        for t in self._owned.values():
            self._spare.setdefault((tuple(t.shape), t.dtype), []).append(t)
        self._owned.clear()

    def free_names(self, names: list[str]) -> None:
        """Release the parameters these checkpoint tensors were loaded into, wherever they are shared (tied)."""
        import torch

        params = dict(self.model.named_parameters(remove_duplicate=False))
        targets = self._target_names()
        doomed = {id(params[targets[n]]) for n in names if targets.get(n) in params}
        for sub in self.model.modules():
            for key, p in list(sub._parameters.items()):
                if p is not None and id(p) in doomed and p.device.type != "meta":
                    sub._parameters[key] = torch.nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=False)

    def _target_names(self) -> dict[str, str | None]:
        """Checkpoint name -> model parameter name (None when the model has no such parameter)."""
        if hasattr(self, "_targets"):
            return self._targets
        meta = self.model.state_dict()
        base = getattr(self.model, "base_model_prefix", "") or ""
        try:
            from transformers.conversion_mapping import get_model_conversion_mapping
            from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

            self._mapping = get_model_conversion_mapping(self.model)
            renamings = [w for w in self._mapping if isinstance(w, WeightRenaming)]
            converters = [w for w in self._mapping if isinstance(w, WeightConverter)]
            self._converted = set()

            def rename(k: str) -> str:
                target, converter = rename_source_key(k, renamings, converters, base or None, meta)
                if converter is not None:
                    self._converted.add(k)
                return target
        except ImportError:  # transformers 4.x: names match up to the base-model prefix
            self._mapping = None
            rename = lambda k: _with_prefix(k, base, meta)  # noqa: E731
        self._targets = {}
        for name in self.index.tensors:
            target = rename(name)
            self._targets[name] = target if _under(target, meta) else None
        return self._targets


#: Bytes of stored values read and converted at a time by ``load_part``, the one staging buffer's size: larger
#: buffers read no faster and stay resident through the run (benchmarks/README.md).
STAGING_BYTES = 4 << 20


def _under(target: str, meta: dict) -> bool:
    """A fused target (``...experts.gate_up_proj``) is a parameter name itself; a module prefix owns params."""
    return any(k == target or k.startswith(target + ".") for k in meta)


def _with_prefix(key: str, base: str, meta: dict) -> str:
    if key in meta or not base:
        return key
    if key.startswith(base + ".") and key[len(base) + 1 :] in meta:
        return key[len(base) + 1 :]
    if f"{base}.{key}" in meta:
        return f"{base}.{key}"
    return key


def _to_meta(module) -> None:
    import torch

    for sub in module.modules():
        for name, p in list(sub._parameters.items()):
            if p is not None and p.device.type != "meta":
                sub._parameters[name] = torch.nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=False)
