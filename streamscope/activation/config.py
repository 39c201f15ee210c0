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
from streamscope.kernels.device import DEFAULT_DEVICE, DEVICES

#: The keys of the run itself, with their defaults (the seed's example config, plus streamscope's ``model.dtype``
#: and friends); each activation probe adds its own (``defaults``).
BASE: dict[str, Any] = {
    "model": {"path": None, "name": None, "trust_remote_code": False, "dtype": "auto"},
    "data": {
        "source": "random",
        "num_samples": 64,
        "seq_len": 1024,
        "seed": 0,
        "batch_size": "auto",
        "windows": "random",
        "custom": {"format": None, "text_column": "text"},
    },
    "visualization": {"save_dir": None, "dpi": 100, "enabled": {}, "layer_selection": {"patterns": None}},  # dpi: the report's
    "memory": {"device": DEFAULT_DEVICE, "offload_device": "cpu", "auto_offload": True, "budget": None},
}
WINDOWS = ("random", "consecutive")


def defaults() -> dict[str, Any]:
    """Every key with its default: ``BASE`` and, for each registered probe, its ``visualization.<section>``
    options and its ``visualization.enabled`` switches."""
    from streamscope.activation.probes import PROBES

    config = copy.deepcopy(BASE)
    vis = config["visualization"]
    for probe in PROBES:
        if probe.section is not None:
            vis.setdefault(probe.section, {}).update(copy.deepcopy(probe.options))
        vis["enabled"].update(probe.enabled)
    return config


#: The defaults of the built-in probes (``defaults()`` also has those registered later).
DEFAULTS: dict[str, Any] = defaults()


#: The seeds ``torch.Generator.manual_seed`` accepts.
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1
#: ``data.custom.format`` values ``activation.data`` parses (any other text is read as plain text).
CUSTOM_FORMATS = ("txt", "json", "jsonl", "csv")


def load(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The full config: defaults, then the YAML file, then ``overrides`` (``{"data.num_samples": 128}``)."""
    import yaml

    known = defaults()
    config = copy.deepcopy(known)
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
        from_file = _merge(config, data, known, where=str(path))
    else:
        from_file = set()
    from_args = {set_dotted(config, key, value, known) for key, value in (overrides or {}).items()}
    _check(config, lambda key: f"{path}: " if key in from_file and key not in from_args else "")
    return config


def set_dotted(config: dict, key: str, value: Any, known: dict | None = None) -> str:
    """Set ``a.b.c`` in ``config``; a string value is parsed as YAML (``128``, ``true``, ``[a, b]``). Returns the
    full key set (``outlier.threshold`` is ``visualization.outlier.threshold``). ``known``: ``defaults()``."""
    import yaml

    top = known if known is not None else defaults()
    parts = key.lstrip("-").split(".")
    if parts[0] not in top and parts[0] in top["visualization"]:
        parts = ["visualization", *parts]
    node, known = config, top
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
    value came from (``"run.yaml: "`` for a value of the config file, nothing for one given on the command line).
    Each probe checks its own keys (``Probe.check``)."""
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
    if data["windows"] not in WINDOWS:
        fail("data.windows", f"must be random (windows at seeded offsets) or consecutive (the text's first num_samples x seq_len tokens, in order); got {data['windows']!r}")
    from streamscope.activation.probes import PROBES

    for probe in PROBES:
        if probe.check is not None:
            probe.check(vis, fail)
    check_patterns(fail, "visualization.layer_selection.patterns", vis["layer_selection"]["patterns"], optional=True)
    if config["model"]["dtype"] not in ("auto", "float32", "bfloat16", "float16"):
        fail("model.dtype", f"must be auto, float32, bfloat16 or float16; got {config['model']['dtype']!r}")
    if config["memory"]["device"] not in DEVICES and not str(config["memory"]["device"]).startswith("cuda:"):
        fail("memory.device", f"must be one of {', '.join(DEVICES)} (cuda:N for one GPU); got {config['memory']['device']!r}")
    _check_seed_keys(config, fail)


def _check_seed_keys(config: dict, fail) -> None:
    """Keys of the seed's config that streamscope honours in its own way: the figures' resolution is used, the
    rest is accepted only where it asks for what streamscope does anyway."""
    vis, memory = config["visualization"], config["memory"]
    if not isinstance(vis["dpi"], int) or isinstance(vis["dpi"], bool) or not 20 <= vis["dpi"] <= 1200:
        fail("visualization.dpi", f"must be an integer from 20 to 1200 (the figures' dots per inch); got {vis['dpi']!r}")
    if vis["save_dir"] is not None:
        fail("visualization.save_dir", "is not used: the figures go to OUT/figures beside report.html "
             "(activations --report, or `streamscope report OUT --out DIR`); remove the key")  # fmt: skip
    if memory["offload_device"] != "cpu":
        fail("memory.offload_device", f"must be cpu: hidden states are kept in CPU memory (a memory-mapped file past "
             f"memory.budget); got {memory['offload_device']!r}")  # fmt: skip
    if memory["auto_offload"] is not True:
        fail("memory.auto_offload", f"must be true: hidden states that do not fit memory.budget always go to a "
             f"memory-mapped file (raise memory.budget to keep them in memory); got {memory['auto_offload']!r}")  # fmt: skip


def check_patterns(fail, key: str, patterns, optional: bool = False) -> None:
    """``patterns`` is a list of regular expressions (or null where ``optional``), else ``fail(key, why)``."""
    import re

    if optional and patterns is None:
        return
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        fail(key, f"must be a list of regular expressions{' or null' if optional else ''}; got {patterns!r}")
    for p in patterns:
        try:
            re.compile(p)
        except (re.error, TypeError, RecursionError, OverflowError) as e:
            fail(key, f"{p!r} is not a regular expression ({e})", e)
