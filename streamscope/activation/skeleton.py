"""The model without its weights: built from ``config.json`` by transformers with every parameter on the meta
device (no memory), buffers real (rotary frequencies, position ids are computed, not stored).

``decoder_layers`` finds the stack of repeated blocks generically: among the ``nn.ModuleList``s whose children
are all of one class, the one holding the most parameters; inside the language model when the model has a
decoder (``get_decoder``), so a vision tower's blocks are not taken for it. No per-family table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streamscope.errors import CheckpointError, OptionError


@dataclass
class Skeleton:
    model: object  # transformers PreTrainedModel, parameters on meta
    layers: object  # the nn.ModuleList of decoder layers
    layers_name: str  # its full module name, e.g. model.layers
    architecture: str
    model_type: str


def build(model_dir: Path, trust_remote_code: bool = False, dtype=None) -> Skeleton:
    """The model of ``model_dir/config.json`` on the meta device, its parameters in ``dtype`` (the compute
    dtype: loading casts each tensor to its parameter's dtype; default float32, whatever ``config.json`` says).

    Raises:
        CheckpointError: no ``config.json``; an architecture transformers does not know (and remote code off).
    """
    import transformers
    from accelerate import init_empty_weights

    config_file = model_dir / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{model_dir}: no config.json; activation analysis needs the model's config to build its layers")
    try:
        config = transformers.AutoConfig.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    except ValueError as e:
        raise CheckpointError(f"{config_file}: transformers cannot build this model ({str(e).splitlines()[0]})"
                              + ("" if trust_remote_code else "; if it ships its own code, pass --model.trust_remote_code true"))  # fmt: skip
    arch = (getattr(config, "architectures", None) or [None])[0]
    cls = getattr(transformers, arch, None) if arch else None
    import torch

    dtype = dtype or torch.float32
    with init_empty_weights(include_buffers=False):
        try:
            if cls is not None:
                model = cls._from_config(config, dtype=dtype)
            else:
                model = _auto(config, trust_remote_code, dtype)
        except (ValueError, KeyError, AttributeError) as e:
            raise CheckpointError(f"{config_file}: transformers cannot build architecture {arch!r} ({str(e).splitlines()[0]})") from e
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    name, layers = decoder_layers(model)
    return Skeleton(model, layers, name, arch or type(model).__name__, getattr(config, "model_type", "") or "")


def _auto(config, trust_remote_code: bool, dtype):
    import transformers

    for auto in (transformers.AutoModelForCausalLM, transformers.AutoModel):
        try:
            return auto.from_config(config, trust_remote_code=trust_remote_code, dtype=dtype)
        except ValueError:
            continue
    raise ValueError(f"no transformers class for model_type {getattr(config, 'model_type', None)!r}")


def decoder_layers(model) -> tuple[str, object]:
    """``(full name, ModuleList)`` of the repeated blocks that carry the hidden states.

    Raises:
        CheckpointError: the model has no list of repeated blocks.
    """
    import torch

    scope = model
    get_decoder = getattr(model, "get_decoder", None)
    if callable(get_decoder):
        try:
            decoder = get_decoder()
        except (AttributeError, NotImplementedError, TypeError):
            decoder = None
        if isinstance(decoder, torch.nn.Module) and decoder is not model:
            scope = decoder
    names = {id(m): n for n, m in model.named_modules()}
    best, best_params = None, -1
    for module in scope.modules():
        if not isinstance(module, torch.nn.ModuleList) or len(module) == 0:
            continue
        kinds = {type(child) for child in module}
        if len(kinds) != 1:
            continue
        n_params = sum(p.numel() for p in module.parameters())
        if n_params > best_params:
            best, best_params = module, n_params
    if best is None:
        raise CheckpointError(f"{type(model).__name__}: no list of repeated layers found to stream through")
    return names[id(best)], best


def module_names(model) -> list[str]:
    """Every named module but the root, in the model's order (what the seed prints for writing regexes)."""
    return [n for n, _ in model.named_modules() if n]


def compute_dtype(name: str, device_type: str, stored: str | None):
    """float32 on CPU unless asked; the checkpoint's dtype on a GPU."""
    import torch

    if name != "auto":
        return getattr(torch, name)
    if device_type == "cpu" or stored not in ("BF16", "F16"):
        return torch.float32
    return torch.bfloat16 if stored == "BF16" else torch.float16


def check_patterns(names: list[str], patterns: dict[str, list[str]], defaults: set[str] = frozenset()) -> list[str]:
    """A pattern list given by the user that matches no module at all is an error (a typo would give an
    empty report); otherwise the patterns that match nothing are returned, for a note (families differ: a
    fused-experts MoE has no ``mlp.down_proj``, GPT-2 names its layers ``c_attn``, ``c_fc``). ``defaults``:
    the keys left at their default patterns."""
    import re

    unmatched = []
    for key, pats in patterns.items():
        missing = [p for p in pats if not any(re.search(p, n) for n in names)]
        if pats and len(missing) == len(pats) and key not in defaults:
            sample = ", ".join(names[:6])
            raise OptionError(f"{key}: {', '.join(repr(p) for p in missing)} match{'es' if len(missing) == 1 else ''} no module of this model "
                              f"(names look like: {sample}, ...)")  # fmt: skip
        unmatched += [f"{key}: {p!r}" for p in missing]
    return unmatched
