"""``streamscope activations``: one run from a config to the output directory.

Order: ``prepare`` (config -> checkpoint index and model skeleton -> patterns checked against the module
names -> samples) -> ``stream`` (the probes' hooks on the watched modules, ``collect``; the streamed forward,
``forward.run``, with a checkpoint after every decoder layer, ``resume``) -> ``write`` (records and files,
``export``). With ``--workers``/``--scheduler`` the samples are split over dask workers, each streams its
share, and their probe states are merged (``parallel``).
"""

from __future__ import annotations

import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from streamscope.activation import config as config_mod
from streamscope.errors import CheckpointError, Interrupted, OptionError


@dataclass
class Prepared:
    """Everything a run (or a worker's share of it) needs before the forward pass."""

    config: dict
    model_dir: Path
    index: object  # io.checkpoint.CheckpointIndex
    skeleton: object  # activation.skeleton.Skeleton
    watch: object  # probes.Watch
    ids: object  # (num_samples, seq_len) int64
    dtype: object
    device: object

    @property
    def modules(self) -> dict:
        return self.watch.modules


def profile(path: str | Path, config: dict, out: str | Path, echo: Callable[[str], None] = print, progress: bool = False,
            keep_tensors: bool = False, verbose: bool = False, resume: bool = True, scheduler: str | None = None,
            workers: int | None = None) -> dict:  # fmt: skip
    """Run the activation analysis of ``config`` (see ``activations.config``) on the checkpoint at ``path``.

    Returns the ``activations.json`` record; with ``keep_tensors`` also ``"forward"``: the ``ForwardResult``
    with the logits and every layer's output (tests). The first 20 module names are echoed (to write patterns
    with) when a pattern matches nothing, or with ``verbose``. A run killed before it wrote its files continues
    from its last finished decoder layer (``resume``; see ``activation.resume``). ``scheduler`` (``"local"``
    with ``workers``, or a dask scheduler address) splits the samples over dask workers (``parallel``).
    """
    from streamscope.results import lock_file, unlock_file

    t0 = time.perf_counter()
    out = Path(out)
    prep = prepare(path, config, echo, verbose)
    if scheduler is None:  # dask workers hold their own shares of the samples
        from streamscope.activation import limits

        limits.check_hidden_states(int(prep.ids.shape[0]), int(prep.ids.shape[1]), limits.hidden_size(prep.skeleton.model.config), prep.dtype,
                                   budget=_hidden_budget(config["memory"].get("budget")), out_dir=out)
    out.mkdir(parents=True, exist_ok=True)
    lock = lock_file(out / ".activations.lock")  # two activation runs into one directory would mix their checkpoints
    try:
        if scheduler is not None:
            from streamscope.activation import parallel

            collector, facts = parallel.run(prep, out, scheduler, workers, resume=resume, echo=echo, progress=progress)
            result = None
        else:
            collector, result, _ = stream(prep, out, resume=resume, echo=echo, progress=progress, keep_tensors=keep_tensors)
            facts = _forward_facts(result)
        record = write(prep, collector, out, {**facts, "seconds": time.perf_counter() - t0})
    finally:
        shutil.rmtree(out / ".probes", ignore_errors=True)
        unlock_file(lock)
    if keep_tensors and result is not None:
        record["forward"] = result
    return record


def prepare(path: str | Path, config: dict, echo: Callable[[str], None] = print, verbose: bool = False, ids=None,
            probes: bool = True) -> Prepared:  # fmt: skip
    """Index, skeleton, checked patterns and token ids (``ids`` given: a worker's share, already made); ``probes``
    False leaves the probes' patterns unchecked (a run that uses none)."""
    import transformers

    from streamscope.activation import data, skeleton
    from streamscope.activation.probes import Watch
    from streamscope.kernels.device import resolve_device
    from streamscope.io.checkpoint import CheckpointIndex

    transformers.utils.logging.disable_progress_bar()
    source = config["data"]["source"]
    if ids is None and source.startswith("custom:") and not Path(source[len("custom:") :]).is_file():
        raise data.DataError(f"{source[len('custom:') :]}: no such data file")  # before the model is built, not after
    model_dir = _model_dir(Path(path))
    index = CheckpointIndex.from_path(model_dir)
    vis, dcfg, mem = config["visualization"], config["data"], config["memory"]
    device = resolve_device(mem["device"])
    stored = next((t.dtype for t in index if t.is_matrix), None)
    dtype = skeleton.compute_dtype(config["model"]["dtype"], device.type, stored)
    sk = skeleton.build(model_dir, trust_remote_code=bool(config["model"]["trust_remote_code"]), dtype=dtype, index=index)
    names = skeleton.module_names(sk.model)
    echo(f"Total modules found: {len(names)}; decoder layers: {sk.layers_name} ({len(sk.layers)} x {type(sk.layers[0]).__name__})")
    notes = selection_patterns(names, vis) if probes else []
    if any(unmatched for _, unmatched in notes) or verbose:
        echo("First 20 module names (patterns are regular expressions over these):\n" + "\n".join(f"  {n}" for n in names[:20]))
    for note, _ in notes:
        echo(f"note: {note}")
    watch = Watch(names, dict(sk.model.named_modules()), sk.layers_name, vis["layer_selection"]["patterns"])
    max_pos = _max_positions(sk.model.config)
    if max_pos and dcfg["seq_len"] > max_pos:
        raise OptionError(f"data.seq_len {dcfg['seq_len']} is beyond the model's {max_pos} positions (config.json)")
    if ids is None:
        tokenizer = _tokenizer(model_dir, required=dcfg["source"] != "random", vocab_path=index.tokenizer_path)
        vocab = _vocab_size(sk.model.config)
        ids = data.samples(dcfg["source"], dcfg["num_samples"], dcfg["seq_len"], dcfg["seed"], vocab, tokenizer,
                           dcfg["custom"]["text_column"], dcfg["custom"]["format"], dcfg["windows"])  # fmt: skip
        if tokenizer is not None and vocab and int(ids.max()) >= vocab:
            raise CheckpointError(f"{model_dir}: the tokenizer gives ids up to {int(ids.max())}, beyond the model's vocabulary of {vocab}")
    return Prepared(config, model_dir, index, sk, watch, ids, dtype, device)


