"""Find a checkpoint's shards and tensors from headers alone.

``CheckpointIndex.from_path`` accepts a single checkpoint file, a directory with a shard index
(``model.safetensors.index.json`` or any ``*.safetensors.index.json``), or a directory of shards without an
index; which reader parses the files is chosen by ``io.formats`` (suffix, then file magic). ``config.json``
and a tokenizer file beside the weights are picked up too.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterator

from streamscope.errors import CheckpointError
from streamscope.io import formats
from streamscope.io.names import NameInfo, classify
from streamscope.io.tensor import ShardFile, TensorInfo
from streamscope.io.tokenizer import find as find_tokenizer


@dataclass(repr=False)
class CheckpointIndex:
    """Every tensor of a checkpoint, with the shard and byte range holding it."""

    path: Path  # what the user gave
    root: Path  # directory holding the shards
    files: list[ShardFile]
    tensors: dict[str, TensorInfo]  # in shard order, then by offset: the order bytes lie on disk
    config: dict | None = None
    tokenizer_path: Path | None = None
    names: dict[str, NameInfo] = field(default_factory=dict)

    @classmethod
    def from_path(cls, path: str | os.PathLike) -> "CheckpointIndex":
        """Index a checkpoint from its headers; no tensor data is read.

        Args:
            path: a ``.safetensors`` file, or a directory holding shards (with or without an index JSON).

        Raises:
            CheckpointError: the path does not exist, holds no checkpoint file, or its index is inconsistent.
            HeaderError: a shard's header is malformed.

        Example:
            >>> index = CheckpointIndex.from_path("Qwen2.5-7B/")  # doctest: +SKIP
            >>> index.tensors["model.embed_tokens.weight"].shape  # doctest: +SKIP
            (152064, 3584)
        """
        path = Path(path).expanduser()
        if not path.exists():
            raise CheckpointError(f"{path}: no such file or directory")
        weight_map, index_file = None, None
        if not path.is_file() and not path.is_dir():
            raise CheckpointError(f"{path}: neither a regular file nor a directory")
        if path.is_file():
            root, files = path.parent, [formats.detect(path).open_file(path)]
        else:
            root = path
            found = formats.shards_in(path)
            if found is None:
                other = formats.other_files(path)
                hint = f" (found {', '.join(other[:3])}: convert to safetensors first)" if other else ""
                raise CheckpointError(f"{path}: the directory holds no checkpoint file (.safetensors, .gguf, .bin, .pt){hint}")
            fmt, shard_paths, index_file = found
            if index_file is not None:
                weight_map = {n: _shard_path(index_file, root, f) for n, f in _read_index(index_file).items()}
                shard_paths = list(dict.fromkeys(weight_map.values()))  # "x" and "./x" are one shard
            files = [fmt.open_file(p) for p in shard_paths]
        tensors: dict[str, TensorInfo] = {}
        for f in files:
            for t in sorted(f.tensors.values(), key=lambda t: t.begin):
                if weight_map is not None and weight_map.get(t.name) is not None and weight_map[t.name] != f.path:
                    continue  # the index assigns this name to another shard
                if t.name in tensors:
                    raise CheckpointError(f"{f.path}: tensor {t.name!r} also appears in {tensors[t.name].shard}")
                tensors[t.name] = t
        if weight_map is not None:
            missing = [n for n in weight_map if n not in tensors]
            if missing:
                raise CheckpointError(
                    f"{index_file}: {len(missing)} tensor(s) named in weight_map are not in their shard's header, "
                    f"e.g. {missing[0]!r} (expected in {weight_map[missing[0]].name})"
                )
        config = _read_json(root / "config.json") or next((f.config for f in files if f.config), None)
        tokenizer = find_tokenizer(root, files)
        return cls(path, root, files, tensors, config, tokenizer, {n: classify(n) for n in tensors})

    def __len__(self) -> int:
        return len(self.tensors)

    def __iter__(self) -> Iterator[TensorInfo]:
        return iter(self.tensors.values())

    def summary(self) -> str:
        """``'dir' safetensors, 211 tensors, 134.5M params, 3 shards``: what a repr shows of a checkpoint."""
        kinds = sorted({f.format for f in self.files})
        shards = f"{len(self.files)} shard" + ("s" if len(self.files) != 1 else "")
        name = self.path.name or str(self.path)
        return f"{name!r} {'+'.join(kinds) or 'empty'}, {len(self)} tensors, {_count(self.total_params)} params, {shards}"

    def __repr__(self) -> str:
        return f"<CheckpointIndex {self.summary()}>"

    @property
    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())

    @property
    def total_params(self) -> int:
        return sum(t.numel for t in self.tensors.values())

    def text_config(self) -> dict:
        """The language model's config (``text_config`` of multimodal configs), or an empty dict."""
        cfg = self.config or {}
        sub = cfg.get("text_config") or cfg.get("llm_config")
        return sub if isinstance(sub, dict) else cfg


def _count(n: int) -> str:
    """134.5M, 7.6B, 22.7K: a parameter count as people say it."""
    for size, unit in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "K")):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


#: Largest JSON side file read (config, index): real ones are kilobytes to a few megabytes.
MAX_JSON_BYTES = 256 << 20


def _read_json(path: Path) -> dict | None:
    """A JSON object from ``path``, None when there is no such file; anything else is one clear error."""
    if not path.exists():
        return None
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise CheckpointError(f"{path}: not a regular file")
        if st.st_size > MAX_JSON_BYTES:
            raise CheckpointError(f"{path}: {st.st_size} bytes, too large for a JSON side file")
        data = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError as e:
        raise CheckpointError(f"{path}: the JSON is nested too deeply") from e
    except ValueError as e:  # bad UTF-8 or JSON, a huge integer
        raise CheckpointError(f"{path}: not valid JSON ({str(e)[:200]})") from e
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read: {e.strerror or e}") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: holds a JSON {type(data).__name__}, expected an object")
    for key in ("text_config", "llm_config"):
        if key in data and not isinstance(data[key], (dict, type(None))):
            raise CheckpointError(f"{path}: {key!r} is a JSON {type(data[key]).__name__}, expected an object")
    return data


def _read_index(index_file: Path) -> dict[str, str]:
    data = _read_json(index_file)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f"{index_file}: no 'weight_map' object mapping tensor names to shard files")
    return weight_map


def _shard_path(index_file: Path, root: Path, name: str) -> Path:
    """The shard an index entry names: lexically inside ``root``; symlinks followed (the Hugging Face cache keeps
    ``snapshots/<rev>/x.safetensors`` as a link into ``blobs/``), to a regular file."""
    pure = PurePosixPath(name)
    if not name or "\0" in name or pure.is_absolute() or ".." in pure.parts or "\\" in name:
        raise CheckpointError(f"{index_file}: weight_map names {name!r}, which lies outside the checkpoint directory {root}")
    shard = root.joinpath(*pure.parts)  # normalised: "./x" and "x" are the same shard
    try:
        st = shard.stat()
    except FileNotFoundError:
        raise CheckpointError(f"{index_file}: weight_map names shard {name!r}, which does not exist in {root}") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{index_file}: weight_map names shard {name!r}, which cannot be opened: {e}") from e
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{index_file}: weight_map names {name!r}, which is not a regular file")
    return shard
