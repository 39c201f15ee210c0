"""``streamscope sensitivity``: one run from the options to ``sensitivity.json`` and its files.

Pass 1 streams the float model once: each decoder layer's Linears measure every scheme's local error and
SmoothQuant's curves on their real inputs (``layer_end``), then each recipe's quantized stream runs through
the same loaded layer (``QuantStream``), and the tail gives the next-token statistics (``Tail``). The plan
(``plan.search``) is checked by further passes that run only the float and the planned streams.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from streamscope.activation.sensitivity import plan as plan_mod
from streamscope.activation.sensitivity.hooks import Capture, is_norm, weight_matrix
from streamscope.activation.sensitivity.local import layer_errors
from streamscope.activation.sensitivity.recipe import Recipe
from streamscope.activation.sensitivity.smooth import ALPHAS, layer_smoothing
from streamscope.activation.sensitivity.stream import QuantStream, Tail
from streamscope.errors import Interrupted, OptionError
from streamscope.kernels.fakequant import SCHEMES

DEFAULT_SCHEME = "int4_g128"


@dataclass
class Options:
    """What ``streamscope sensitivity`` measures; the data and model options are the activation config's."""

    schemes: tuple[str, ...] = SCHEMES  # local errors for each; given explicitly, also a whole-model recipe each
    schemes_given: bool = False
    recipe: Recipe | None = None  # None: every decoder Linear at int4_g128
    target_kl: float = 0.01
    keep_scheme: str = "int8_channel"
    max_bits: float | None = None  # bits-per-weight budget of the plan
    local: bool = True
    smoothquant: bool = True
    propagate: bool = True
    alphas: tuple[float, ...] = ALPHAS
    verify_passes: int = 3
    resume: bool = True  # continue an interrupted run's first pass after its last finished layer
    plan: bool = True
    keep_outputs: bool = False  # tests: keep the float and quantized logits
    extra: dict = field(default_factory=dict)

    def check(self) -> None:
        for s in (*self.schemes, self.keep_scheme):
            if s not in SCHEMES:
                raise OptionError(f"unknown scheme {s!r}; known: {', '.join(SCHEMES)}")
        if not self.target_kl > 0:
            raise OptionError(f"--target-kl must be above 0, not {self.target_kl}")
        if self.max_bits is not None and not self.max_bits > 0:
            raise OptionError(f"--max-bpw must be above 0, not {self.max_bits}")
        if self.plan and not (self.local and self.propagate):
            raise OptionError("the plan needs the local errors and the propagated stream: drop --no-local/--no-propagate, or add --no-plan")
        if not (self.local or self.smoothquant or self.propagate):
            raise OptionError("nothing to measure: --no-local, --no-smoothquant and --no-propagate together leave nothing")


@dataclass
class Model:
    """The parts of the prepared model every pass uses."""

    prep: object  # profile.Prepared
    linears: dict  # decoder Linear name -> module
    norms: dict
    prefix: str
    is_lm: bool
    shapes: dict = field(default_factory=dict)
    unmeasured: list = field(default_factory=list)  # weights in the layers that no Linear holds (fused experts)


def model_parts(prep) -> Model:
    watch = prep.watch
    linears = {n: watch.modules[n] for n in watch.in_layers(watch.linear())}
    if not linears:
        raise OptionError(f"{prep.model_dir}: no Linear module inside the decoder layers ({prep.skeleton.layers_name}) to quantize")
    norms = {n: watch.modules[n] for n in watch.in_layers(watch.names) if is_norm(watch.modules[n])}
    model = prep.skeleton.model
    is_lm = getattr(model, "get_output_embeddings", lambda: None)() is not None
    shapes = {}
    for n, m in linears.items():
        w = m.weight
        shapes[n] = tuple(w.shape[::-1]) if type(m).__name__ == "Conv1D" else tuple(w.shape)
    held = {f"{n}.weight" for n in linears}
    prefix = f"{prep.skeleton.layers_name}."
    unmeasured = [f"{prefix}{n}" for n, p in prep.skeleton.layers.named_parameters() if p.dim() >= 3 and f"{prefix}{n}" not in held]
    return Model(prep, linears, norms, prefix, is_lm, shapes, unmeasured)