def stream(prep: Prepared, out: Path, *, resume: bool = True, echo: Callable[[str], None] = print, progress: bool = False,
           keep_tensors: bool = False, ids=None, first_sample: int = 0):  # fmt: skip
    """The forward pass over ``ids`` (default: all of ``prep.ids``; a worker's share starts at sample
    ``first_sample``) with every probe's hooks, checkpointed per layer in ``out``.

    Returns ``(collector, forward result, checkpoint)``; the checkpoint is left in place (``write`` or the
    caller that merges it removes it).
    """
    from streamscope.activation import forward
    from streamscope.activation.collect import Collector
    from streamscope.activation.probes import PROBES
    from streamscope.activation.resume import LayerCheckpoint, fingerprint

    ids = prep.ids if ids is None else ids
    config, sk, mem = prep.config, prep.skeleton, prep.config["memory"]
    n_layers = len(sk.layers)
    checkpoint = LayerCheckpoint(out, fingerprint(prep.index, ids, config, prep.dtype))
    collector = Collector(PROBES, config["visualization"], prep.watch, int(ids.shape[0]), scratch=out / ".probes", first_sample=first_sample)
    saved = checkpoint.load() if resume else checkpoint.clear()
    start = None
    if saved is not None:
        done, hidden, as_tuple, layer_dumps = saved
        for dumps in layer_dumps:
            collector.restore([dumps])
        start = (done, hidden, as_tuple)
        echo(f"resuming: {done + 1} of {n_layers} decoder layers ({_layers(done)}) were finished by an interrupted run (kept in {checkpoint.dir})")
    prefix = f"{sk.layers_name}."
    collector.attach(sk.model, sk.layers, prep.modules)
    bar = _progress(progress, n_layers)

    def layer_done(i: int, hidden, as_tuple: bool) -> None:
        checkpoint.save_layer(i, collector.close_layer(f"{prefix}{i}."), hidden, as_tuple)

    try:
        result = forward.run(sk, prep.index, ids, prep.dtype, prep.device, on_layer=lambda i, _: collector.on_weights(f"{prefix}{i}.", prep.modules),
                             hidden_budget=_hidden_budget(mem.get("budget")), keep_layer_outputs=keep_tensors,
                             progress=bar.update if bar else None, spill_dir=out / ".spill", layer_done=layer_done, resume=start,
                             batch_size=None if config["data"]["batch_size"] == "auto" else config["data"]["batch_size"])  # fmt: skip
        checkpoint.save_rest(collector.close_all())
    except KeyboardInterrupt:
        if checkpoint.done < 0:
            raise Interrupted(f"interrupted before the first of {n_layers} decoder layers finished; nothing was kept") from None
        raise Interrupted(f"interrupted with {checkpoint.done + 1} of {n_layers} decoder layers finished ({_layers(checkpoint.done)}), kept in "
                          f"{checkpoint.dir}: run the same command to resume") from None  # fmt: skip
    finally:
        collector.detach()
        if bar:
            bar.close()
        shutil.rmtree(out / ".spill", ignore_errors=True)
    result.resumed_after = start[0] + 1 if start else None
    return collector, result, checkpoint


