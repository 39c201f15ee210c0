"""The model without its weights: built from ``config.json`` by transformers with every parameter on the meta
device (no memory), buffers real (rotary frequencies, position ids are computed, not stored).

``decoder_layers`` finds the stack of repeated blocks generically: among the ``nn.ModuleList``s whose children
are all of one class, the one holding the most parameters; inside the language model when the model has a
decoder (``get_decoder``), so a vision tower's blocks are not taken for it. No per-family table.

A ``config.json`` that does not describe the checkpoint fails before the model is built, in one line
(``ConfigMismatch``): ``architectures`` that are not class names, more layers than the tensor names hold; and
one that would allocate more than the machine has while building (``limits.BuildLimitError``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streamscope.errors import CheckpointError, OptionError


class ConfigMismatch(CheckpointError):
    """``config.json`` is malformed, or does not describe the checkpoint's weights."""

    hint = "config.json must be the one saved with these weights: re-download it, or point PATH at the checkpoint it belongs to"


@dataclass
class Skeleton:
    model: object  # transformers PreTrainedModel, parameters on meta
    layers: object  # the nn.ModuleList of decoder layers
    layers_name: str  # its full module name, e.g. model.layers
    architecture: str
    model_type: str


def build(model_dir: Path, trust_remote_code: bool = False, dtype=None, index=None) -> Skeleton:
    """The model of ``model_dir/config.json`` on the meta device, its parameters in ``dtype`` (the compute
    dtype: loading casts each tensor to its parameter's dtype; default float32, whatever ``config.json`` says).

    Before anything is built, ``config.json`` is checked against the checkpoint (``index``, the
    ``io.checkpoint.CheckpointIndex`` of ``model_dir``; read here when not given): its layer count against
    the layer indices in the tensor names (``check_layers``), and what building it would allocate against the
    machine (``check_size``), so a config that does not describe these weights fails at once in one line.

    Raises:
        CheckpointError: no ``config.json``; an architecture transformers does not know (and remote code off).
        ConfigMismatch: ``architectures`` is not a list of names; more layers than the checkpoint holds.
        BuildLimitError: building the model would take more memory than the machine has.
    """
    import transformers
    from accelerate import init_empty_weights

    config_file = model_dir / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{model_dir}: no config.json; activation analysis needs the model's config to build its layers")
    try:
        config = transformers.AutoConfig.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    except Exception as e:  # noqa: BLE001 - a malformed config surfaces as any of many types from transformers
        raise CheckpointError(f"{config_file}: transformers cannot build this model ({_first_line(e)})"
                              + ("" if trust_remote_code else "; if it ships its own code, pass --model.trust_remote_code true")) from e  # fmt: skip
    arch = _architecture(config, config_file)
    if index is None:
        from streamscope.io.checkpoint import CheckpointIndex

        index = CheckpointIndex.from_path(model_dir)
    check_layers(config, index, config_file)
    cls = _model_class(arch, config_file)
    import torch

    dtype = dtype or torch.float32

    def make():
        return cls._from_config(config, dtype=dtype) if cls is not None else _auto(config, trust_remote_code, dtype)

    check_size(make, config, config_file)
    with init_empty_weights(include_buffers=False):
        try:
            model = make()
        except Exception as e:  # noqa: BLE001 - transformers raises what the modeling code raises on a bad config
            raise CheckpointError(f"{config_file}: transformers cannot build architecture {arch or getattr(config, 'model_type', None)!r} "
                                  f"({_first_line(e)})") from e  # fmt: skip
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    name, layers = decoder_layers(model)
    return Skeleton(model, layers, name, arch or type(model).__name__, getattr(config, "model_type", "") or "")


