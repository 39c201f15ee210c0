"""llama.cpp's importance matrix: per input channel of every Linear, the sum of x^2 over every token, and the
token count (``imatrix.gguf``: ``general.type = imatrix``; per weight ``<gguf name>.in_sum2`` and
``<gguf name>.counts``, as ``llama-imatrix`` writes them), where the ``gguf`` package knows the architecture's
tensor names; and the statistics ``llama-imatrix --show-statistics`` prints for that file
(``activations.json["imatrix_statistics"]``, by gguf tensor name; ``kernels.imatrix_stats``), computed from the
float32 sums and counts the file holds."""

from __future__ import annotations

import numpy as np

from streamscope.activation.probes.base import Probe
from streamscope.activation.stats import ChannelStats

#: transformers model types whose GGUF architecture has another name.
GGUF_ARCH_ALIASES = {"mistral": "llama", "mixtral": "llama", "qwen2_5_vl": "qwen2vl", "qwen2_vl": "qwen2vl", "qwen2_moe": "qwen2moe",
                     "qwen3_moe": "qwen3moe", "gpt_neox": "gptneox", "phimoe": "phimoe"}  # fmt: skip


class State(ChannelStats):
    def __init__(self):
        super().__init__(absmax=False)

    def reduce(self):
        self.close()
        return (self.sum2, self.tokens) if self.sum2 is not None else None


def restore(vis: dict, data: dict) -> State:
    s = State()
    s.merge(ChannelStats.restore(data))
    return s


def gguf_arch(model_type: str) -> str | None:
    try:
        import gguf
    except ImportError:
        return None
    names = set(gguf.MODEL_ARCH_NAMES.values())
    for candidate in (GGUF_ARCH_ALIASES.get(model_type), model_type, model_type.replace("_", ""), model_type.replace("_", "-")):
        if candidate and candidate in names:
            return candidate
    return None


def gguf_names(model_type: str, n_layers: int, modules) -> dict[str, str]:
    """Module name -> its GGUF weight name (``blk.3.attn_q.weight``), where the ``gguf`` package knows the
    architecture and the module (a multimodal model's text layers under their plain names)."""
    arch = gguf_arch(model_type)
    if arch is None:
        return {}
    import gguf

    enum = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)
    tmap = gguf.get_tensor_name_map(enum, n_layers)
    out = {}
    for name in modules:
        target = tmap.get_name(name)
        if target is None and ".language_model." in name:
            target = tmap.get_name(name.replace(".language_model.", "."))
        if target is not None:
            out[name] = f"{target}.weight"
    return out


def _entries(reduced: dict, run) -> tuple[str, list] | str:
    """``(architecture, [(gguf weight name, float32 sums (1, channels), tokens)])``, or why there are none."""
    arch = gguf_arch(run.model_type)
    if arch is None:
        return f"not written: no GGUF architecture known for model type {run.model_type!r}"
    names = gguf_names(run.model_type, run.n_layers, [n for n, r in reduced.items() if r is not None])
    entries = []
    for name, target in names.items():
        sum2, tokens = reduced[name]
        entries.append((target, sum2.to("cpu").numpy().astype(np.float32).reshape(1, -1), tokens))
    if not entries:
        return f"not written: no Linear layer maps to a GGUF tensor name of {arch}"
    return arch, entries


def record(reduced: dict, run) -> dict:
    """``{gguf tensor name: {mean, std, skew, kurt, h_norm, sum_e_a2, gain, l2_dist, cossim, pcc, cov}}`` in
    llama.cpp's listing order, None where it prints nan; empty where no ``imatrix.gguf`` is written."""
    from streamscope.io.imatrix_file import ImatrixTensor
    from streamscope.kernels.imatrix_stats import tensor_statistics

    found = _entries(reduced, run)
    if isinstance(found, str):
        return {}
    # the counts as the file holds them (float32) and llama.cpp reads them back (rounded)
    vectors = {name: ImatrixTensor(sum2, np.array([round(float(np.float32(tokens)))], np.int64)) for name, sum2, tokens in found[1]}
    return {name: s.as_dict() for name, s in tensor_statistics(vectors).items()}


def files(reduced: dict, run) -> dict:
    """``imatrix.gguf``; its note says why it was not written where it was not."""
    found = _entries(reduced, run)
    if isinstance(found, str):
        return {"imatrix.gguf": found}
    import gguf

    from streamscope.results import write_atomic

    arch, entries = found

    def write(p) -> None:
        w = gguf.GGUFWriter(str(p), arch=arch)
        w.add_type("imatrix")
        w.add_array("imatrix.datasets", [run.facts["source"]])
        w.add_uint32("imatrix.chunk_count", run.facts["num_samples"])
        w.add_uint32("imatrix.chunk_size", run.facts["seq_len"])
        for name, sum2, tokens in entries:
            w.add_tensor(f"{name}.in_sum2", sum2)
            w.add_tensor(f"{name}.counts", np.array([[float(tokens)]], dtype=np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    write_atomic(run.out / "imatrix.gguf", write)
    return {"imatrix.gguf": None}


PROBE = Probe(
    name="imatrix",
    help="llama.cpp importance matrix: per input channel of every Linear, sum of x^2 and tokens (imatrix.gguf), "
    "and the statistics llama-imatrix --show-statistics prints for it (imatrix_statistics)",
    watches=lambda watch, vis: watch.linear(),
    new=lambda vis, name, scratch: State(),
    restore=restore,
    key="imatrix_statistics",
    record=record,
    files=files,
)
