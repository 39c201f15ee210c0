"""``streamscope activations``: one run from a config to the output directory.

Order: config -> checkpoint index and model skeleton (module names printed for writing regexes) -> patterns
checked against the module names -> samples -> hooks on the selected modules -> the streamed forward
(``forward.run``) -> statistics -> files (``export.write``). Statistics are gathered by forward hooks:
magnitude for every module any pattern selects, outliers for the outlier pattern's modules, distributions,
one sample's heatmap, and per-channel input statistics of every Linear layer (act scales, imatrix).
"""

from __future__ import annotations

import re
import resource
import time
from pathlib import Path
from typing import Callable

from streamscope.activation import config as config_mod
from streamscope.errors import CheckpointError, OptionError


def profile(path: str | Path, config: dict, out: str | Path, echo: Callable[[str], None] = print, progress: bool = False,
            keep_tensors: bool = False) -> dict:  # fmt: skip
    """Run the activation analysis of ``config`` (see ``activations.config``) on the checkpoint at ``path``.

    Returns the ``activations.json`` record; with ``keep_tensors`` also ``"forward"``: the ``ForwardResult``
    with the logits and every layer's output (tests).
    """
    import torch
    import transformers

    from streamscope.activation import data, export, forward, skeleton, stats
    from streamscope.engine.options import resolve_device
    from streamscope.io.checkpoint import CheckpointIndex

    transformers.utils.logging.disable_progress_bar()
    t0 = time.perf_counter()
    model_dir = _model_dir(Path(path))
    index = CheckpointIndex.from_path(model_dir)
    vis, dcfg, mem = config["visualization"], config["data"], config["memory"]
    device = resolve_device(mem["device"])
    stored = next((t.dtype for t in index if t.is_matrix), None)
    dtype = skeleton.compute_dtype(config["model"]["dtype"], device.type, stored)
    sk = skeleton.build(model_dir, trust_remote_code=bool(config["model"]["trust_remote_code"]), dtype=dtype)
    names = skeleton.module_names(sk.model)
    echo(f"Total modules found: {len(names)}; decoder layers: {sk.layers_name} ({len(sk.layers)} x {type(sk.layers[0]).__name__})")
    echo("Showing first 20 module names:\n" + "\n".join(f"  {n}" for n in names[:20]))

    enabled = vis["enabled"]
    selection = vis["layer_selection"]["patterns"]
    magnitude_pats = vis["magnitude"]["patterns"]
    patterns = {"magnitude.patterns": magnitude_pats, "outlier.pattern": [vis["outlier"]["pattern"]]}
    if enabled["distribution"]:
        patterns["distribution.patterns"] = vis["distribution"]["patterns"]
    if enabled["heatmap_3d"]:
        patterns["heatmap_3d.pattern"] = [vis["heatmap_3d"]["pattern"]]
    if selection:
        patterns["layer_selection.patterns"] = selection
    defaults = config_mod.DEFAULTS["visualization"]
    at_default = {k for k, v in (("magnitude.patterns", magnitude_pats), ("outlier.pattern", vis["outlier"]["pattern"]),
                                 ("distribution.patterns", vis["distribution"]["patterns"]), ("heatmap_3d.pattern", vis["heatmap_3d"]["pattern"]))
                  if v == defaults[k.split(".")[0]][k.split(".")[1]]}  # fmt: skip
    for note in skeleton.check_patterns(names, patterns, at_default):
        echo(f"note: {note} matches no module of this model; set it to names like those above")

    def selected(name: str, pats: list[str]) -> bool:
        return any(re.search(p, name) for p in pats) and (not selection or any(re.search(p, name) for p in selection))

    modules = dict(sk.model.named_modules())
    mag_names = [n for n in names if selected(n, magnitude_pats)]
    out_names = [n for n in names if re.search(vis["outlier"]["pattern"], n)]
    dist_names = [n for n in names if enabled["distribution"] and selected(n, vis["distribution"]["patterns"])]
    heat_names = [n for n in names if enabled["heatmap_3d"] and re.search(vis["heatmap_3d"]["pattern"], n)]
    linear_names = [n for n in names if _is_linear(modules[n])]
    max_pos = _max_positions(sk.model.config)
    if max_pos and dcfg["seq_len"] > max_pos:
        raise OptionError(f"data.seq_len {dcfg['seq_len']} is beyond the model's {max_pos} positions (config.json)")

    tokenizer = _tokenizer(index, required=dcfg["source"] != "random")  # for text sources, and to decode outlier tokens
    vocab = _vocab_size(sk.model.config)
    ids = data.samples(dcfg["source"], dcfg["num_samples"], dcfg["seq_len"], dcfg["seed"], vocab, tokenizer,
                       dcfg["custom"]["text_column"], dcfg["custom"]["format"])  # fmt: skip
    if tokenizer is not None and vocab and int(ids.max()) >= vocab:
        raise CheckpointError(f"{model_dir}: the tokenizer gives ids up to {int(ids.max())}, beyond the model's vocabulary of {vocab}")

    reduce_dim = vis["magnitude"]["reduce_dim"]
    magnitude = {(n, d): stats.Magnitude(reduce_dim) for n in dict.fromkeys(mag_names + out_names + dist_names + heat_names) for d in ("input", "output")}
    outliers = {n: stats.Outliers(float(vis["outlier"]["threshold"])) for n in out_names}
    dist_dir = "input" if vis["distribution"]["is_input"] else "output"
    distribution = {n: stats.Distribution() for n in dist_names}
    heat_dir = "input" if vis["heatmap_3d"]["is_input"] else "output"
    heat_sample = int(vis["heatmap_3d"]["sample_idx"])
    heatmaps: dict = {}
    channels = {n: stats.ChannelStats() for n in linear_names}
    weights = {}
    current = {"sample": 0}

    def make_hook(name: str):
        def hook(module, args, kwargs, output):
            x_in = args[0] if args else next((v for v in kwargs.values() if isinstance(v, torch.Tensor)), None)
            x_out = output[0] if isinstance(output, tuple) else getattr(output, "last_hidden_state", output)
            for direction, x in (("input", x_in), ("output", x_out)):
                if not isinstance(x, torch.Tensor) or not x.is_floating_point():
                    continue
                if (name, direction) in magnitude:
                    magnitude[(name, direction)].add(x)
                if direction == "output" and name in outliers:
                    outliers[name].add(x, current["sample"])
                if direction == dist_dir and name in distribution:
                    distribution[name].add(x)
                if direction == heat_dir and name in heat_names and current["sample"] == heat_sample:
                    heatmaps[name] = x.detach().abs().reshape(-1, x.shape[-1]).to("cpu", torch.float16).numpy()
            if name in channels and isinstance(x_in, torch.Tensor):
                channels[name].add(x_in)

        return hook

    hooked = dict.fromkeys(list(magnitude_key_names(magnitude)) + out_names + dist_names + heat_names + linear_names)
    handles = [modules[n].register_forward_hook(make_hook(n), with_kwargs=True) for n in hooked]

    def on_layer(i: int, layer) -> None:
        if enabled["magnitude_weight"]:
            prefix = f"{sk.layers_name}.{i}."
            for n in mag_names:
                w = getattr(modules[n], "weight", None)
                if n.startswith(prefix) and isinstance(w, torch.Tensor) and w.device.type != "meta":
                    m = stats.Magnitude(None)
                    m.add(w)
                    weights[n] = m.result()

    sample_counter = _SampleCounter(current, sk.layers, int(ids.shape[0]), sk.model)
    bar = _progress(progress, len(sk.layers))
    try:
        budget = _hidden_budget(mem.get("budget"))
        result = forward.run(sk, index, ids, dtype, device, on_layer=on_layer, hidden_budget=budget,
                             keep_layer_outputs=keep_tensors, progress=bar.update if bar else None,
                             spill_dir=Path(out) / ".spill")  # fmt: skip
    finally:
        for h in handles:
            h.remove()
        sample_counter.remove()
        if bar:
            bar.close()
    seconds = time.perf_counter() - t0
    record = {
        "run": {"model": str(model_dir), "architecture": sk.architecture, "model_type": sk.model_type, "dtype": str(dtype).replace("torch.", ""),
                "device": str(device), "source": dcfg["source"], "num_samples": int(ids.shape[0]), "seq_len": int(ids.shape[1]), "seed": dcfg["seed"],
                "seconds": seconds, "forward_seconds": result.seconds, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "bytes_read": result.bytes_read, "checkpoint_bytes": index.total_bytes, "decoder_layers": sk.layers_name,
                "n_layers": len(sk.layers), "hidden_states_spilled": result.spilled_to is not None,
                "tokens_per_second": ids.numel() / result.seconds if result.seconds else None},
        "modules": {},
        "weights": weights,
        "outliers": {"threshold": float(vis["outlier"]["threshold"]), "pattern": vis["outlier"]["pattern"], "layers": {}},
        "distribution": {"direction": dist_dir, "modules": {n: d.result() for n, d in distribution.items()}},
        "config": config,
    }  # fmt: skip
    for (n, direction), m in magnitude.items():
        if m.count:
            record["modules"].setdefault(n, {})[direction] = m.result()
    decode = bool(vis["outlier"]["decode_tokens"]) and tokenizer is not None
    massive: dict[str, int] = {}
    for n, o in outliers.items():
        r = o.result()
        r["token_ids"] = [int(ids[s, t]) for s, t in o.positions]
        if decode:
            r["tokens"] = [tokenizer.decode([i]) for i in r["token_ids"]]
        for c, k in r["channels"].items():
            massive[c] = massive.get(c, 0) + k
        record["outliers"]["layers"][n] = r
    record["outliers"]["massive_channels"] = dict(sorted(massive.items(), key=lambda kv: -kv[1])[:20])
    if result.spilled_to:
        Path(result.spilled_to).unlink(missing_ok=True)
    files = export.write(Path(out), record, ids, channels, heatmaps, sk, index)
    record["run"]["files"] = files
    export.write_json(Path(out), record)
    if keep_tensors:
        record["forward"] = result
    return record