def check_layers(config, index, config_file: Path) -> None:
    """``config.json``'s layer count (``num_hidden_layers`` of the text config) must not exceed the layers the
    checkpoint's tensor names hold (``model.layers.N.``, ``h.N.``, ``blk.N.``; the language tower's): a model
    of 200000 layers takes minutes to build only to find no weights for most of them. Fewer is allowed (a
    checkpoint may carry extra layers, e.g. DeepSeek-V3's multi-token-prediction layer after the last).

    Raises:
        ConfigMismatch: the config asks for more layers than the checkpoint holds.
    """
    text = _text_config(config)
    n = getattr(text, "num_hidden_layers", None)
    if not isinstance(n, int) or isinstance(n, bool):
        return
    present = {info.layer_index for info in index.names.values() if info.layer_index is not None and info.tower == "language"}
    if present and n > max(present) + 1:
        raise ConfigMismatch(f"{config_file}: num_hidden_layers is {n}, but the checkpoint's tensor names hold layers 0 to {max(present)} "
                              f"({len(present)} layers); config.json does not describe these weights")  # fmt: skip


def check_size(make, config, config_file: Path) -> None:
    """Build the model once on the meta device (nothing allocated, a fraction of a second) and refuse it when the
    real build would allocate more than the machine has (``limits.check_build``): buffers are computed in
    memory (BERT's ``position_ids`` hold ``max_position_embeddings`` int64s) and every parameter is allocated
    while created (GPT-2's ``wpe`` is ``n_positions x n_embd``). A model that cannot be built on the meta
    device is left to the real build, which reports its error.

    Raises:
        BuildLimitError: see ``limits.check_build``.
    """
    import torch

    from streamscope.activation import limits

    try:
        with torch.device("meta"):
            model = make()
    except Exception:  # noqa: BLE001 - the real build raises it again, with the message users see
        return
    buffers = [(n, tuple(b.shape), b.numel() * b.element_size()) for n, b in model.named_buffers()]
    params = [(n, tuple(p.shape), p.numel() * p.element_size()) for n, p in model.named_parameters()]
    largest = max(params, key=lambda p: p[2]) if params else None
    try:
        values = config.to_dict()
    except Exception:  # noqa: BLE001 - the message is written without them
        values = None
    limits.check_build(config_file, buffers, largest, explain=lambda shape: config_values(values, [max(shape, default=0)]))


def config_values(config: dict | None, dims) -> str:
    """``"; config.json gives max_position_embeddings = 17179869184"``: the integers of ``config`` (a dict, nested
    sections too) equal to one of ``dims`` larger than 1, for messages; empty when none is."""
    dims = {d for d in dims if isinstance(d, int) and d > 1}
    found: list[str] = []

    def walk(d: dict, prefix: str = "") -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            elif isinstance(v, int) and not isinstance(v, bool) and v in dims:
                found.append(f"{prefix}{k} = {v}")

    if isinstance(config, dict):
        walk(config)
    return f"; config.json gives {', '.join(found[:4])}" if found else ""


def _text_config(config):
    get_text = getattr(config, "get_text_config", None)
    try:
        return get_text() if callable(get_text) else getattr(config, "text_config", None) or config
    except Exception:  # noqa: BLE001 - a malformed multimodal config: use the top level
        return config


def _architecture(config, config_file: Path) -> str | None:
    """The first of ``config.json``'s ``architectures`` (a list of transformers class names), None when empty."""
    archs = getattr(config, "architectures", None)
    if archs is None:
        return None
    if not isinstance(archs, (list, tuple)) or not all(isinstance(a, str) and a for a in archs):
        raise ConfigMismatch(f"{config_file}: 'architectures' must be a list of transformers class names such as "
                              f"[\"LlamaForCausalLM\"]; got {archs!r}")  # fmt: skip
    return archs[0] if archs else None


def _model_class(arch: str | None, config_file: Path):
    """transformers' class named ``arch``; None when it has none of that name (the model type then decides)."""
    if not arch:
        return None
    import transformers

    try:
        cls = getattr(transformers, arch, None)
    except Exception as e:  # noqa: BLE001 - the lazy module imports the model's file here; a missing dependency fails
        raise CheckpointError(f"{config_file}: transformers cannot load architecture {arch!r} ({_first_line(e)})") from e
    return cls if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel) else None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:300]}" if text else type(e).__name__


def _auto(config, trust_remote_code: bool, dtype):
    import transformers

    for auto in (transformers.AutoModelForCausalLM, transformers.AutoModel):
        try:
            return auto.from_config(config, trust_remote_code=trust_remote_code, dtype=dtype)
        except ValueError:  # no class of this kind for the model type
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
