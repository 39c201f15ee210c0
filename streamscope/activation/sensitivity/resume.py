"""Per-layer checkpoints of a sensitivity run's first pass, so a killed run continues after its last finished
decoder layer (as ``activation.resume`` does for a profile).

After layer i: ``layer-000i.json`` (that layer's local errors, smoothing curves and each stream's divergence),
the float stream's hidden states and each quantized stream's (``hidden-000i.npy``, ``stream-K-000i.npy``), then
``state.json``; the previous layer's hidden states go only after that, so a kill at any point leaves a
consistent set. The fingerprint adds the sensitivity options to the activation run's (checkpoint bytes, token
ids, config); any difference starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from streamscope.activation.resume import _array, _atomic_text, _tensor
from streamscope.activation.resume import fingerprint as run_fingerprint

FOLDER = ".sensitivity-resume"


def fingerprint(prep, opts, recipes) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(run_fingerprint(prep.index, prep.ids, prep.config, prep.dtype).encode())
    what = [list(opts.schemes), opts.local, opts.smoothquant, list(opts.alphas), [(r.name, r.scheme, r.overrides, r.ignore) for r in recipes]]
    h.update(json.dumps(what, default=str).encode())
    return h.hexdigest()


class SensitivityCheckpoint:
    def __init__(self, out: Path, fingerprint: str):
        self.dir = Path(out) / FOLDER
        self.fingerprint = fingerprint
        self.done = -1

    def load(self, n_streams: int):
        """``(last finished layer, float hidden, [stream hidden], as_tuple, [per-layer records])`` or None."""
        try:
            state = json.loads((self.dir / "state.json").read_text())
            if state.get("fingerprint") != self.fingerprint or state.get("streams") != n_streams:
                raise ValueError("another run")
            done, dtype = int(state["done"]), state["dtype"]
            hidden = _tensor(np.load(self.dir / f"hidden-{done:04d}.npy", mmap_mode="c"), dtype)
            streams = [_tensor(np.load(self.dir / f"stream-{k}-{done:04d}.npy", mmap_mode="c"), dtype) for k in range(n_streams)]
            layers = [json.loads((self.dir / f"layer-{i:04d}.json").read_text()) for i in range(done + 1)]
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
            self.clear()
            return None
        self.done = done
        return done, hidden, streams, bool(state.get("tuple")), layers

    def save(self, i: int, record: dict, hidden, streams: list, as_tuple: bool) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        _atomic_text(self.dir / f"layer-{i:04d}.json", json.dumps(record))
        for name, t in [(f"hidden-{i:04d}", hidden)] + [(f"stream-{k}-{i:04d}", s) for k, s in enumerate(streams)]:
            tmp = self.dir / f".{name}.npy"
            np.save(tmp, _array(t))
            os.replace(tmp, self.dir / f"{name}.npy")
        _atomic_text(self.dir / "state.json", json.dumps({"fingerprint": self.fingerprint, "done": i, "tuple": as_tuple, "streams": len(streams),
                                                          "dtype": str(hidden.dtype).replace("torch.", "")}))  # fmt: skip
        self.done = i
        if i > 0:
            for old in [f"hidden-{i - 1:04d}"] + [f"stream-{k}-{i - 1:04d}" for k in range(len(streams))]:
                (self.dir / f"{old}.npy").unlink(missing_ok=True)

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
