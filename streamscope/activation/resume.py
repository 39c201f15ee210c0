"""Per-layer checkpoints of an activation run, so a killed run continues from its last finished decoder layer.

After decoder layer i, ``save_layer`` writes, in ``OUT/.activations-resume/``:
``layer-000i.npz`` (every probe's state of that layer's modules, as ``Collector.close_layer`` dumps them), then
``hidden-000i.npy`` (every sample's hidden states after layer i), then ``state.json`` (``done: i``), and only
then removes ``hidden-00(i-1).npy``: a kill at any point leaves a consistent set. The fingerprint (the
checkpoint's tensor bytes, the token ids, every config key that changes a result) is checked before anything
is reused; any difference starts afresh. The folder is removed when the run's files are written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

FOLDER = ".activations-resume"


def fingerprint(index, input_ids, config: dict, dtype) -> str:
    """What decides the results: tensor bytes, token ids, config (not the memory budget, not the figures' looks)."""
    from streamscope.io.fingerprint import tensor_fingerprint

    h = hashlib.blake2b(digest_size=16)
    for info in index:
        h.update(tensor_fingerprint(info).encode())
    h.update(np.ascontiguousarray(input_ids.numpy()).tobytes())
    kept = {k: v for k, v in config.items() if k not in ("memory", "visualization")}
    vis = {k: v for k, v in config["visualization"].items() if k not in ("save_dir", "dpi")}
    h.update(json.dumps([kept, vis, config["memory"]["device"], str(dtype)], sort_keys=True, default=str).encode())
    return h.hexdigest()


class LayerCheckpoint:
    def __init__(self, out: Path, fingerprint: str):
        self.dir = Path(out) / FOLDER
        self.fingerprint = fingerprint
        self.done = -1  # the last layer whose checkpoint is complete

    def load(self) -> tuple[int, object, bool, list[dict]] | None:
        """``(last finished layer, its hidden states, whether layers return tuples, every finished layer's
        dumps)``, or None (nothing to resume, or a checkpoint of another input or config, which is then removed)."""
        try:
            state = json.loads((self.dir / "state.json").read_text())
            if state.get("fingerprint") != self.fingerprint:
                raise ValueError("another run")
            done = int(state["done"])
            hidden = _tensor(np.load(self.dir / f"hidden-{done:04d}.npy", mmap_mode="c"), state["dtype"])
            dumps = [load_dumps(self.dir / f"layer-{i:04d}.npz") for i in range(done + 1)]
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
            self.clear()
            return None
        self.done = done
        return done, hidden, bool(state.get("tuple")), dumps

    def save_layer(self, i: int, dumps: dict, hidden, as_tuple: bool) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        _atomic_npz(self.dir / f"layer-{i:04d}.npz", dumps)
        tmp = self.dir / f".hidden-{i:04d}.npy"
        np.save(tmp, _array(hidden))
        os.replace(tmp, self.dir / f"hidden-{i:04d}.npy")
        _atomic_text(self.dir / "state.json", json.dumps({"fingerprint": self.fingerprint, "done": i, "tuple": as_tuple,
                                                          "dtype": str(hidden.dtype).replace("torch.", "")}))
        self.done = i
        if i > 0:
            (self.dir / f"hidden-{i - 1:04d}.npy").unlink(missing_ok=True)

    def save_rest(self, dumps: dict) -> None:
        """The states of the modules outside the decoder layers, once the run is over (a worker's share)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        _atomic_npz(self.dir / "rest.npz", dumps)

    def parts(self) -> list[Path]:
        """The files of every dump this checkpoint holds, each layer's then the rest's (a worker's share);
        ``load_dumps`` reads one."""
        return [f for f in sorted(self.dir.glob("layer-*.npz")) + [self.dir / "rest.npz"] if f.is_file()]

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _array(t) -> np.ndarray:
    """A tensor's bytes as numpy holds them (bfloat16, which numpy lacks, as int16)."""
    import torch

    return (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy()


def _tensor(a: np.ndarray, dtype: str):
    import torch

    t = torch.from_numpy(a)
    return t.view(torch.bfloat16) if dtype == "bfloat16" else t


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _atomic_npz(path: Path, dumps: dict) -> None:
    """``{probe: {module: {field: array}}}`` as one npz: arrays ``a0, a1, ...`` and their keys in ``index``."""
    keys, arrays = [], {}
    for probe, modules in dumps.items():
        for module, fields in modules.items():
            for name, value in fields.items():
                arrays[f"a{len(keys)}"] = np.asarray(value)
                keys.append([probe, module, name])
    arrays["index"] = np.frombuffer(json.dumps(keys).encode(), np.uint8)
    tmp = path.with_name("." + path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_dumps(path: Path) -> dict:
    out: dict = {}
    with np.load(path, allow_pickle=False) as z:
        for i, (probe, module, name) in enumerate(json.loads(bytes(z["index"]).decode())):
            out.setdefault(probe, {}).setdefault(module, {})[name] = z[f"a{i}"]
    return out
