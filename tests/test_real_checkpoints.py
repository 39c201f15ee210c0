"""Every command end to end, through the CLI, on checkpoints laid out as the hub's are: a tiny model of each
family with a real tokenizer beside it (``tiny_models.build_hub``), all-MiniLM-L6-v2 as its package ships it,
and GGUF files that carry their vocabulary. Tokens are shown as a reader sees them wherever they are shown.

What a token should show (``shown``) is worked out here from the vocabulary alone, independently of
``streamscope.io.tokenizer``: the piece with the tokenizer's markers undone (a byte-level ``Ġbrutal`` is
`` brutal``, ``Ċ`` a newline; a SentencePiece ``▁brutal`` is `` brutal``), None past the vocabulary (models pad
their embedding matrix beyond the tokenizer's ids).
"""

from __future__ import annotations

import json
import re
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from streamscope.cli import app
from tests import tiny_models

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

runner = CliRunner()
FAMILIES = list(tiny_models.HUB)
#: scan, params, embeddings on these (activations run on every family): one per tokenizer kind and layout
SCANNED = ["llama", "gpt2", "mixtral", "gemma2", "qwen2_5_vl", "minilm"]
#: the decoder layers as each family names them: the default outlier.pattern (null) watches these
LAYERS = {"gpt2": "transformer.h", "minilm": "encoder.layer", "qwen2_5_vl": "model.language_model.layers"}


def _invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, f"{' '.join(map(str, args))}\n{result.output}\n{result.exception!r}"
    return result


@pytest.fixture(scope="module")
def hub(hub_checkpoint):
    return hub_checkpoint


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "calibration.txt"
    path.write_text(tiny_models.TEXT, encoding="utf-8")
    return path