def write(prep: Prepared, collector, out: Path, facts: dict) -> dict:
    """``activations.json`` and every probe's files; the run's checkpoints are removed once they are written."""
    from streamscope.activation import export
    from streamscope.activation.probes import Run
    from streamscope.activation.resume import FOLDER

    sk, ids, vis, dcfg = prep.skeleton, prep.ids, prep.config["visualization"], prep.config["data"]
    facts = {"model": str(prep.model_dir), "architecture": sk.architecture, "model_type": sk.model_type,
             "dtype": str(prep.dtype).replace("torch.", ""), "device": str(prep.device), "source": dcfg["source"],
             "num_samples": int(ids.shape[0]), "seq_len": int(ids.shape[1]), "seed": dcfg["seed"], **facts,
             "checkpoint_bytes": prep.index.total_bytes, "decoder_layers": sk.layers_name, "n_layers": len(sk.layers),
             "outlier_pattern": vis["outlier"]["pattern"] or prep.watch.layer_pattern}  # fmt: skip
    resumed = facts.get("resumed_after_layer")  # then the forward covered only the remaining layers
    facts["tokens_per_second"] = ids.numel() / facts["forward_seconds"] if facts.get("forward_seconds") and not resumed else None
    run = Run(out, ids, _decode(prep.index), vis, len(sk.layers), sk.model_type, facts, collector.watched)
    record = {"run": facts, **export.records(collector, run), "config": prep.config}
    facts["files"] = export.write(out, collector, run)
    export.write_json(out, record)
    shutil.rmtree(out / FOLDER, ignore_errors=True)
    return record


def _layers(last: int) -> str:
    """The decoder layers 0..last as the table names them: ``L0``, ``L0-L3``."""
    return "L0" if last == 0 else f"L0-L{last}"


def _forward_facts(result) -> dict:
    return {"batch_size": result.batch_size, "forward_seconds": result.seconds, "bytes_read": result.bytes_read,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "resumed_after_layer": result.resumed_after,
            "hidden_states_spilled": result.spilled_to is not None}  # fmt: skip


def selection_patterns(names: list[str], vis: dict) -> list[tuple[str, bool]]:
    """Check every enabled pattern against the module names (see ``skeleton.check_patterns``); returns
    ``(note, the user should set it)`` for each that matches nothing. A null pattern stands for the decoder layers and is not checked; where the
    default magnitude patterns (Llama's names) match nothing, the magnitude probe watches every Linear of the
    decoder layers instead, and the note says so."""
    from streamscope.activation import skeleton
    from streamscope.activation.probes.magnitude import DEFAULT_PATTERNS

    enabled, chosen = vis["enabled"], vis["layer_selection"]["patterns"]
    patterns = {"magnitude.patterns": vis["magnitude"]["patterns"]}
    if vis["outlier"]["pattern"] is not None:
        patterns["outlier.pattern"] = [vis["outlier"]["pattern"]]
    if enabled["distribution"]:
        patterns["distribution.patterns"] = vis["distribution"]["patterns"]
    if enabled["heatmap_3d"] and vis["heatmap_3d"]["pattern"] is not None:
        patterns["heatmap_3d.pattern"] = [vis["heatmap_3d"]["pattern"]]
    if chosen:
        patterns["layer_selection.patterns"] = chosen
    defaults = config_mod.defaults()["visualization"]
    at_default = {key for key in patterns if key != "layer_selection.patterns"
                  and vis[key.split(".")[0]][key.split(".")[1]] == defaults[key.split(".")[0]][key.split(".")[1]]}  # fmt: skip
    notes = []
    for unmatched in skeleton.check_patterns(names, patterns, at_default):
        if unmatched.startswith("magnitude.patterns") and vis["magnitude"]["patterns"] == DEFAULT_PATTERNS:
            if not notes or not notes[-1][0].startswith("magnitude.patterns"):
                notes.append(("magnitude.patterns: the default names (Llama's) match no module of this model; the magnitude "
                              "statistics watch every Linear of the decoder layers instead", False))  # fmt: skip
        else:
            notes.append((f"{unmatched} matches no module of this model; set it to names like those above", True))
    return notes


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


def _tokenizer(model_dir: Path, required: bool, vocab_path: Path | None = None):
    """The checkpoint's tokenizer; a damaged one is an error only when text must be encoded with it (naming
    the vocabulary file when that is what is damaged)."""
    from streamscope.io import tokenizer

    try:
        return tokenizer.load(model_dir)
    except tokenizer.TokenizerError:
        if not required:
            return None  # random ids need none; outlier tokens are then decoded from the vocabulary file alone
        if vocab_path is not None:
            tokenizer.decoder(str(vocab_path))
        raise


def _decode(index):
    """``id -> text`` from the checkpoint's vocabulary, or None without one."""
    from streamscope.io.tokenizer import TokenizerError, decoder

    try:
        return decoder(str(index.tokenizer_path)) if index.tokenizer_path else None
    except TokenizerError:
        return None  # tokens are then shown as ids


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
    """The decoder-layer counter, started (None when disabled); its ``update`` is the forward pass's callback."""
    if not enabled:
        return None
    from streamscope.progress import Steps

    return Steps(total, "activations", "decoder layers").start()


def load_config(path: str | Path | None, overrides: dict | None, model_path: str | Path | None = None) -> dict:
    """The config with ``model.path`` filled from the command line when given there."""
    cfg = config_mod.load(path, overrides)
    if model_path is not None:
        cfg["model"]["path"] = str(model_path)
    if not cfg["model"]["path"]:
        raise OptionError("no model: give PATH, or model.path in the config")
    return cfg
