"""The activation run's configuration: the Quant Smooth Ana YAML keys, their defaults, and dotted overrides.

A config is optional; every key has the default of the seed's example config. ``load(path, overrides)`` reads
the YAML file, applies ``--data.num_samples 128``-style overrides (values parsed as YAML scalars or lists), and
checks every key against ``DEFAULTS``: an unknown key is an error naming it and the keys known at its level.
The seed's command line writes visualization keys without their section (``--outlier.threshold 100``), so a
dotted key whose first part is a ``visualization`` subsection is taken as under ``visualization``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

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
        except yaml.YAMLError as e:
            raise OptionError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from e
        if not isinstance(data, dict):
            raise OptionError(f"{path}: a config must be a mapping of sections (model, data, visualization, memory)")
        _merge(config, data, DEFAULTS, where=str(path))
    for key, value in (overrides or {}).items():
        set_dotted(config, key, value)
    _check(config)
    return config


def set_dotted(config: dict, key: str, value: Any) -> None:
    """Set ``a.b.c`` in ``config``; a string value is parsed as YAML (``128``, ``true``, ``[a, b]``)."""
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
            node[part] = yaml.safe_load(value) if isinstance(value, str) else value
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


def _merge(config: dict, data: dict, known: dict, where: str, prefix: str = "") -> None:
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in known:
            raise OptionError(f"{where}: unknown config key {full!r}; known at {prefix.rstrip('.') or 'the top level'}: {', '.join(sorted(known))}")
        if isinstance(known[key], dict):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise OptionError(f"{where}: {full!r} must be a mapping with keys {', '.join(sorted(known[key]))}")
            _merge(config[key], value, known[key], where, f"{full}.")
        else:
            config[key] = value


def _check(config: dict) -> None:
    """Types and ranges that would otherwise fail deep inside the run."""
    data, vis = config["data"], config["visualization"]
    for key in ("num_samples", "seq_len"):
        if not isinstance(data[key], int) or isinstance(data[key], bool) or data[key] < 1:
            raise OptionError(f"data.{key} must be a positive integer; got {data[key]!r}")
    b = data["batch_size"]
    if b != "auto" and (not isinstance(b, int) or isinstance(b, bool) or b < 1):
        raise OptionError(f"data.batch_size must be auto or a positive integer; got {b!r}")
    if not isinstance(data["seed"], int):
        raise OptionError(f"data.seed must be an integer; got {data['seed']!r}")
    threshold = vis["outlier"]["threshold"]
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or threshold <= 0:
        raise OptionError(f"outlier.threshold must be a positive number; got {threshold!r}")
    if vis["magnitude"]["reduce_dim"] not in (None, -1, -2):
        raise OptionError(f"magnitude.reduce_dim must be null, -1 (per token, over channels) or -2 (per channel, over tokens); got {vis['magnitude']['reduce_dim']!r}")
    for key in ("magnitude", "distribution"):
        patterns = vis[key]["patterns"]
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise OptionError(f"{key}.patterns must be a list of regular expressions; got {patterns!r}")
    sel = vis["layer_selection"]["patterns"]
    if sel is not None and (not isinstance(sel, list) or not all(isinstance(p, str) for p in sel)):
        raise OptionError(f"layer_selection.patterns must be a list of regular expressions or null; got {sel!r}")
    if config["model"]["dtype"] not in ("auto", "float32", "bfloat16", "float16"):
        raise OptionError(f"model.dtype must be auto, float32, bfloat16 or float16; got {config['model']['dtype']!r}")
    if config["memory"]["device"] not in ("auto", "cpu", "cuda", "mps") and not str(config["memory"]["device"]).startswith("cuda:"):
        raise OptionError(f"memory.device must be auto, cpu, cuda or mps; got {config['memory']['device']!r}")
    import re

    for key, pats in (("magnitude.patterns", vis["magnitude"]["patterns"]), ("distribution.patterns", vis["distribution"]["patterns"]),
                      ("layer_selection.patterns", sel or []), ("outlier.pattern", [vis["outlier"]["pattern"]]),
                      ("heatmap_3d.pattern", [vis["heatmap_3d"]["pattern"]])):  # fmt: skip
        for p in pats:
            try:
                re.compile(p)
            except (re.error, TypeError) as e:
                raise OptionError(f"{key}: {p!r} is not a regular expression ({e})") from e
