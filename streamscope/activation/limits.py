"""What a run would allocate, checked against the machine before it is allocated.

A config can ask for more than any machine holds (``data.num_samples: 1000000000``, ``max_position_embeddings:
2**34``); allocating it first fails deep inside torch, or takes the machine's memory. Each check here compares
one size with what is there (memory available now, free disk of the output directory) and refuses with one
line that names the size's inputs and the fix.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from streamscope.errors import StreamscopeError
from streamscope.units import format_bytes


class LimitError(StreamscopeError, ValueError):
    """A run would need more memory or disk than the machine has."""

    hint = "lower data.num_samples or data.seq_len, raise --memory-budget, or choose an --out on a disk with more free space"


class BuildLimitError(LimitError):
    """Building the model of a ``config.json`` would take more memory than the machine has."""

    hint = "check the config.json values named: a model of this size cannot be built here, and they may not describe these weights"


def memory_available() -> int:
    """Bytes of memory the operating system can give now (without swapping)."""
    import psutil

    return int(psutil.virtual_memory().available)


def memory_total() -> int:
    """Bytes of memory and swap: no single allocation larger than this can succeed."""
    import psutil

    return int(psutil.virtual_memory().total + psutil.swap_memory().total)


def disk_free(path: str | Path) -> int:
    """Free bytes on the disk that holds ``path`` (or, when it does not exist yet, its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return int(shutil.disk_usage(path).free)
    except OSError:
        return 0


def check_sample_ids(num_samples: int, seq_len: int) -> int:
    """The bytes of the ``(num_samples, seq_len)`` int64 token ids; refused when over the memory available.

    Raises:
        LimitError: the ids would not fit.
    """
    nbytes = num_samples * seq_len * 8
    available = memory_available()
    if nbytes > available:
        raise LimitError(f"data.num_samples {num_samples} x data.seq_len {seq_len} token ids take {format_bytes(nbytes)}, more than the "
                         f"{format_bytes(available)} of memory available")  # fmt: skip
    return nbytes


def hidden_size(model_config) -> int | None:
    """The width of the hidden states of a transformers config (its text config for a multimodal model)."""
    get_text = getattr(model_config, "get_text_config", None)
    text = get_text() if callable(get_text) else getattr(model_config, "text_config", None) or model_config
    for key in ("hidden_size", "n_embd", "d_model"):
        v = getattr(text, key, None)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def check_hidden_states(num_samples: int, seq_len: int, width: int | None, dtype, budget: int | None, out_dir: str | Path) -> int:
    """Refuse a run whose hidden states (``num_samples x seq_len x width`` values of ``dtype``) fit neither the
    memory budget nor, spilled to ``out_dir`` as ``forward`` spills them past the budget, the free disk there.

    Args:
        num_samples, seq_len: ``data.num_samples`` and ``data.seq_len``.
        width: the hidden size (``hidden_size(model.config)``); None skips the check.
        dtype: the compute dtype the states are held in; bfloat16 states are never spilled (numpy has no
            bfloat16), so they must fit the memory available.
        budget: bytes the states may take in memory (``memory.budget``); None: half the memory available.
        out_dir: the output directory (spills go to ``out_dir/.spill``).

    Returns:
        The hidden states' bytes.

    Raises:
        LimitError: they would not fit.

    Example:
        >>> check_hidden_states(64, 1024, 4096, torch.float32, budget=2 << 30, out_dir="results/x")  # doctest: +SKIP
        1073741824
    """
    import torch

    if not width:
        return 0
    size = torch.empty((), dtype=dtype).element_size()
    nbytes = num_samples * seq_len * width * size
    what = f"data.num_samples {num_samples} x data.seq_len {seq_len} x hidden size {width} x {size} bytes = {format_bytes(nbytes)} of hidden states"
    if dtype == torch.bfloat16:
        available = memory_available()
        if nbytes > available:
            raise LimitError(f"{what}, more than the {format_bytes(available)} of memory available (bfloat16 states are not spilled to disk)")
        return nbytes
    memory = memory_available() // 2 if budget is None else budget
    disk = disk_free(out_dir)
    if nbytes > memory + disk:
        raise LimitError(f"{what}, more than the memory budget ({format_bytes(memory)}) plus the free disk to spill them to under "
                         f"{out_dir} ({format_bytes(disk)})")  # fmt: skip
    return nbytes


def check_build(where: str | Path, buffers: list[tuple[str, tuple, int]], largest_param: tuple[str, tuple, int] | None,
                explain: Callable[[tuple], str] = lambda shape: "") -> None:  # fmt: skip
    """Refuse to build a model whose construction would allocate more than the machine has.

    Building on the meta device keeps parameters out of memory, but each is allocated (not touched) while it is
    created, and every buffer is computed in memory: ``buffers`` lists ``(name, shape, bytes)`` of every buffer,
    ``largest_param`` the largest parameter. ``explain(shape)``: the config values behind a shape, for the message.

    Raises:
        BuildLimitError: the buffers exceed the memory available, or one parameter all memory and swap.
    """
    total = sum(b for _, _, b in buffers)
    available = memory_available()
    if total > available:
        name, shape, nbytes = max(buffers, key=lambda b: b[2])
        raise BuildLimitError(f"{where}: building this model computes {format_bytes(total)} of buffers ({name} {list(shape)}: {format_bytes(nbytes)}), "
                         f"more than the {format_bytes(available)} of memory available{explain(shape)}")  # fmt: skip
    if largest_param is not None:
        name, shape, nbytes = largest_param
        limit = memory_total()
        if nbytes > limit:
            raise BuildLimitError(f"{where}: building this model allocates {format_bytes(nbytes)} for {name} {list(shape)}, more than this "
                             f"machine's {format_bytes(limit)} of memory and swap{explain(shape)}")  # fmt: skip
