"""Calibration samples: ``num_samples`` windows of ``seq_len`` token ids, chosen with ``data.seed``.

Sources (``data.source``):
- ``random``: seeded random token ids over the model's vocabulary; always works offline, needs no tokenizer.
- ``custom:PATH``: ``.txt`` is tokenized as one stream; ``.json`` (a list of records or of strings),
  ``.jsonl`` and ``.csv`` give their ``data.custom.text_column`` (default ``text``), documents joined by a
  blank line.
- ``hf:NAME[:CONFIG[:SPLIT]]``: a dataset through the ``datasets`` library (split ``train`` by default).
- the seed's builtin names, mapped to hub datasets: ``pile``, ``wikitext2``, ``c4``, ``redpajama``.
Windows start at seeded random offsets of the token stream (so a stream shorter than ``seq_len`` is an error), or
with ``data.windows: consecutive`` follow one another from its start (llama.cpp's chunks).
A CSV cell may be a whole document (up to ``MAX_TEXT_CHARS``, past csv's default limit of 131072); a file that
cannot be parsed (JSON nested too deeply included) is one ``DataError`` naming it. The ids are refused before
they are made when they would not fit in memory (``limits.check_sample_ids``).
Without network a hub source fails at once with one line that suggests ``custom:`` or ``random``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from streamscope.errors import OptionError, StreamscopeError

BUILTIN = {
    "pile": ("monology/pile-uncopyrighted", None, "train"),
    "wikitext2": ("wikitext", "wikitext-2-raw-v1", "train"),
    "c4": ("allenai/c4", "en", "validation"),
    "redpajama": ("togethercomputer/RedPajama-Data-1T-Sample", None, "train"),
}
MAX_TEXT_CHARS = 200_000_000  # a calibration text larger than this is cut (tokenizing it all would take hours)


class DataError(StreamscopeError, ValueError):
    """The data source cannot give the samples asked for."""


def samples(source: str, num_samples: int, seq_len: int, seed: int, vocab_size: int, tokenizer=None,
            text_column: str = "text", fmt: str | None = None, windows: str = "random"):  # fmt: skip
    """``(num_samples, seq_len)`` int64 token ids: windows of the text's tokens at seeded random offsets, or
    (``windows="consecutive"``) its first ``num_samples`` x ``seq_len`` tokens in order, as llama.cpp's
    ``llama-imatrix`` and ``llama-perplexity`` cut a text into chunks.

    Raises:
        OptionError: ``source`` is not text, or ``seed`` is not a seed torch takes.
        LimitError: the ids would not fit in the memory available.
        DataError: the source cannot give the samples.
    """
    import torch

    from streamscope.activation import limits

    limits.check_sample_ids(num_samples, seq_len)
    try:
        gen = torch.Generator().manual_seed(seed)
    except (ValueError, TypeError, OverflowError, RuntimeError) as e:
        raise OptionError(f"data.seed {seed!r} is not a seed torch takes (an integer from -2**63 to 2**64 - 1)") from e
    if source == "random":
        return torch.randint(0, vocab_size, (num_samples, seq_len), generator=gen, dtype=torch.int64)
    text = read_text(source, text_column, fmt)
    if tokenizer is None:
        raise DataError(f"data.source {source!r} is text, and the model directory has no tokenizer; use data.source random")
    from streamscope.io.tokenizer import encode

    ids = torch.tensor(encode(tokenizer, text), dtype=torch.int64)
    if ids.numel() < seq_len:
        raise DataError(f"{source}: {ids.numel()} tokens, fewer than data.seq_len {seq_len}; give more text or a smaller seq_len")
    if windows == "consecutive":
        if ids.numel() < num_samples * seq_len:
            raise DataError(f"{source}: {ids.numel()} tokens, fewer than data.num_samples x data.seq_len = {num_samples * seq_len} for "
                            "consecutive windows; give more text, fewer samples, or data.windows random")  # fmt: skip
        return ids[: num_samples * seq_len].reshape(num_samples, seq_len).clone()
    starts = torch.randint(0, ids.numel() - seq_len + 1, (num_samples,), generator=gen)
    return torch.stack([ids[s : s + seq_len] for s in starts.tolist()])


def read_text(source: str, text_column: str = "text", fmt: str | None = None) -> str:
    if not isinstance(source, str):
        raise OptionError(f"data.source must be text: random, custom:PATH, hf:NAME[:CONFIG[:SPLIT]] or one of {', '.join(BUILTIN)}; got {source!r}")
    if source.startswith("custom:"):
        return _custom(Path(source[len("custom:") :]), text_column, fmt)
    if source.startswith("hf:") or source in BUILTIN:
        return _hub(source, text_column)
    raise OptionError(f"data.source {source!r}: use random, custom:PATH, hf:NAME[:CONFIG[:SPLIT]] or one of {', '.join(BUILTIN)}")


def _custom(path: Path, column: str, fmt: str | None) -> str:
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    if not isinstance(column, str):
        raise OptionError(f"data.custom.text_column must be one column name (text); got {column!r}")
    if fmt is not None and not isinstance(fmt, str):
        raise OptionError(f"data.custom.format must be null or one of txt, json, jsonl, csv; got {fmt!r}")
    kind = (fmt or path.suffix.lstrip(".")).lower()
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read as UTF-8 text ({e})") from e
    if kind == "txt" or kind not in ("json", "jsonl", "csv"):
        docs = [raw]
    elif kind == "jsonl":
        docs = []
        for n, line in enumerate(raw.splitlines(), 1):
            if line.strip():
                docs.append(_field(_json(line, path, f"line {n}: "), column, path))
    elif kind == "json":
        data = _json(raw, path)
        if isinstance(data, dict) and isinstance(data.get(column), list):
            data = data[column]
        if not isinstance(data, list):
            raise DataError(f"{path}: a JSON data file must hold a list of records (or of strings)")
        docs = [_field(r, column, path) for r in data]
    else:
        docs = _csv(raw, column, path)
    text = "\n\n".join(d for d in docs if d)
    if not text.strip():
        raise DataError(f"{path}: holds no text")
    return text[:MAX_TEXT_CHARS]


def _json(text: str, path: Path, where: str = ""):
    try:
        return json.loads(text)
    except RecursionError as e:
        raise DataError(f"{path}: {where}the JSON is nested too deeply to read") from e
    except ValueError as e:  # bad JSON, an integer of more digits than Python converts
        raise DataError(f"{path}: {where}not valid JSON ({str(e)[:200]})") from e


def _csv(raw: str, column: str, path: Path) -> list[str]:
    """The ``column`` of every row. A cell may hold up to ``MAX_TEXT_CHARS`` characters (csv's own limit is
    131072: one long document per row is a calibration file's usual shape); rows may span lines when quoted."""
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, MAX_TEXT_CHARS))
    try:
        reader = csv.DictReader(io.StringIO(raw, newline=""))
        rows = list(reader)
    except csv.Error as e:
        raise DataError(f"{path}: line {reader.line_num + 1}: not CSV ({e})") from e
    finally:
        csv.field_size_limit(limit)
    header = reader.fieldnames or []
    if rows and column not in header:
        raise DataError(f"{path}: no column {column!r} (columns: {', '.join(str(h) for h in header)}); set data.custom.text_column")
    return [r.get(column) or "" for r in rows]


