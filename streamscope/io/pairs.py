"""Which tensor of one checkpoint is which tensor of another: the pairs ``compare`` sets side by side.

Two checkpoints in the same naming pair by name. A GGUF file (llama.cpp naming) set against a checkpoint in
Hugging Face naming is matched through the ``gguf`` package's name map (``gguf.original_names``), with the
number of heads whose rows llama.cpp permuted, so that a comparison can undo the permutation.
"""

from __future__ import annotations

from streamscope.io.checkpoint import CheckpointIndex
from streamscope.io.tensor import TensorInfo


def _is_gguf(index: CheckpointIndex) -> bool:
    return bool(index.files) and index.files[0].format == "gguf"


def match_tensors(a: CheckpointIndex, b: CheckpointIndex) -> dict[str, tuple[TensorInfo, int | None]]:
    """``{name in a: (its partner in b, heads or None)}``.

    ``heads``: the number of heads within which llama.cpp permuted the partner's rows (GGUF q and k
    projections of some architectures), None where the rows are in the original order. Tensors without a
    partner are left out; ``analyses.compare.tensor_changes`` lists them.
    """
    if _is_gguf(b) and not _is_gguf(a):
        from streamscope.io.gguf import original_names

        return {n: (b.tensors[g], heads) for n, (g, heads) in original_names(b, list(a.tensors)).items()}
    return {n: (b.tensors[n], None) for n in a.tensors if n in b.tensors}
