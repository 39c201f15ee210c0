"""Other checkpoint formats through the format seam: GGUF (llama.cpp) and PyTorch ``.bin`` shards."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import streamscope
from streamscope.cli import app
from streamscope.errors import CheckpointError, HeaderError
from conftest import scan_blocks

gguf = pytest.importorskip("gguf")
Q = gguf.GGMLQuantizationType
runner = CliRunner()


def _k_quant(rng, qtype, rows: int, cols: int) -> np.ndarray:
    """Raw blocks of a k-quant (the gguf package dequantizes them but cannot quantize): random codes, sane scales."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(rows, cols // block, size), dtype=np.uint8)
    raw[..., 0:2] = np.frombuffer(np.float16(0.01).tobytes(), np.uint8)  # d
    raw[..., 2:4] = np.frombuffer(np.float16(0.005).tobytes(), np.uint8)  # dmin
    return raw.reshape(rows, -1)


def write_gguf(path, seed: int = 0) -> dict[str, np.ndarray]:
    """A tiny Llama-like GGUF with every common type; returns the numpy-dequantized reference of each tensor."""
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_embedding_length(256)
    w.add_context_length(128)
    ref = {}
    for name, qtype, shape in [("token_embd.weight", Q.F16, (64, 256)), ("blk.0.attn_q.weight", Q.Q8_0, (256, 256)),
                               ("blk.0.attn_k.weight", Q.Q4_0, (128, 256)), ("blk.0.ffn_up.weight", Q.Q4_K, (512, 256)),
                               ("blk.0.attn_norm.weight", Q.F32, (256,)), ("output.weight", Q.BF16, (64, 256))]:  # fmt: skip
        a = (rng.normal(size=shape) * 0.02).astype(np.float32)
        if qtype == Q.F32:
            w.add_tensor(name, a)
            ref[name] = a
        elif qtype == Q.F16:
            w.add_tensor(name, a.astype(np.float16))
            ref[name] = a.astype(np.float16).astype(np.float32)
        else:
            q = _k_quant(rng, qtype, *shape) if qtype == Q.Q4_K else gguf.quants.quantize(a, qtype)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)
            ref[name] = gguf.quants.dequantize(q, qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return ref


def test_gguf_statistics_match_the_numpy_dequantized_reference(tmp_path):
    ref = write_gguf(tmp_path / "m.gguf")
    r = scan_blocks(tmp_path / "m.gguf", out=tmp_path / "o", analyses="all", memory_budget="16MB", block_elems=4096)  # many blocks
    assert not r.errors and set(r.tensors) == set(ref)
    for name, a in ref.items():
        a = a.astype(np.float64)
        b = r.tensors[name]["basic_stats"]
        assert b["mean"] == pytest.approx(a.mean(), abs=1e-7 * np.abs(a).mean())  # float32 block sums, float64 merge
        assert b["std"] == pytest.approx(a.std(ddof=1), rel=1e-6)
        assert b["abs_max"] == pytest.approx(np.abs(a).max(), rel=1e-7)
    info = {n: rec["info"] for n, rec in r.tensors.items()}
    assert info["blk.0.ffn_up.weight"]["dtype"] == "Q4_K" and info["blk.0.ffn_up.weight"]["shape"] == [512, 256]
    assert (info["blk.0.attn_q.weight"]["block_type"], info["blk.0.attn_q.weight"]["layer_index"]) == ("q_proj", 0)
    assert info["token_embd.weight"]["block_type"] == "embedding" and "token_embd.weight" in r.model["embedding"]
    spec = r.tensors["blk.0.attn_q.weight"]["spectral"]
    assert spec["max_singular_value"] == pytest.approx(float(np.linalg.svd(ref["blk.0.attn_q.weight"].astype(np.float64), compute_uv=False)[0]), rel=1e-6)


def test_gguf_params_from_its_metadata(tmp_path):
    write_gguf(tmp_path / "m.gguf")
    p = streamscope.params(tmp_path / "m.gguf")
    assert p["model_type"] == "llama" and p["total_params"] == 64 * 256 * 2 + 256 * 256 + 128 * 256 + 512 * 256 + 256
    att = p["layers"][0]["attention"]
    assert (att["num_heads"], att["num_kv_heads"]) == (4, 2)


def test_bad_gguf_is_one_line(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 40)
    with pytest.raises(HeaderError, match="invalid GGUF file"):
        streamscope.open(bad)
    result = runner.invoke(app, ["params", str(bad)])
    assert result.exit_code == 1 and str(bad) in result.output.replace("\n", "") and "Traceback" not in result.output


def test_pytorch_bin_shards_scan_like_safetensors(tmp_path):
    """Two ``pytorch_model-*.bin`` shards and their index, as transformers wrote them before safetensors."""
    from conftest import build_causal_lm
    from safetensors.torch import load_file

    st = build_causal_lm(tmp_path / "st", "llama", shard="300KB")
    state = {}
    for f in sorted(st.glob("*.safetensors")):
        state.update(load_file(str(f)))
    (tmp_path / "bin").mkdir()
    names = sorted(state)
    weight_map = {}
    for i, part in enumerate((names[: len(names) // 2], names[len(names) // 2 :])):
        shard = f"pytorch_model-{i + 1:05d}-of-00002.bin"
        torch.save({n: state[n] for n in part}, tmp_path / "bin" / shard)
        weight_map.update({n: shard for n in part})
    (tmp_path / "bin" / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (tmp_path / "bin" / "config.json").write_text((st / "config.json").read_text())
    a = streamscope.scan(st, out=tmp_path / "a", analyses="all")
    b = streamscope.scan(tmp_path / "bin", out=tmp_path / "b", analyses="all")
    assert set(a.tensors) == set(b.tensors) and not b.errors
    for name, rec in a.tensors.items():
        assert b.tensors[name]["basic_stats"] == rec["basic_stats"], name
    assert streamscope.params(tmp_path / "bin")["total_params"] == streamscope.params(st)["total_params"]
    shard = sorted((tmp_path / "bin").glob("*.bin"))[0]
    assert streamscope.open(shard).index.files[0].format == "pytorch"


def test_pickles_with_objects_are_refused(tmp_path):
    import pathlib

    path = tmp_path / "evil.pt"
    torch.save({"w": torch.ones(2), "extra": pathlib.PurePosixPath("/x")}, path)  # an object weights_only refuses
    with pytest.raises(HeaderError, match="holds more than tensors"):
        streamscope.open(path)
    result = runner.invoke(app, ["scan", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "weights_only" in result.output and "Traceback" not in result.output
    with pytest.raises(CheckpointError, match="no flat state dict"):
        torch.save([torch.ones(2)], tmp_path / "list.pt")
        streamscope.open(tmp_path / "list.pt")


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's q/k row order: each head's two rotary halves interleaved (convert_hf_to_gguf's permute)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def to_gguf(src, path, qtype) -> None:
    """Convert a tiny Hugging Face Llama to GGUF the way llama.cpp does (names, q/k permutation, quantization)."""
    from safetensors.numpy import load_file

    config = json.loads((src / "config.json").read_text())
    state = {}
    for f in sorted(src.glob("*.safetensors")):
        state.update({k: v.astype(np.float32) for k, v in load_file(str(f)).items()})  # bf16 arrives as float32-able
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config["num_hidden_layers"])
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(config["num_hidden_layers"])
    w.add_head_count(config["num_attention_heads"])
    w.add_head_count_kv(config["num_key_value_heads"])
    w.add_embedding_length(config["hidden_size"])
    w.add_context_length(config["max_position_embeddings"])
    for name, a in state.items():
        if name.endswith("q_proj.weight"):
            a = _permute(a, config["num_attention_heads"])
        elif name.endswith("k_proj.weight"):
            a = _permute(a, config["num_key_value_heads"])
        target = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if qtype == Q.F32 or a.ndim < 2:
            w.add_tensor(target, np.ascontiguousarray(a))
        else:
            q = gguf.quants.quantize(np.ascontiguousarray(a), qtype)
            w.add_tensor(target, q, raw_shape=q.shape, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_compare_original_with_its_gguf(tmp_path):
    from conftest import build_causal_lm

    src = build_causal_lm(tmp_path / "hf", "llama", dtype=torch.float32, head_dim=16, hidden_size=64, intermediate_size=192)
    to_gguf(src, tmp_path / "exact.gguf", Q.F32)
    exact = streamscope.compare(src, tmp_path / "exact.gguf", weights=True, memory_budget="16MB")
    assert len(exact["weights"]) == 30 and not exact["errors"]
    assert exact["unchanged_tensors"] == sorted(exact["weights"])  # names mapped, q/k rows put back: bit-identical
    to_gguf(src, tmp_path / "q8.gguf", Q.Q8_0)
    q8 = streamscope.compare(src, tmp_path / "q8.gguf", weights=True)
    q = q8["weights"]["model.layers.1.self_attn.q_proj.weight"]
    assert 0 < q["relative_frobenius_change"] < 0.01 and q["sqnr_db"] > 40 and q["cosine_similarity"] > 0.9999
    assert q8["weights"]["model.layers.0.input_layernorm.weight"]["relative_frobenius_change"] == 0  # F32 vectors stay exact


def test_gguf_tensors_through_the_python_api(tmp_path):
    ref = write_gguf(tmp_path / "m.gguf")
    t = streamscope.open(tmp_path / "m.gguf")["blk.0.ffn_up.weight"]
    blocks = list(t.blocks(max_bytes=64 * 256 * 4))
    assert [b.shape for b in blocks] == [(64, 256)] * 8
    np.testing.assert_array_equal(torch.cat(blocks).numpy(), ref["blk.0.ffn_up.weight"])
    assert float(t.to_dask(max_bytes="64KB").std().compute()) == pytest.approx(float(ref["blk.0.ffn_up.weight"].std()), rel=1e-5)


@pytest.mark.parametrize("mode", ["mmap", "pread"])
def test_the_reader_decodes_gguf_behind_the_same_calls(tmp_path, mode):
    """``RawReader.blocks``, ``column_slab`` and ``read_rows`` take any tensor: plain ones as stored, quantized ones
    decoded, each equal to the gguf package's own dequantization."""
    from streamscope.io.checkpoint import CheckpointIndex
    from streamscope.io.reader import RawReader, read_rows
    from streamscope.io.tensor import plan_blocks, whole

    ref = write_gguf(tmp_path / "m.gguf")
    index = CheckpointIndex.from_path(tmp_path / "m.gguf")
    with RawReader(4096 * 8, mode=mode) as reader:
        for name, a in ref.items():
            info = index.tensors[name]
            blocks = plan_blocks(info, 3000)  # several blocks of whole rows
            values = torch.cat([v.to(torch.float32).clone() for _, v in reader.blocks(info, blocks)])
            np.testing.assert_array_equal(values.numpy(), a.reshape(-1))
            stored = read_rows(info, whole(info), dtype=None)
            assert stored.dtype == (info.torch_dtype if name in ("token_embd.weight", "blk.0.attn_norm.weight", "output.weight") else torch.float32)
            np.testing.assert_array_equal(stored.float().reshape(a.shape).numpy(), a)
            if info.is_matrix:
                slab = reader.column_slab(info, 32, 96, block_elems=2048)  # decoded 8 rows at a time, then cut
                np.testing.assert_array_equal(slab.float().numpy(), a[:, 32:96])
