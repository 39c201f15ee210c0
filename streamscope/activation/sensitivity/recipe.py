"""Which scheme each decoder Linear gets: read from YAML, written for llm-compressor and llama-quantize.

A recipe file (``--recipe``) is either streamscope's short form::

    scheme: int4_g128               # every decoder Linear not named below
    overrides:                      # target -> scheme, first match wins
      "re:.*mlp\\.down_proj$": int8_channel
    ignore: ["re:.*layers\\.0\\..*"]  # left in float

or an llm-compressor recipe with a ``QuantizationModifier`` (``config_groups`` with ``targets`` and
``weights``, ``ignore``), such as the ``recipe.yaml`` a plan writes. Targets are names as the model names its
modules, ``re:``-prefixed regular expressions (searched), or ``Linear``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from streamscope.errors import OptionError
from streamscope.kernels.fakequant import SCHEMES

#: llm-compressor's weight arguments of each scheme; the GGML formats as their nearest group schemes.
WEIGHTS = {
    "int8": {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "tensor"},
    "int8_channel": {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel"},
    "int4_g128": {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": 128},
    "int4_g128_asym": {"num_bits": 4, "type": "int", "symmetric": False, "strategy": "group", "group_size": 128},
    "fp8_e4m3": {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "tensor"},
    "q8_0": {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "group", "group_size": 32},
    "q4_0": {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": 32},
    "mxfp4": {"num_bits": 4, "type": "float", "symmetric": True, "strategy": "group", "group_size": 32},
}
#: The GGML type ``llama-quantize --tensor-type`` is given for each scheme (the nearest one it has).
GGML_TYPE = {"int8": "q8_0", "int8_channel": "q8_0", "fp8_e4m3": "q8_0", "q8_0": "q8_0", "int4_g128": "q4_0",
             "int4_g128_asym": "q4_1", "q4_0": "q4_0", "mxfp4": "mxfp4", None: "f16"}  # fmt: skip


def matches(target: str, name: str, module=None) -> bool:
    if target.startswith("re:"):
        return re.search(target[3:], name) is not None
    if target == "Linear":
        return True
    return target == name


@dataclass
class Recipe:
    """``scheme`` for every decoder Linear, but ``overrides`` (target, scheme) and ``ignore`` (float)."""

    name: str
    scheme: str | None
    overrides: list[tuple[str, str | None]] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)

    def scheme_for(self, module: str) -> str | None:
        if any(matches(t, module) for t in self.ignore):
            return None
        for target, scheme in self.overrides:
            if matches(target, module):
                return scheme
        return self.scheme

    def assign(self, modules: list[str]) -> dict[str, str | None]:
        return {m: self.scheme_for(m) for m in modules}


def _scheme(value, where: str) -> str | None:
    if value in (None, "float", "none"):
        return None
    if value not in SCHEMES:
        raise OptionError(f"{where}: unknown scheme {value!r}; known: {', '.join(SCHEMES)}, float")
    return value


def _from_weights(args: dict, where: str) -> str:
    for scheme, ref in WEIGHTS.items():
        if all(args.get(k, ref[k] if k != "group_size" else None) == v for k, v in ref.items()):
            return scheme
    raise OptionError(f"{where}: weights {args} match none of the schemes streamscope simulates ({', '.join(WEIGHTS)})")


def _modifier(data) -> dict | None:
    """The first ``QuantizationModifier`` anywhere in an llm-compressor recipe."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "QuantizationModifier" and isinstance(value, dict):
                return value
            found = _modifier(value)
            if found is not None:
                return found
    return None


def load(path: str | Path) -> Recipe:
    """A recipe file, in either form; bad content is one line naming the file."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise OptionError(f"{path}: cannot read the recipe ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise OptionError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise OptionError(f"{path}: a recipe is a YAML mapping (scheme, overrides, ignore; or an llm-compressor recipe)")
    mod = _modifier(data)
    if mod is not None:
        return _from_llm_compressor(mod, path)
    unknown = set(data) - {"scheme", "overrides", "ignore", "name"}
    if unknown:
        raise OptionError(f"{path}: unknown recipe keys {sorted(unknown)} (known: scheme, overrides, ignore, name)")
    overrides = data.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise OptionError(f"{path}: overrides is a mapping of target -> scheme")
    ignore = data.get("ignore") or []
    if not isinstance(ignore, list):
        raise OptionError(f"{path}: ignore is a list of targets")
    _check_patterns([*overrides, *ignore], path)
    return Recipe(str(data.get("name") or path.stem), _scheme(data.get("scheme", "int4_g128"), f"{path}: scheme"),
                  [(t, _scheme(s, f"{path}: overrides.{t}")) for t, s in overrides.items()], [str(t) for t in ignore])  # fmt: skip


def _from_llm_compressor(mod: dict, path: Path) -> Recipe:
    default, overrides = None, []
    for gname, group in (mod.get("config_groups") or {}).items():
        scheme = _from_weights(group.get("weights") or {}, f"{path}: config_groups.{gname}")
        for target in group.get("targets") or []:
            if target == "Linear":
                default = scheme
            else:
                overrides.append((target, scheme))
    if default is None and isinstance(mod.get("scheme"), str):
        raise OptionError(f"{path}: preset schemes ({mod['scheme']}) are not simulated; give config_groups with weights")
    ignore = [t for t in mod.get("ignore") or [] if isinstance(t, str)]
    _check_patterns([t for t, _ in overrides] + ignore, path)
    return Recipe(path.stem, default, overrides, ignore)


def _check_patterns(targets, path: Path) -> None:
    for t in targets:
        if str(t).startswith("re:"):
            try:
                re.compile(str(t)[3:])
            except re.error as e:
                raise OptionError(f"{path}: target {t!r} is not a valid regular expression ({e})") from None


def write_llm_compressor(path: Path, assignment: dict[str, str | None], ignore: list[str]) -> None:
    """``recipe.yaml``: one config group per scheme with the exact module names (so no two groups ever claim
    the same module, whichever precedence the loader applies), the float ones in ``ignore``."""
    import yaml

    groups = {}
    for scheme in dict.fromkeys(s for s in assignment.values() if s is not None):
        names = [m for m, s in assignment.items() if s == scheme]
        groups[f"group_{len(groups)}"] = {"targets": names, "weights": dict(WEIGHTS[scheme])}
    floats = [m for m, s in assignment.items() if s is None]
    recipe = {"quant_stage": {"quant_modifiers": {"QuantizationModifier": {"ignore": [*ignore, *floats], "config_groups": groups}}}}
    from streamscope.results import write_atomic

    write_atomic(path, lambda p: p.write_text(yaml.safe_dump(recipe, sort_keys=False, width=120), encoding="utf-8"))


def write_tensor_types(path: Path, assignment: dict[str, str | None], gguf_names: dict[str, str], default: str | None) -> int:
    """``tensor_types.txt`` for ``llama-quantize --tensor-type-file``: one ``^name$=type`` line for every
    tensor whose type differs from the default's; returns the number of lines."""
    from streamscope.results import write_atomic

    base = GGML_TYPE[default]
    lines = [f"^{re.escape(gguf_names[m])}$={GGML_TYPE[s]}" for m, s in assignment.items() if m in gguf_names and GGML_TYPE[s] != base]
    write_atomic(path, lambda p: p.write_text("".join(line + "\n" for line in lines), encoding="utf-8"))
    return len(lines)
