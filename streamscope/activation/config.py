"""The activation run's configuration: the Quant Smooth Ana YAML keys, their defaults, and dotted overrides.

A config is optional; every key has the default of the seed's example config. ``load(path, overrides)`` reads
the YAML file, applies ``--data.num_samples 128``-style overrides (values parsed as YAML scalars or lists), and
checks every key against ``DEFAULTS``: an unknown key is an error naming it and the keys known at its level.
The seed's command line writes visualization keys without their section (``--outlier.threshold 100``), so a
dotted key whose first part is a ``visualization`` subsection is taken as under ``visualization``.
Values are checked for type and range (a seed torch takes, a source given as text, ...); an error about a value
set in the file names the file.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

from streamscope.errors import OptionError

#: Every key, with its default (the seed's example config, plus streamscope's ``model.dtype`` and friends).
DEFAULTS: dict[str, Any] = {
    "model": {"path": None, "name": None, "trust_remote_code": False, "dtype": "auto"},
    "data": {
        "source": "random",
        "num_samples": 64,
        "seq_len": 1024,
        "seed": 0,
        "batch_size": "auto",
        "custom": {"format": None, "text_column": "text"},
    },
    "visualization": {
        "save_dir": None,
        "dpi": 200,
        "enabled": {
            "magnitude_input": True,
            "magnitude_output": True,
            "magnitude_weight": False,
            "outlier_layer_wise": True,
            "outlier_position": True,
            "outlier_token": True,
            "heatmap_3d": False,
            "distribution": False,
        },
        "magnitude": {"patterns": [r"mlp\.down_proj", r"mlp\.up_proj", r"self_attn\.q_proj", r"self_attn\.o_proj"], "reduce_dim": None},
        "outlier": {"threshold": 64, "pattern": r"layers\.\d+$", "decode_tokens": True},
        "layer_selection": {"patterns": None},
        "distribution": {"patterns": [r"mlp\.down_proj"], "plot_types": ["boxplot", "histogram"], "is_input": True},
        "heatmap_3d": {"pattern": r"layers\.\d+$", "sample_idx": 0, "is_input": False, "view_angle": [30, 45]},
    },
    "memory": {"device": "auto", "offload_device": "cpu", "auto_offload": True, "budget": None},
}


#: The seeds ``torch.Generator.manual_seed`` accepts.
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1
#: ``data.custom.format`` values ``activation.data`` parses (any other text is read as plain text).
CUSTOM_FORMATS = ("txt", "json", "jsonl", "csv")


def load(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The full config: defaults, then the YAML file, then ``overrides`` (``{"data.num_samples": 128}``)."""
    import yaml

    config = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as e:
            raise OptionError(f"{path}: cannot read the config ({e.strerror or e})") from e
        except UnicodeDecodeError as e:
            raise OptionError(f"{path}: not UTF-8 text (byte {e.object[e.start:e.start + 1]!r} at offset {e.start}); save the config as UTF-8") from e
        except RecursionError as e:
            raise OptionError(f"{path}: the YAML is nested too deeply") from e
        except yaml.YAMLError as e:
            raise OptionError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from e
        if not isinstance(data, dict):
            raise OptionError(f"{path}: a config must be a mapping of sections (model, data, visualization, memory)")
        from_file = _merge(config, data, DEFAULTS, where=str(path))
    else:
        from_file = set()
    from_args = {set_dotted(config, key, value) for key, value in (overrides or {}).items()}
    _check(config, lambda key: f"{path}: " if key in from_file and key not in from_args else "")
    return config


