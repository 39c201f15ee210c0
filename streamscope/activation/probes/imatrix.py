"""llama.cpp's importance matrix: per input channel of every Linear, the sum of x^2 over every token, and the
token count (``imatrix.gguf``: ``general.type = imatrix``; per weight ``<gguf name>.in_sum2`` and
``<gguf name>.counts``, as ``llama-imatrix`` writes them), where the ``gguf`` package knows the architecture's
tensor names."""

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


def files(reduced: dict, run) -> dict:
    """``imatrix.gguf``; its note says why it was not written where it was not."""
    arch = gguf_arch(run.model_type)
    if arch is None:
        return {"imatrix.gguf": f"not written: no GGUF architecture known for model type {run.model_type!r}"}
    import gguf

    from streamscope.results import _atomic

    enum = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)
    tmap = gguf.get_tensor_name_map(enum, run.n_layers)
    entries = []
    for name, r in reduced.items():
        if r is None:
            continue
        target = tmap.get_name(name)
        if target is None and ".language_model." in name:  # a multimodal model's text layers
            target = tmap.get_name(name.replace(".language_model.", "."))
        if target is not None:
            entries.append((f"{target}.weight", *r))
    if not entries:
        return {"imatrix.gguf": f"not written: no Linear layer maps to a GGUF tensor name of {arch}"}

    def write(p) -> None:
        w = gguf.GGUFWriter(str(p), arch=arch)
        w.add_type("imatrix")
        w.add_array("imatrix.datasets", [run.facts["source"]])
        w.add_uint32("imatrix.chunk_count", run.facts["num_samples"])
        w.add_uint32("imatrix.chunk_size", run.facts["seq_len"])
        for name, sum2, tokens in entries:
            w.add_tensor(f"{name}.in_sum2", sum2.to("cpu").numpy().astype(np.float32).reshape(1, -1))
            w.add_tensor(f"{name}.counts", np.array([[float(tokens)]], dtype=np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    _atomic(run.out / "imatrix.gguf", write)
    return {"imatrix.gguf": None}


PROBE = Probe(
    name="imatrix",
    help="llama.cpp importance matrix: per input channel of every Linear, sum of x^2 and tokens (imatrix.gguf)",
    watches=lambda watch, vis: watch.linear(),
    new=lambda vis, name, scratch: State(),
    restore=restore,
    files=files,
)