def _field(record, column: str, path: Path) -> str:
    if isinstance(record, str):
        return record
    if isinstance(record, dict) and column in record:
        return str(record[column] or "")
    keys = ", ".join(record) if isinstance(record, dict) else type(record).__name__
    raise DataError(f"{path}: a record has no {column!r} field (has: {keys}); set data.custom.text_column")


def _hub(source: str, column: str) -> str:
    if source in BUILTIN:
        name, config, split = BUILTIN[source]
    else:
        parts = source[len("hf:") :].split(":")
        name, config, split = parts[0], (parts[1] or None) if len(parts) > 1 else None, parts[2] if len(parts) > 2 else "train"
    hint = "; offline, use data.source custom:PATH (a text file) or random"
    try:
        from huggingface_hub import HfApi

        HfApi().dataset_info(name, timeout=10)
    except Exception as e:  # noqa: BLE001 - any failure to reach the hub is the same message to the user
        raise DataError(f"data.source {source}: the hub dataset {name!r} cannot be reached ({type(e).__name__}){hint}") from e
    try:
        import datasets
    except ImportError as e:
        raise DataError(f"data.source {source}: needs the datasets package (pip install 'streamscope[activations]'){hint}") from e
    try:
        ds = datasets.load_dataset(name, config, split=split, streaming=True)
        texts, size = [], 0
        for row in ds:
            t = str(row.get(column) or row.get("text") or "")
            texts.append(t)
            size += len(t)
            if size >= 4_000_000:
                break
    except Exception as e:  # noqa: BLE001
        raise DataError(f"data.source {source}: loading failed ({str(e).splitlines()[0][:200]}){hint}") from e
    return "\n\n".join(texts)