@dataclass
class PassResult:
    local: dict
    smoothquant: dict
    propagated: dict
    seconds: float
    bytes_read: int
    outputs: list | None = None
    modes: dict = field(default_factory=dict)


def one_pass(model: Model, recipes: list[Recipe], opts: Options, out: Path, measure: bool, progress: Callable | None = None,
             checkpoint=None, echo: Callable[[str], None] = print) -> PassResult:  # fmt: skip
    """The float stream with (``measure``) local errors and smoothing curves, and one stream per recipe;
    with a ``checkpoint`` (``resume.SensitivityCheckpoint``), saved after every layer and resumed from it."""
    from streamscope.activation import forward
    from streamscope.activation.profile import _hidden_budget, _layers

    prep = model.prep
    sk, mem = prep.skeleton, prep.config["memory"]
    budget = _hidden_budget(mem.get("budget"))
    tokens = int(prep.ids.numel())
    measure = measure and (opts.local or opts.smoothquant)
    capture = Capture(model.linears, model.norms, tokens, len(opts.schemes) if opts.local else 0, max(64 << 20, budget // 4), opts.smoothquant) if measure else None
    names = list(model.linears)
    streams = [QuantStream(r.name, r.assign(names), model.linears, model.prefix, restore=k < len(recipes) - 1, capture=capture)
               for k, r in enumerate(recipes)]  # fmt: skip
    tail = Tail(prep.ids, len(streams), model.is_lm)
    kept = [] if opts.keep_outputs else None
    local, smooth, modes, layer = {}, {}, {"gram": 0, "inputs": 0}, {}
    start = _resume(checkpoint, streams, local, smooth, echo, len(sk.layers))

    def on_logits(span, outputs) -> None:
        tail(span, outputs)
        if kept is not None:
            kept.append(outputs)

    def layer_end(i: int, _) -> None:
        layer.clear()
        if capture is None:
            return
        for g in capture.groups.values():
            modes["gram" if g.gram is not None else "inputs"] += 1
        layer["local"] = layer_errors(capture, opts.schemes) if opts.local else {}
        layer["smoothquant"] = layer_smoothing(capture, opts.alphas) if opts.smoothquant else {}
        local.update(layer["local"])
        smooth.update(layer["smoothquant"])
        capture.reset()  # the inputs are freed before the quantized streams run

    def layer_done(i: int, hidden, as_tuple: bool) -> None:
        if checkpoint is not None:
            record = {"local": layer.get("local", {}), "smoothquant": layer.get("smoothquant", {}), "streams": [s.layers[-1] for s in streams]}
            checkpoint.save(i, record, hidden, [s.hidden for s in streams], as_tuple)

    if capture is not None:
        capture.attach(sk.layers)
    try:
        result = forward.run(sk, prep.index, prep.ids, prep.dtype, prep.device, hidden_budget=budget, spill_dir=out / ".spill",
                             progress=progress, layer_end=layer_end, streams=tuple(streams), on_logits=on_logits, tail=bool(streams),
                             on_layer=(lambda i, _: capture.reset()) if capture else None, layer_done=layer_done, resume=start,
                             batch_size=None if prep.config["data"]["batch_size"] == "auto" else prep.config["data"]["batch_size"])  # fmt: skip
    except KeyboardInterrupt:
        done = checkpoint.done if checkpoint is not None else -1
        if done < 0:
            raise Interrupted(f"interrupted before the first of {len(sk.layers)} decoder layers finished; nothing was kept") from None
        raise Interrupted(f"interrupted with {done + 1} of {len(sk.layers)} decoder layers finished ({_layers(done)}), kept in {checkpoint.dir}: "
                          "run the same command to resume") from None  # fmt: skip
    finally:
        if capture is not None:
            capture.detach()
        import shutil

        shutil.rmtree(out / ".spill", ignore_errors=True)
    propagated = {}
    for k, s in enumerate(streams):
        propagated[s.name] = {**tail.result(k), "layers": s.layers, "float_modules": sorted(s.skipped)}
    return PassResult(local, smooth, propagated, result.seconds, result.bytes_read, kept, modes)


def _resume(checkpoint, streams: list, local: dict, smooth: dict, echo, n_layers: int):
    """Take an interrupted run's finished layers from ``checkpoint``: ``forward.run``'s ``resume``, or None."""
    saved = checkpoint.load(len(streams)) if checkpoint is not None else None
    if saved is None:
        return None
    done, hidden, stream_hidden, as_tuple, layers = saved
    for record in layers:
        local.update(record["local"])
        smooth.update(record["smoothquant"])
        for s, d in zip(streams, record["streams"]):
            s.layers.append(d)
    for s, h in zip(streams, stream_hidden):
        s.resumed = h
    echo(f"resuming: {done + 1} of {n_layers} decoder layers were finished by an interrupted run (kept in {checkpoint.dir})")
    return done, hidden, as_tuple


def default_recipes(opts: Options) -> list[Recipe]:
    recipes = [opts.recipe or Recipe(DEFAULT_SCHEME, DEFAULT_SCHEME)]
    if opts.schemes_given:
        recipes += [Recipe(s, s) for s in opts.schemes if s not in {r.name for r in recipes}]
    return recipes


def make_plan(model: Model, first: PassResult, recipe: Recipe, opts: Options, out: Path, echo, float_bits: float) -> dict:
    """The greedy plan for ``recipe`` and its checks (``plan`` module)."""
    names = list(model.linears)
    base = recipe.assign(names)
    measured = first.propagated[recipe.name]
    kl_all = measured["kl_mean"]
    facts = {"target_kl": opts.target_kl, "keep_scheme": opts.keep_scheme, "recipe": recipe.name, "max_bits_per_weight": opts.max_bits}
    if kl_all is None:
        return {**facts, "keep": None, "kl": None, "bits_per_weight": plan_mod.bits(base, model.shapes, float_bits),
                "note": "the model gives no next-token distribution (an encoder): no KL to plan against"}  # fmt: skip
    checks, scale, kept = [], 1.0, []
    if kl_all <= opts.target_kl:
        return {**facts, "keep": [], "kl": kl_all, "bits_per_weight": plan_mod.bits(base, model.shapes, float_bits), "checks": [],
                "assignment": base}  # fmt: skip
    kl = kl_all
    for _ in range(opts.verify_passes):
        kept = plan_mod.search(first.local, base, opts.keep_scheme, kl_all, opts.target_kl, model.shapes, float_bits, opts.max_bits, scale,
                               start=len(kept) + (1 if checks else 0))  # fmt: skip
        if not kept or (checks and len(kept) == checks[-1]["kept"]):
            break
        trial = Recipe("plan", recipe.scheme, [(m, opts.keep_scheme) for m in kept] + recipe.overrides, recipe.ignore)
        echo(f"checking the plan: {len(kept)} Linears at {opts.keep_scheme}")
        result = one_pass(model, [trial], opts, out, measure=False)
        kl = result.propagated["plan"]["kl_mean"]
        estimated = kl_all * scale * _left_share(first.local, base, kept, opts.keep_scheme)
        checks.append({"kept": len(kept), "kl": kl, "estimated_kl": estimated, "seconds": result.seconds, **_stats(result.propagated["plan"])})
        if kl <= opts.target_kl:
            break
        scale *= kl / estimated if estimated > 0 else 2.0
    assignment = {**base, **{m: opts.keep_scheme for m in kept}}
    return {**facts, "keep": kept, "kl": kl, "met": kl <= opts.target_kl, "bits_per_weight": plan_mod.bits(assignment, model.shapes, float_bits),
            "checks": checks, "assignment": assignment}  # fmt: skip


def _stats(p: dict) -> dict:
    return {k: p[k] for k in ("kl_p99", "top1_agreement", "ppl_quant")}


def _left_share(local: dict, base: dict, kept: list[str], keep: str) -> float:
    total = sum(plan_mod._rel(local, m, s) for m, s in base.items())
    after = sum(plan_mod._rel(local, m, keep if m in kept else s) for m, s in base.items())
    return after / total if total > 0 else 0.0


def float_bits_of(prep) -> float:
    import torch

    stored = next((t.dtype for t in prep.index if t.is_matrix), None)
    return {"F32": 32.0, "F64": 64.0}.get(str(stored).upper(), 16.0) if stored is not None else float(torch.finfo(prep.dtype).bits)


def measure(path, config: dict, out: str | Path, opts: Options, echo: Callable[[str], None] = print, progress: bool = False) -> dict:
    """Run everything ``opts`` asks for on the checkpoint at ``path``; writes the files and returns the record."""
    from streamscope.activation.profile import _progress, prepare
    from streamscope.activation.sensitivity import export
    from streamscope.activation.sensitivity.resume import SensitivityCheckpoint, fingerprint
    from streamscope.results import lock_file, unlock_file

    t0 = time.perf_counter()
    opts.check()
    out = Path(out)
    prep = prepare(path, config, echo, probes=False)
    model = model_parts(prep)
    recipes = default_recipes(opts)
    out.mkdir(parents=True, exist_ok=True)
    lock = lock_file(out / ".sensitivity.lock")  # two runs into one directory would write over each other's files
    try:
        streams = recipes if opts.propagate else []
        checkpoint = SensitivityCheckpoint(out, fingerprint(prep, opts, streams)) if opts.resume else None
        if checkpoint is None:
            SensitivityCheckpoint(out, "").clear()
        bar = _progress(progress, len(prep.skeleton.layers))
        try:
            first = one_pass(model, streams, opts, out, measure=True, progress=bar.update if bar else None, checkpoint=checkpoint, echo=echo)
        finally:
            if bar:
                bar.close()
        fbits = float_bits_of(prep)
        plan = make_plan(model, first, recipes[0], opts, out, echo, fbits) if opts.plan else None
        facts = _facts(prep, model, first, opts, recipes, time.perf_counter() - t0)
        record = export.write(out, prep, model, first, plan, facts, recipes)
        SensitivityCheckpoint(out, "").clear()  # the files hold it all now
    finally:
        unlock_file(lock)
    if opts.keep_outputs:
        record["outputs"] = first.outputs
    return record


def _facts(prep, model: Model, first: PassResult, opts: Options, recipes: list[Recipe], seconds: float) -> dict:
    ids = prep.ids
    return {"model": str(prep.model_dir), "architecture": prep.skeleton.architecture, "model_type": prep.skeleton.model_type,
            "dtype": str(prep.dtype).replace("torch.", ""), "device": str(prep.device), "source": prep.config["data"]["source"],
            "num_samples": int(ids.shape[0]), "seq_len": int(ids.shape[1]), "seed": prep.config["data"]["seed"],
            "n_layers": len(prep.skeleton.layers), "linears": len(model.linears), "schemes": list(opts.schemes),
            "recipes": [r.name for r in recipes], "smoothquant_alphas": list(opts.alphas) if opts.smoothquant else None,
            "first_pass_seconds": first.seconds, "seconds": seconds, "bytes_read": first.bytes_read,
            "checkpoint_bytes": prep.index.total_bytes, "input_groups": first.modes, "not_measured": model.unmeasured,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}  # fmt: skip


def module_layer(name: str, prefix: str) -> int | None:
    rest = name[len(prefix) :] if name.startswith(prefix) else ""
    head = rest.split(".", 1)[0]
    return int(head) if head.isdigit() else None


__all__ = ["Options", "measure", "one_pass", "model_parts", "weight_matrix"]