def magnitude_key_names(magnitude: dict):
    return dict.fromkeys(n for n, _ in magnitude)


class _SampleCounter:
    """Tells the hooks which sample is passing: a pre-hook on each decoder layer (the layer loop) and on the
    model itself (the capture and the tail call the model once per sample, in order)."""

    def __init__(self, current: dict, layers, n_samples: int, model=None):
        self.current, self.n = current, n_samples
        self.seen: dict[int, int] = {}
        self.handles = [layer.register_forward_pre_hook(self._hook(i)) for i, layer in enumerate(layers)]
        if model is not None:
            self.handles.append(model.register_forward_pre_hook(self._hook(-1)))

    def _hook(self, i: int):
        def hook(module, args):
            s = self.seen.get(i, 0)
            self.current["sample"] = s % self.n  # the capture passes every sample through layer 0's hooks first
            self.seen[i] = s + 1

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _is_linear(module) -> bool:
    import torch

    return isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"


def _max_positions(cfg) -> int | None:
    text = getattr(cfg, "text_config", None) or cfg
    for key in ("max_position_embeddings", "n_positions", "max_seq_len"):
        v = getattr(text, key, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def _vocab_size(cfg) -> int:
    text = getattr(cfg, "text_config", None) or cfg
    v = getattr(text, "vocab_size", None)
    if not isinstance(v, int) or v <= 0:
        raise CheckpointError("config.json gives no vocab_size; random samples need it")
    return v


def _tokenizer(index, required: bool):
    if index.tokenizer_path is None:
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(index.tokenizer_path))
    except (OSError, ValueError) as e:
        if not required:
            return None  # random ids need none; outlier tokens are then given as ids
        raise CheckpointError(f"{index.tokenizer_path}: the tokenizer cannot be loaded ({str(e).splitlines()[0]})") from e


def _model_dir(path: Path) -> Path:
    if path.is_file():
        path = path.parent
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint directory")
    return path


def _hidden_budget(budget) -> int:
    """Bytes the hidden states may take in memory: ``memory.budget``, else half the memory available now."""
    if budget is None:
        import psutil

        return psutil.virtual_memory().available // 2
    from streamscope.units import parse_bytes

    return parse_bytes(budget, "memory.budget")


def _progress(enabled: bool, total: int):
    if not enabled:
        return None
    from rich.progress import Progress

    class Bar:
        def __init__(self):
            self.p = Progress(transient=True)
            self.p.start()
            self.task = self.p.add_task("[bold]activations[/] decoder layers", total=total)

        def update(self, stage: str, done: int, total_: int) -> None:
            self.p.update(self.task, completed=done)

        def close(self) -> None:
            self.p.stop()

    return Bar()


def load_config(path: str | Path | None, overrides: dict | None, model_path: str | Path | None = None) -> dict:
    """The config with ``model.path`` filled from the command line when given there."""
    cfg = config_mod.load(path, overrides)
    if model_path is not None:
        cfg["model"]["path"] = str(model_path)
    if not cfg["model"]["path"]:
        raise OptionError("no model: give PATH, or model.path in the config")
    return cfg
