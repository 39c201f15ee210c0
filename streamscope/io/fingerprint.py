"""Identity of a tensor's bytes, so a resumed run reuses only results of the same bytes."""

from __future__ import annotations

import hashlib
import os

from streamscope.io.tensor import TensorInfo

SAMPLE_BYTES = 4096  # bytes hashed at the start, middle and end of each tensor


def tensor_fingerprint(info: TensorInfo) -> str:
    """Identity of a tensor's bytes for resume: the file's size, times and inode, and a hash of samples.

    ``ctime`` and the inode change whenever a file is rewritten or replaced, even when its mtime is restored;
    the sampled bytes catch an in-place edit of the tensor itself.
    """
    st = os.stat(info.shard)
    digest = hashlib.blake2b(digest_size=8)
    with open(info.shard, "rb") as f:
        for at in sorted({info.begin, max(info.begin, (info.begin + info.end) // 2 - SAMPLE_BYTES // 2), max(info.begin, info.end - SAMPLE_BYTES)}):
            f.seek(at)
            digest.update(f.read(min(SAMPLE_BYTES, info.end - at)))
    return (f"{info.shard.name}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}:{info.begin}:{info.end}:"
            f"{info.dtype}:{info.shape}:{digest.hexdigest()}")  # fmt: skip