@lru_cache(maxsize=1)
def _bytes_of() -> dict[str, int]:
    """GPT-2's byte-level alphabet, inverted: the character that stands for each byte -> the byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, n = {}, 0
    for b in range(256):
        chars[chr(b) if b in printable else chr(256 + (n := n + 1) - 1)] = b
    return chars


def shown_piece(piece: str | None, kind: str) -> str | None:
    if piece is None:
        return None
    if kind == "byte_level" and all(c in _bytes_of() for c in piece):
        return bytes(_bytes_of()[c] for c in piece).decode("utf-8", errors="replace")
    if kind == "sentencepiece":
        if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            return bytes([int(piece[3:5], 16)]).decode("utf-8", errors="replace")
        return piece.replace("▁", " ")
    return piece


@lru_cache(maxsize=16)
def _vocabulary(directory: Path) -> tuple[dict[int, str], str]:
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(directory / "tokenizer.json"))
    spec = json.loads(raw.to_str())
    decoder = json.dumps(spec.get("decoder"), ensure_ascii=False)
    kind = "byte_level" if "ByteLevel" in decoder else "sentencepiece" if "▁" in decoder else "wordpiece"
    return {i: t for t, i in raw.get_vocab(with_added_tokens=True).items()}, kind


def shown(directory: Path, i: int) -> str | None:
    """What token ``i`` of the checkpoint in ``directory`` should show."""
    vocab, kind = _vocabulary(directory)
    return shown_piece(vocab.get(i), kind)


def _same(token: str | None, want: str | None, family: str) -> bool:
    """``token`` shows ``want``: a lone token reads as inside a text (Llama-2-style decoders, as in Mistral,
    Mixtral and Phi-3 repos, strip the first space of a text: a lone ``▁brutal`` still shows `` brutal``)."""
    return token == want


#: matrices whose rows are the vocabulary's tokens (positions and token types are not)
VOCAB_ROWS = re.compile(r"embed_tokens|wte|word_embeddings|lm_head|token_embd|^output\.weight")


def assert_rows_decoded(directory: Path, rows: list[dict], where: str, family: str = "") -> None:
    assert rows, where
    if not VOCAB_ROWS.search(where.split()[-1]):
        assert all(r["token"] is None for r in rows), f"{where}: its rows are not tokens"
        return
    for r in rows:
        assert _same(r["token"], shown(directory, r["id"]), family), f"{where}: id {r['id']} shows {r['token']!r}"
        assert r["token"] is None or not any(c in r["token"] for c in "ĠĊ▁"), f"{where}: {r['token']!r}"


def _stored_numel(directory: Path) -> int:
    from safetensors import safe_open

    total = 0
    for f in directory.glob("*.safetensors"):
        with safe_open(str(f), "np") as st:
            # buffers saved beside the weights (BERT's position_ids, int64) are no parameters
            shapes = [st.get_slice(k).get_shape() for k in st.keys() if st.get_slice(k).get_dtype().startswith(("F", "BF"))]
            total += sum(int(np.prod(shape)) for shape in shapes)
    return total


def _rows(directory: Path, name: str) -> int:
    from safetensors import safe_open

    for f in directory.glob("*.safetensors"):
        with safe_open(str(f), "np") as st:
            if name in st.keys():
                return st.get_slice(name).get_shape()[0]
    raise KeyError(name)


def _encoding(directory: Path, text: str) -> list[int]:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory))(text, add_special_tokens=False)["input_ids"]


def _contains(seq: list[int], run: list[int]) -> bool:
    n = len(run)
    return any(seq[i : i + n] == run for i in range(len(seq) - n + 1))


# --- the fixtures themselves ----------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_hub_directory_holds_what_the_hub_holds(hub, family):
    from transformers import AutoConfig, AutoTokenizer

    d = hub(family)
    spec = tiny_models.HUB[family]
    for f in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors.index.json"):
        assert (d / f).is_file(), f
    config = json.loads((d / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == spec["cls"]
    assert (d / "special_tokens_map.json").is_file() == (spec["layout"] == "v4")
    has_template = "chat_template" in config or (d / "chat_template.jinja").is_file()
    assert has_template == (spec["chat"] is not None)  # GPT-2's repo has no chat template
    tok = AutoTokenizer.from_pretrained(str(d))
    assert 300 <= len(tok) <= 500
    cfg = AutoConfig.from_pretrained(str(d))
    assert getattr(cfg, "text_config", cfg).vocab_size >= len(tok)
    ids = _encoding(d, tiny_models.TEXT)
    assert tok.decode(ids) == tiny_models.TEXT  # the tokenizer round-trips the text, "$$" and newlines included
    assert " brutal" in [tok.decode([i]) for i in ids] or "▁brutal" in tok.convert_ids_to_tokens(ids)
    if spec["chat"]:
        prompt = tok.apply_chat_template([{"role": "user", "content": "Was the winter brutal?"}], tokenize=False)
        assert "Was the winter brutal?" in prompt
    generation = json.loads((d / "generation_config.json").read_text())
    assert generation.get("eos_token_id") == tok.eos_token_id


def test_hub_directory_is_deterministic(hub, tmp_path):
    first = hub("gpt2")
    again = tiny_models.build_hub("gpt2", tmp_path / "again")
    for f in sorted(p.name for p in first.iterdir()):
        assert (first / f).read_bytes() == (again / f).read_bytes(), f


# --- activations on every family --------------------------------------------------------------------------------


@pytest.mark.parametrize("family", [*FAMILIES, "minilm"])
def test_activations_on_text(hub, text_file, tmp_path, family):
    import zarr

    d, out = hub(family), tmp_path / "act"
    _invoke("activations", d, "--data.source", f"custom:{text_file}", "--data.num_samples", "2", "--data.seq_len", "16",
            "--outlier.threshold", "1.5", "--out", out, "-q")  # fmt: skip
    for f in ("activations.json", "activations.csv", "outliers.csv", "arrays.zarr"):
        assert (out / f).exists(), f
    run = json.loads((out / "activations.json").read_text())["run"]
    assert run["source"] == f"custom:{text_file}" and run["num_samples"] == 2 and run["seq_len"] == 16
    ids = np.asarray(zarr.open_group(str(out / "arrays.zarr"), mode="r")["activations/input_ids"][:])
    assert ids.shape == (2, 16)
    stream = _encoding(d, tiny_models.TEXT)
    for s, sample in enumerate(ids.tolist()):
        assert _contains(stream, sample), f"sample {s} is not a window of the text's tokens: {sample}"
    import pandas as pd

    outliers = pd.read_csv(out / "outliers.csv", keep_default_na=False, dtype={"token": str})
    assert len(outliers) > 0, "outlier.threshold 1.5 finds outlier tokens"
    layers = LAYERS.get(family, "model.layers")
    assert set(outliers["module"]) <= {f"{layers}.{i}" for i in range(run["n_layers"])}, set(outliers["module"])
    for row in outliers.itertuples():
        assert row.token_id == ids[row.sample, row.position]
        want = shown(d, row.token_id)
        where = f"{row.module} sample {row.sample} position {row.position}"
        assert _same(row.token, want, family), f"{where}: {row.token!r}, want {want!r}"
        assert not any(c in row.token for c in "ĠĊ▁"), row.token


# --- scan, params, embeddings on a representative few -----------------------------------------------------------


@pytest.fixture(scope="module")
def scanned(hub, tmp_path_factory):
    """family -> (checkpoint, results): ``scan`` into results/scan and ``embeddings`` into results/emb, once."""
    done = {}

    def run(family):
        if family not in done:
            d, out = hub(family), tmp_path_factory.mktemp(f"results-{family}")
            _invoke("scan", d, "--out", out / "scan", "--quiet")
            _invoke("embeddings", d, "--k-range", "2:4", "--out", out / "emb")
            done[family] = d, out
        return done[family]

    return run


@pytest.mark.parametrize("family", SCANNED)
def test_scan(scanned, family):
    d, out = scanned(family)
    for f in ("tensors.json", "tensors.csv", "tensors.parquet", "model.json", "arrays.zarr"):
        assert (out / "scan" / f).exists(), f
    model = json.loads((out / "scan" / "model.json").read_text())
    assert any(VOCAB_ROWS.search(n) for n in model["embedding"]), "the embedding analysis found the token embeddings"
    for name, e in model["embedding"].items():
        assert_rows_decoded(d, e["largest"] + e["smallest"], f"model.json embedding {name}", family)
    tensors = json.loads((out / "scan" / "tensors.json").read_text())
    for name, e in model["embedding"].items():
        assert tensors[name]["embedding"]["largest"] == e["largest"], name


@pytest.mark.parametrize("family", SCANNED)
def test_params(hub, family):
    d = hub(family)
    info = json.loads(_invoke("params", d, "--json").output)
    model_type = json.loads((d / "config.json").read_text())["model_type"]
    assert info["config_found"] and info["model_type"].startswith(model_type)  # qwen2_5_vl's is qwen2_5_vl_text
    assert info["total_params"] == _stored_numel(d)


@pytest.mark.parametrize("family", SCANNED)
def test_embeddings(scanned, family):
    d, out = scanned(family)
    emb = json.loads((out / "emb" / "embeddings.json").read_text())
    assert any(VOCAB_ROWS.search(n) for n in emb["clusters"]), list(emb["clusters"])
    for name, e in emb["norms"].items():
        assert_rows_decoded(d, e["largest"] + e["smallest"], f"embeddings.json norms {name}", family)
    for name, c in emb["clusters"].items():
        assert 2 <= c["k"] <= 4 and sum(c["sizes"]) == _rows(d, name), name
        if VOCAB_ROWS.search(name):
            assert_rows_decoded(d, [t for cl in c["clusters"] for t in cl["tokens"]], f"embeddings.json clusters {name}", family)
    assert (out / "emb" / "clusters.csv").is_file()


@pytest.mark.parametrize("family", SCANNED)
def test_rows_that_are_not_tokens_show_no_token(scanned, family):
    """Positions (wpe, position_embeddings), token types and vision patch embeddings have rows that are no token."""
    d, out = scanned(family)
    emb = json.loads((out / "emb" / "embeddings.json").read_text())
    model = json.loads((out / "scan" / "model.json").read_text())
    others = [(f"model.json embedding {n}", e["largest"] + e["smallest"])
              for n, e in model["embedding"].items() if not VOCAB_ROWS.search(n)]  # fmt: skip
    others += [(f"embeddings.json clusters {n}", [t for cl in c["clusters"] for t in cl["tokens"]])
               for n, c in emb["clusters"].items() if not VOCAB_ROWS.search(n)]  # fmt: skip
    for where, rows in others:
        assert_rows_decoded(d, rows, where)


# --- a known row: " brutal" made the largest embedding row ----------------------------------------------------


def _with_loud_row(src: Path, dst: Path, token: str) -> int:
    """A copy of ``src`` whose embedding row of ``token`` is 50 times longer than any other; returns its id."""
    from safetensors.numpy import load_file, save_file
    from tokenizers import Tokenizer

    shutil.copytree(src, dst)
    tid = Tokenizer.from_file(str(dst / "tokenizer.json")).token_to_id(token)
    index = json.loads((dst / "model.safetensors.index.json").read_text())["weight_map"]
    for name in ("model.embed_tokens.weight", "transformer.wte.weight", "lm_head.weight"):
        if name in index:
            shard = dst / index[name]
            tensors = load_file(str(shard))
            tensors[name][tid] *= 50
            save_file(tensors, str(shard), metadata={"format": "pt"})
    return tid


@pytest.mark.parametrize("family,piece", [("gpt2", "Ġbrutal"), ("qwen2", "Ġbrutal"), ("gemma", "▁brutal"),
                                          ("mistral", "▁brutal")])  # fmt: skip
def test_largest_embedding_row_shows_brutal(hub, tmp_path, family, piece):
    d = tmp_path / "loud"
    tid = _with_loud_row(hub(family), d, piece)
    printed = _invoke("scan", d, "--out", tmp_path / "scan", "--select", "embed|wte").output
    model = json.loads((tmp_path / "scan" / "model.json").read_text())
    (name, e), = model["embedding"].items()
    assert e["largest"][0]["id"] == tid
    assert e["largest"][0]["token"] == " brutal"
    printed += _invoke("embeddings", d, "--k-range", "2:3", "--out", tmp_path / "emb").output
    rows = json.loads((tmp_path / "emb" / "embeddings.json").read_text())["norms"][name]["largest"]
    assert rows[0]["id"] == tid and rows[0]["token"] == " brutal"
    assert not any(c in printed for c in "ĠĊ▁"), "the tables show tokens as text"


def test_report_shows_brutal(hub, tmp_path):
    d = tmp_path / "loud"
    _with_loud_row(hub("gpt2"), d, "Ġbrutal")
    _invoke("scan", d, "--out", tmp_path / "scan", "--quiet")
    _invoke("report", tmp_path / "scan")
    page = (tmp_path / "scan" / "report.html").read_text(encoding="utf-8")
    assert "brutal" in page and "Ġ" not in page
    assert any((tmp_path / "scan" / "figures").iterdir())


# --- GGUF: the vocabulary in the file's metadata ---------------------------------------------------------------


def _gguf_with_vocabulary(path: Path, tokens: list[str], model: str, loud: int) -> None:
    gguf = pytest.importorskip("gguf")
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_embedding_length(32)
    w.add_context_length(64)
    w.add_tokenizer_model(model)
    w.add_token_list(tokens)
    embed = (rng.normal(size=(len(tokens), 32)) * 0.02).astype(np.float32)
    embed[loud] *= 50
    w.add_tensor("token_embd.weight", embed)
    w.add_tensor("blk.0.attn_norm.weight", np.ones(32, np.float32))
    w.add_tensor("output.weight", (rng.normal(size=(len(tokens), 32)) * 0.02).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("family,model,piece", [("gpt2", "gpt2", "Ġbrutal"), ("gemma", "llama", "▁brutal")])
def test_gguf_vocabulary_is_decoded(hub, tmp_path, family, model, piece):
    vocab, kind = _vocabulary(hub(family))
    tokens = [vocab[i] for i in range(len(vocab))]
    if model == "llama":
        tokens[-1] = "<0x0A>"  # SentencePiece's byte fallback for a newline
    loud = tokens.index(piece)
    f = tmp_path / "m.gguf"
    _gguf_with_vocabulary(f, tokens, model, loud)
    _invoke("scan", f, "--out", tmp_path / "scan", "--quiet")
    e = json.loads((tmp_path / "scan" / "model.json").read_text())["embedding"]["token_embd.weight"]
    assert e["largest"][0]["id"] == loud and e["largest"][0]["token"] == " brutal"
    for r in e["largest"] + e["smallest"]:
        assert r["token"] == shown_piece(tokens[r["id"]], kind), r
        assert not any(c in r["token"] for c in "ĠĊ▁"), r
    if model == "llama":
        from streamscope.io.tokenizer import decoder

        assert decoder(str(f))(len(tokens) - 1) == "\n"
