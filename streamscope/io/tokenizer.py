"""The tokenizer that ships beside a checkpoint: found with the weights, loaded as transformers loads it, and
used to show tokens as text.

- ``find(root, files)``: the file that holds the vocabulary: ``tokenizer.json``, ``vocab.txt`` or
  ``vocab.json`` in the checkpoint directory, else a GGUF file whose metadata carries ``tokenizer.ggml.tokens``.
- ``decoder(path)``: ``id -> text`` as a reader sees it (``Ġbrutal`` is `` brutal``, ``▁the`` is `` the``,
  ``<0x0A>`` is a newline). Light: the ``tokenizers`` library or the vocabulary alone, no transformers.
- ``load(directory)``: the tokenizer to encode calibration text, through ``transformers.AutoTokenizer`` from
  the directory (its ``tokenizer_config.json``, special tokens and chat template included), as every hub
  user loads it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable

from streamscope.errors import CheckpointError

#: Files that hold a vocabulary, in the order they are preferred.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json")


class TokenizerError(CheckpointError):
    """The checkpoint's tokenizer files cannot be read."""

    hint = "re-download the tokenizer files, or run with --data.source random (no tokenizer needed)"


def find(root: Path, files: Iterable = ()) -> Path | None:
    """The vocabulary of the checkpoint in ``root``: a tokenizer file, else a GGUF shard (``ShardFile``) whose
    metadata carries one."""
    found = next((root / n for n in TOKENIZER_FILES if (root / n).is_file()), None)
    if found is not None:
        return found
    return next((f.path for f in files if (f.config or {}).get("vocabulary")), None)


@lru_cache(maxsize=8)
def decoder(path: str) -> Callable[[int], str | None]:
    """``id -> text`` of one token from the vocabulary at ``path`` (None for an id outside it).

    Raises:
        TokenizerError: the file cannot be read as a vocabulary.
    """
    p = Path(path)
    try:
        if p.suffix == ".gguf":
            return _gguf_decoder(str(p))
        if p.name == "vocab.txt":
            vocab = p.read_text(encoding="utf-8").splitlines()
            return lambda i: vocab[i] if 0 <= i < len(vocab) else None
        if p.name == "vocab.json":
            return _vocab_json_decoder(p)
        tok = _one_token_tokenizer(p)
    except Exception as e:  # noqa: BLE001 - tokenizers raises plain Exception; JSON, OS and decoding errors too
        raise TokenizerError(f"{p}: the vocabulary cannot be read ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from e
    size = tok.get_vocab_size(with_added_tokens=True)
    return lambda i: tok.decode([i], skip_special_tokens=False) if 0 <= i < size else None


def _one_token_tokenizer(path: Path):
    """The tokenizer of ``tokenizer.json`` with its decoder set to show a token as it reads inside a text: the
    steps that only tidy the start of a text are dropped (Llama-2-style ``Strip`` of the first space, a
    ``Metaspace`` that drops the first token's space), so ``▁brutal`` is `` brutal`` as ``Ġbrutal`` is."""
    from tokenizers import Tokenizer

    spec = json.loads(path.read_text(encoding="utf-8"))

    def tidy(d):
        if not isinstance(d, dict):
            return d
        if d.get("type") == "Sequence" and isinstance(d.get("decoders"), list):
            d["decoders"] = [tidy(x) for x in d["decoders"] if not (isinstance(x, dict) and x.get("type") == "Strip")]
        elif d.get("type") == "Metaspace":
            d["prepend_scheme"] = "never"
        return d

    if isinstance(spec, dict) and isinstance(spec.get("decoder"), dict):
        spec["decoder"] = tidy(spec["decoder"])
    return Tokenizer.from_str(json.dumps(spec))


def load(directory: Path):
    """The tokenizer of the checkpoint in ``directory`` as ``transformers.AutoTokenizer`` loads it, or None when
    the directory has no tokenizer files.

    Raises:
        TokenizerError: the files are there and cannot be loaded.
    """
    if not any((directory / n).is_file() for n in (*TOKENIZER_FILES, "tokenizer_config.json", "tokenizer.model")):
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(directory))
    except Exception as e:  # noqa: BLE001 - a damaged file surfaces as any of a dozen types from transformers/tokenizers
        raise TokenizerError(f"{directory}: the tokenizer cannot be loaded ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})") from e


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` without special tokens (calibration text is a stream, not a prompt)."""
    return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]


@lru_cache(maxsize=1)
def _byte_chars() -> dict[str, int]:
    """The byte-level BPE alphabet (GPT-2's): printable bytes stand for themselves, the others for 256 + n."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def _from_byte_level(token: str) -> str:
    chars = _byte_chars()
    if not all(c in chars for c in token):
        return token  # an added or special token written in plain text
    return bytes(chars[c] for c in token).decode("utf-8", errors="replace")


def _from_sentencepiece(token: str) -> str:
    if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
        try:
            return bytes([int(token[3:5], 16)]).decode("utf-8", errors="replace")
        except ValueError:
            return token
    return token.replace("▁", " ")


def _vocab_json_decoder(p: Path):
    data = json.loads(p.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(isinstance(v, int) for v in data.values()):
        raise ValueError("a vocab.json maps each token to its integer id")
    inverse = {v: k for k, v in data.items()}
    return lambda i: _from_byte_level(inverse[i]) if i in inverse else None


@lru_cache(maxsize=4)
def _gguf_tokens(path: str) -> tuple[list[str], str] | None:
    try:
        from gguf import GGUFReader

        reader = GGUFReader(path)
    except Exception:  # noqa: BLE001 - an unreadable GGUF has no vocabulary for us; its own reader reports the error
        return None
    field = reader.fields.get("tokenizer.ggml.tokens")
    if field is None:
        return None
    tokens = [bytes(field.parts[i]).decode("utf-8", errors="replace") for i in field.data]
    model = reader.fields.get("tokenizer.ggml.model")
    kind = bytes(model.parts[model.data[0]]).decode("utf-8", errors="replace") if model is not None else ""
    return tokens, kind


def _gguf_decoder(path: str):
    found = _gguf_tokens(path)
    if found is None:
        raise ValueError("the GGUF metadata holds no tokenizer.ggml.tokens")
    tokens, kind = found
    text = _from_byte_level if kind == "gpt2" else _from_sentencepiece if kind == "llama" else (lambda t: t)
    return lambda i: text(tokens[i]) if 0 <= i < len(tokens) else None