def set_dotted(config: dict, key: str, value: Any) -> str:
    """Set ``a.b.c`` in ``config``; a string value is parsed as YAML (``128``, ``true``, ``[a, b]``). Returns the
    full key set (``outlier.threshold`` is ``visualization.outlier.threshold``)."""
    import yaml

    parts = key.lstrip("-").split(".")
    if parts[0] not in DEFAULTS and parts[0] in DEFAULTS["visualization"]:
        parts = ["visualization", *parts]
    node, known = config, DEFAULTS
    for i, part in enumerate(parts):
        if not isinstance(known, dict) or part not in known:
            level = ".".join(parts[:i]) or "the top level"
            names = ", ".join(sorted(known)) if isinstance(known, dict) else "none (a value)"
            raise OptionError(f"unknown config key {'.'.join(parts)!r}: known at {level}: {names}")
        if i == len(parts) - 1:
            if isinstance(known[part], dict):
                raise OptionError(f"config key {'.'.join(parts)!r} is a section; set one of its keys: {', '.join(sorted(known[part]))}")
            try:
                node[part] = yaml.safe_load(value) if isinstance(value, str) else value
            except (yaml.YAMLError, RecursionError) as e:
                raise OptionError(f"--{'.'.join(parts)}: {value[:80]!r} is not a YAML value ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from e
            return ".".join(parts)
        else:
            node, known = node[part], known[part]


def parse_overrides(args: list[str]) -> dict[str, str]:
    """``["--data.num_samples", "128", "--outlier.threshold=100"]`` -> ``{"data.num_samples": "128", ...}``."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) <= 2:
            raise OptionError(f"unexpected argument {arg!r}: overrides are written --section.key VALUE")
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise OptionError(f"{arg} needs a value")
            key, value = arg[2:], args[i + 1]
            i += 2
        out[key] = value
    return out


def _merge(config: dict, data: dict, known: dict, where: str, prefix: str = "", seen: set | None = None) -> set:
    """Copy ``data`` (a config file's mapping) into ``config``; returns the full keys it set."""
    seen = set() if seen is None else seen
    for key, value in data.items():
        full = f"{prefix}{key}"
        if not isinstance(key, str) or key not in known:
            raise OptionError(f"{where}: unknown config key {full!r}; known at {prefix.rstrip('.') or 'the top level'}: {', '.join(sorted(known))}")
        if isinstance(known[key], dict):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise OptionError(f"{where}: {full!r} must be a mapping with keys {', '.join(sorted(known[key]))}")
            _merge(config[key], value, known[key], where, f"{full}.", seen)
        else:
            config[key] = value
            seen.add(full)
    return seen


def _check(config: dict, origin: Callable[[str], str] = lambda key: "") -> None:
    """Types and ranges that would otherwise fail deep inside the run. ``origin(key)``: the prefix naming where a
    value came from (``"run.yaml: "`` for a value of the config file, nothing for one given on the command line)."""
    import re

    data, vis = config["data"], config["visualization"]

    def fail(key: str, message: str, cause: BaseException | None = None):
        short = key.removeprefix("visualization.")
        raise OptionError(f"{origin(key)}{short} {message}") from cause

    def positive_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    for key in ("num_samples", "seq_len"):
        if not positive_int(data[key]):
            fail(f"data.{key}", f"must be a positive integer; got {data[key]!r}")
    if data["batch_size"] != "auto" and not positive_int(data["batch_size"]):
        fail("data.batch_size", f"must be auto or a positive integer; got {data['batch_size']!r}")
    seed = data["seed"]
    if not isinstance(seed, int) or isinstance(seed, bool) or not SEED_MIN <= seed <= SEED_MAX:
        fail("data.seed", f"must be an integer from {SEED_MIN} to {SEED_MAX} (the seeds torch.Generator takes); got {seed!r}")
    if not isinstance(data["source"], str) or not data["source"]:
        fail("data.source", f"must be text: random, custom:PATH, hf:NAME[:CONFIG[:SPLIT]], pile, wikitext2, c4 or redpajama; got {data['source']!r}")
    custom = data["custom"]
    if not isinstance(custom["text_column"], str) or not custom["text_column"]:
        fail("data.custom.text_column", f"must be one column name (text); got {custom['text_column']!r}")
    if custom["format"] is not None and not isinstance(custom["format"], str):
        fail("data.custom.format", f"must be null (from the file's suffix) or one of {', '.join(CUSTOM_FORMATS)}; got {custom['format']!r}")
    threshold = vis["outlier"]["threshold"]
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not threshold > 0:
        fail("visualization.outlier.threshold", f"must be a positive number; got {threshold!r}")
    if vis["magnitude"]["reduce_dim"] not in (None, -1, -2):
        fail("visualization.magnitude.reduce_dim", f"must be null, -1 (per token, over channels) or -2 (per channel, over tokens); got {vis['magnitude']['reduce_dim']!r}")
    for key in ("magnitude", "distribution"):
        patterns = vis[key]["patterns"]
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            fail(f"visualization.{key}.patterns", f"must be a list of regular expressions; got {patterns!r}")
    sel = vis["layer_selection"]["patterns"]
    if sel is not None and (not isinstance(sel, list) or not all(isinstance(p, str) for p in sel)):
        fail("visualization.layer_selection.patterns", f"must be a list of regular expressions or null; got {sel!r}")
    if config["model"]["dtype"] not in ("auto", "float32", "bfloat16", "float16"):
        fail("model.dtype", f"must be auto, float32, bfloat16 or float16; got {config['model']['dtype']!r}")
    if config["memory"]["device"] not in ("auto", "cpu", "cuda", "mps") and not str(config["memory"]["device"]).startswith("cuda:"):
        fail("memory.device", f"must be auto, cpu, cuda or mps; got {config['memory']['device']!r}")
    for key, pats in (("magnitude.patterns", vis["magnitude"]["patterns"]), ("distribution.patterns", vis["distribution"]["patterns"]),
                      ("layer_selection.patterns", sel or []), ("outlier.pattern", [vis["outlier"]["pattern"]]),
                      ("heatmap_3d.pattern", [vis["heatmap_3d"]["pattern"]])):  # fmt: skip
        for p in pats:
            try:
                re.compile(p)
            except (re.error, TypeError, RecursionError, OverflowError) as e:
                fail(f"visualization.{key}", f"{p!r} is not a regular expression ({e})", e)
