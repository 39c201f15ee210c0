"""Bad input ends in one clear error; real layouts work; no run loses finished work or mixes with another."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from typer.testing import CliRunner

import streamscope
from streamscope.cli import app
from streamscope.errors import CheckpointError, HeaderError
from streamscope.io.checkpoint import CheckpointIndex
from streamscope.synthetic import save_tensors

runner = CliRunner()


def raw_file(path: Path, header: dict | bytes, data: bytes = b"") -> Path:
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(body)) + body + data)
    return path


def entry(dtype="F32", shape=(2, 2), offsets=(0, 16)):
    return {"dtype": dtype, "shape": list(shape) if isinstance(shape, tuple) else shape, "data_offsets": list(offsets) if isinstance(offsets, tuple) else offsets}


# -- inputs that must work ------------------------------------------------------------------------------------


def hub_cache(src: Path, cache: Path) -> Path:
    """Lay ``src`` out as ``hf download`` does: ``snapshots/<rev>/<file>`` symlinks into ``blobs/<sha>``."""
    repo = cache / "models--org--tiny"
    snapshot = repo / "snapshots" / "0123abcd"
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for f in src.iterdir():
        blob = repo / "blobs" / f"sha-{f.name.replace('.', '-')}"
        shutil.copy(f, blob)
        (snapshot / f.name).symlink_to(Path("../../blobs") / blob.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    return snapshot


def test_hub_cache_layout_scans_counts_and_compares(llama_dir, tmp_path):
    snapshot = hub_cache(llama_dir, tmp_path / "hub")
    assert all(p.is_symlink() for p in snapshot.glob("*.safetensors"))
    r = streamscope.scan(snapshot, out=tmp_path / "o")
    direct = streamscope.scan(llama_dir, out=tmp_path / "d")
    assert r.tensors.keys() == direct.tensors.keys() and not r.errors
    assert streamscope.params(snapshot)["total_params"] == streamscope.params(llama_dir)["total_params"]
    assert streamscope.compare(llama_dir, snapshot)["total_params"]["reduced"] == 0


@pytest.mark.parametrize("name", ["../outside.safetensors", "/etc/passwd", "a\0b.safetensors", "sub/../../x.safetensors"])
def test_index_entries_stay_inside_the_directory(tmp_path, name):
    save_tensors(tmp_path / "model.safetensors", {"w": torch.ones(2)})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": name}}))
    with pytest.raises(CheckpointError, match="outside the checkpoint directory"):
        CheckpointIndex.from_path(tmp_path)


def test_fifo_shard_is_refused_without_hanging(tmp_path):
    save_tensors(tmp_path / "model-1.safetensors", {"w": torch.ones(2)})
    os.mkfifo(tmp_path / "model-2.safetensors")
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": "model-1.safetensors", "v": "model-2.safetensors"}}))
    with pytest.raises(CheckpointError, match="not a regular file"):
        CheckpointIndex.from_path(tmp_path)
    (tmp_path / "model.safetensors.index.json").unlink()
    with pytest.raises(HeaderError, match="not a regular file"):  # without an index, found by its suffix
        CheckpointIndex.from_path(tmp_path)


def test_one_shard_named_two_ways_is_one_shard(tmp_path):
    save_tensors(tmp_path / "model.safetensors", {"a": torch.ones(2), "b": torch.zeros(3)})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "model.safetensors", "b": "./model.safetensors"}}))
    index = CheckpointIndex.from_path(tmp_path)
    assert len(index.files) == 1 and set(index.tensors) == {"a", "b"}


def test_every_safetensors_dtype_is_read_or_skipped(tmp_path):
    u16 = np.array([[0, 1, 65535], [3, 4, 5]], np.uint16)
    u64 = np.array([1, 2**60], np.uint64)
    e8m0 = np.array([127, 128, 126, 255], np.uint8)  # 1, 2, 0.5, NaN
    tensors = {"u16": ("U16", [2, 3], u16.tobytes()), "u32": ("U32", [2], np.array([7, 2**31], np.uint32).tobytes()),
               "u64": ("U64", [2], u64.tobytes()), "e8m0": ("F8_E8M0", [4], e8m0.tobytes()),
               "c64": ("C64", [2], np.zeros(2, np.complex64).tobytes()), "f4": ("F4", [3], b"\0\0"), "f6": ("F6_E3M2", [4], b"\0\0\0")}  # fmt: skip
    header, data = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = entry(dtype, shape, (len(data), len(data) + len(raw)))
        data += raw
    path = raw_file(tmp_path / "m.safetensors", header, data)
    r = streamscope.scan(path, out=tmp_path / "o", analyses="all")
    assert not r.errors
    assert r.tensors["u16"]["basic_stats"]["max"] == 65535 and r.tensors["u16"]["basic_stats"]["mean"] == pytest.approx(u16.mean())
    assert r.tensors["u64"]["basic_stats"]["max"] == float(2**60)
    assert r.tensors["u32"]["basic_stats"]["mean"] == pytest.approx((7 + 2**31) / 2)
    e = r.tensors["e8m0"]["basic_stats"]
    assert (e["max"], e["min"], e["nan_count"]) == (2.0, 0.5, 1)
    skipped = {s["name"]: s["reason"] for s in r.model["skipped"]}
    assert set(skipped) == {"c64", "f4", "f6"} and "C64 (complex) is not analysed" in skipped["c64"]
    assert streamscope.params(path)["total_params"] == 2 * 3 + 2 + 2 + 4 + 2 + 3 + 4


# -- inputs that must fail cleanly -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header, message",
    [
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "nested too deeply"),
        (b'{"w": {"dtype": "F32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 4]}}', "not valid UTF-8 JSON"),
        ({"w": entry(dtype=["F32"])}, "unknown dtype of JSON type list"),
        ({"w": entry(shape=[True, 4])}, "is not a list of non-negative integers"),
        ({"w": entry(shape=[2.0, 2])}, "is not a list of non-negative integers"),
        ({"w": entry(shape=["2", 2])}, "is not a list of non-negative integers"),
        ({"w": entry(shape=5)}, "is not a list of non-negative integers"),
        ({"w": entry(offsets=[0, "16"])}, "data_offsets"),
        ({"w": entry(offsets=[False, 16])}, "data_offsets"),
        ({"w": entry(offsets={"begin": 0})}, "data_offsets"),
        ({"__metadata__": {"a": 1}, "w": entry()}, "__metadata__ must map strings to strings"),
        ({"__metadata__": [1], "w": entry()}, "__metadata__ must map strings to strings"),
        ({"w\0x": entry()}, "holds a NUL character"),
        ({"x" * 300: entry()}, "names must be 1 to 255 bytes"),
        ({"w": [1, 2]}, "entry is not an object"),
    ],
)
def test_malformed_headers_are_one_clear_error(tmp_path, header, message):
    path = raw_file(tmp_path / "bad.safetensors", header, bytes(16))
    result = runner.invoke(app, ["scan", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1, result.output
    assert message in result.output.replace("\n", "") and str(path) in result.output.replace("\n", "")
    assert "Traceback" not in result.output


def test_lone_surrogate_name_is_refused(tmp_path):
    body = b'{"w\\ud800": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}'
    with pytest.raises(HeaderError, match="lone surrogate"):
        CheckpointIndex.from_path(raw_file(tmp_path / "bad.safetensors", body, bytes(16)))


def test_a_huge_declared_dimension_allocates_nothing(tmp_path):
    """A zero-size tensor declared (2**40, 0): valid, and nothing is sized by its dimension."""
    path = raw_file(tmp_path / "m.safetensors", {"e": entry("BF16", [2**40, 0], (0, 0)), "w": entry("F32", [2, 2], (0, 16))}, bytes(16))
    r = streamscope.scan(path, out=tmp_path / "o", analyses="all", memory_budget="16MB")
    assert not r.errors and r.tensors["e"]["basic_stats"]["numel"] == 0
    assert streamscope.params(path)["total_params"] == 4


@pytest.mark.parametrize("config, message", [("[1]", "holds a JSON list, expected an object"),
                                             ('{"text_config": [1]}', "'text_config' is a JSON list"),
                                             ("[" * 100_000 + "]" * 100_000, "nested too deeply")], ids=["list", "text_config", "deep"])  # fmt: skip
def test_config_of_the_wrong_type_fails_before_any_work(tmp_path, config, message):
    save_tensors(tmp_path / "model.safetensors", {"w": torch.ones(2, 2)})
    (tmp_path / "config.json").write_text(config)
    result = runner.invoke(app, ["scan", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and message in result.output and not (tmp_path / "o").exists()


def test_config_values_of_the_wrong_type_are_ignored(tmp_path):
    save_tensors(tmp_path / "model.safetensors", {"model.layers.0.self_attn.q_proj.weight": torch.ones(8, 8)})
    (tmp_path / "config.json").write_text(json.dumps({"num_attention_heads": "8", "hidden_size": [8], "num_hidden_layers": 10**12}))
    p = streamscope.params(tmp_path)
    assert p["layer_summary"]["num_layers"] == 1


def test_extreme_values_give_records_not_tracebacks(tmp_path):
    g = torch.Generator().manual_seed(0)
    r64 = lambda scale: torch.randn(40, 30, generator=g, dtype=torch.float64) * scale  # noqa: E731
    path = save_tensors(tmp_path / "m.safetensors", {
        "huge": r64(1e200), "tiny": r64(1e-170), "small": r64(1e-90), "span": torch.cat([r64(1e15), r64(1.0)]),
        "f32max": (torch.rand(40, 30, generator=g) * 2 - 1) * 3.4e38, "i64": torch.full((40, 30), 2**60, dtype=torch.int64),
        "nan": torch.full((40, 30), float("nan")), "inf": torch.full((40, 30), float("inf")),
    })  # fmt: skip
    r = streamscope.scan(path, out=tmp_path / "o", analyses="all", memory_budget="16MB")
    assert r.errors == [] and len(r.tensors) == 8
    assert r.tensors["f32max"]["basic_stats"]["std"] == pytest.approx(3.4e38 / 3**0.5, rel=0.05)  # uniform(-a, a): a / sqrt(3)
    assert r.tensors["span"]["basic_stats"]["abs_max"] > 1e15
    assert r.tensors["small"]["quantization"]["sqnr_db"] > 40  # INT8 of a Gaussian, whatever its scale
    for name in ("nan", "inf"):
        assert r.tensors[name]["health"]["grade"] == "Critical" and "1200" in r.tensors[name]["health"]["reasons"][0]
    hist = zarr.open_group(str(tmp_path / "o" / "arrays.zarr"), mode="r")["histograms"]
    totals = dict(zip(hist.attrs["tensor_names"], hist["counts"][:].sum(axis=1)))
    assert totals["span"] == 2400 and all(totals[n] == 1200 for n in ("tiny", "small", "f32max", "i64"))
    # F64 values beyond float32's range have no bf16 histogram key (percentiles say inf); moments stay exact
    assert r.tensors["huge"]["basic_stats"]["abs_max"] > 1e200 and r.tensors["huge"]["basic_stats"]["mean"] != 0


def test_model_level_failure_keeps_every_tensor(tmp_path):
    from streamscope.analyses import REGISTRY, Analysis

    def broken(ctx, options):
        raise RuntimeError("model-level bug")

    REGISTRY.register(Analysis(name="broken_model", kind="model", help="fails", selectable=False, compute=broken))
    try:
        path = save_tensors(tmp_path / "m.safetensors", {"a": torch.ones(3, 3), "b": torch.ones(4)})
        r = streamscope.scan(path, out=tmp_path / "o")
    finally:
        REGISTRY.unregister("broken_model")
    assert set(r.tensors) == {"a", "b"} and "model-level analysis 'broken_model' failed" in r.errors[0]
    assert json.loads((tmp_path / "o" / "tensors.json").read_text()).keys() == {"a", "b"}


def test_vectors_are_not_graded_on_quantization(llama_dir, tmp_path):
    r = streamscope.scan(llama_dir, out=tmp_path / "o", analyses="quantization")
    assert "health" not in r.tensors["model.layers.0.input_layernorm.weight"]
    assert "health" in r.tensors["model.layers.0.mlp.up_proj.weight"]


def test_bert_params_know_encoders_and_buffers(minilm_dir, tmp_path):
    p = streamscope.params(minilm_dir)
    assert p["tied_embeddings"] is False and p["layer_kind"] == "encoder"
    assert p["buffers"] == ["embeddings.position_ids"] and p["buffer_elements"] == 512
    r = streamscope.scan(minilm_dir, out=tmp_path / "o", select="embeddings")
    assert r.model["checkpoint"]["total_params"] == p["total_params"]
    assert r.model["checkpoint"]["buffer_elements"] == 512
    result = runner.invoke(app, ["params", str(minilm_dir)])
    assert "Encoder layers:" in result.output and "tied" not in result.output


# -- output and concurrency --------------------------------------------------------------------------------------


def test_second_run_into_the_same_out_is_refused(tmp_path):
    from streamscope.results import ResultStore

    path = save_tensors(tmp_path / "m.safetensors", {"w": torch.ones(2, 2)})
    with ResultStore(tmp_path / "o", "elsewhere", "x"):
        with pytest.raises(streamscope.StreamscopeError, match=rf"in use by process {os.getpid()}"):
            streamscope.scan(path, out=tmp_path / "o")
    assert not streamscope.scan(path, out=tmp_path / "o").errors  # released


def test_results_of_different_checkpoints_never_mix(tmp_path, monkeypatch):
    from streamscope.results import ResultStore

    monkeypatch.setattr(ResultStore, "discard_partial", lambda self: None)  # keep .partial, as interrupted runs do
    a = save_tensors(tmp_path / "a.safetensors", {"w": torch.randn(64, 8), "model.embed_tokens.weight": torch.randn(32, 8)})
    b = save_tensors(tmp_path / "b.safetensors", {"w": torch.randn(64, 8) * 100, "model.embed_tokens.weight": torch.randn(32, 8) * 100})
    out = tmp_path / "o"
    args = {"analyses": "all", "out": out}
    streamscope.scan(a, **args)
    streamscope.scan(b, **args)
    again = streamscope.scan(a, **args)
    streamscope.scan(a, analyses="all", out=tmp_path / "fresh")
    assert again.model["timing"]["tensors_reused"] == 2
    mixed, clean = (zarr.open_group(str(d / "arrays.zarr"), mode="r") for d in (out, tmp_path / "fresh"))
    np.testing.assert_array_equal(mixed["histograms/edges"][:], clean["histograms/edges"][:])
    from streamscope.results_dir import Results

    for key in ("row_norms", "singular_values"):
        got, want = (Results.open(d).array("model.embed_tokens.weight", key) for d in (out, tmp_path / "fresh"))
        assert got is not None
        np.testing.assert_array_equal(got, want)


def test_changed_shard_with_restored_mtime_is_rescanned(tmp_path, monkeypatch):
    from streamscope.results import ResultStore

    monkeypatch.setattr(ResultStore, "discard_partial", lambda self: None)
    path = save_tensors(tmp_path / "m.safetensors", {"w": torch.ones(16, 16)})
    first = streamscope.scan(path, out=tmp_path / "o")
    st = os.stat(path)
    data = bytearray(path.read_bytes())
    data[-4:] = struct.pack("<f", 5.0)  # the last element, in place
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # as cp -p, rsync -a or touch -r would
    again = streamscope.scan(path, out=tmp_path / "o")
    assert again.model["timing"]["tensors_reused"] == 0
    assert (first.tensors["w"]["basic_stats"]["max"], again.tensors["w"]["basic_stats"]["max"]) == (1.0, 5.0)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="mounting a small tmpfs needs root")
def test_disk_full_is_one_line_and_a_rerun_completes(llama_dir, tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("mount -t tmpfs is not permitted in this sandbox")
    try:
        out = mnt / "o"
        result = runner.invoke(app, ["scan", str(llama_dir), "--out", str(out), "--analyses", "all", "--quiet"])
        assert result.exit_code == 1 and "No space left on device" in result.output and "Traceback" not in result.output
        assert "the disk is full" in result.output and (out / ".partial" / "records.jsonl").exists()
        kept = len((out / ".partial" / "records.jsonl").read_text().splitlines())
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        r = streamscope.scan(llama_dir, out=out, analyses="all")
        assert not r.errors and r.model["timing"]["tensors_reused"] == kept and (out / "tensors.json").exists()
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_a_record_the_disk_cannot_take_leaves_no_half_line(tmp_path):
    """The record log is appended a whole line or nothing: a half line flushed later (at close) would be
    counted as kept, and the lock must go whatever closing the log raises."""
    import errno

    from streamscope.results import ResultStore, _append

    path = tmp_path / "log"
    with open(path, "ab", buffering=0) as f:
        _append(f, b'{"a": 1}\n')

        class Full:  # takes half the bytes, then the disk is full
            def __init__(self):
                self.calls = 0

            def fileno(self):
                return f.fileno()

            def write(self, view):
                self.calls += 1
                if self.calls > 1:
                    raise OSError(errno.ENOSPC, "No space left on device")
                return f.write(view[: len(view) // 2])

        with pytest.raises(OSError, match="No space"):
            _append(Full(), b'{"b": 2, "c": 3}\n')
    assert path.read_bytes() == b'{"a": 1}\n'
    store = ResultStore(tmp_path / "o", "m", "opts")

    class Failing:
        def close(self):
            raise OSError(errno.ENOSPC, "No space left on device")

    store._log = Failing()
    with pytest.raises(OSError):
        store.close()
    ResultStore(tmp_path / "o", "m", "opts").close()  # the lock was released


def test_a_record_whose_arrays_were_cut_is_computed_again(tmp_path, monkeypatch):
    """Records are resumed only with all their arrays' bytes in ``arrays.bin``; the rest is computed again."""
    from streamscope.results import ResultStore

    monkeypatch.setattr(ResultStore, "discard_partial", lambda self: None)  # keep .partial, as interrupted runs do
    weights = {"a": torch.randn(16, 8), "b": torch.randn(32, 8)}
    path = save_tensors(tmp_path / "m.safetensors", weights)
    out = tmp_path / "o"
    first = streamscope.scan(path, out=out, analyses="basic,spectral")
    blob = out / ".partial" / "arrays.bin"
    spans = [json.loads(line)["arrays"] for line in (out / ".partial" / "records.jsonl").read_text().splitlines()]
    last = max(spans, key=lambda s: max(v[0] for v in s.values()))
    with open(blob, "r+b") as f:
        f.truncate(max(v[0] for v in last.values()) + 1)  # the last tensor's last array cut short
    again = streamscope.scan(path, out=out, analyses="basic,spectral")
    assert again.model["timing"]["tensors_reused"] == 1 and again.tensors == first.tensors
    from streamscope.results_dir import Results

    for name, w in weights.items():
        want = np.linalg.svd(w.double().numpy(), compute_uv=False)
        np.testing.assert_allclose(Results.open(out).array(name, "singular_values"), want, rtol=1e-6)


def test_ctrl_c_keeps_finished_tensors_and_says_so(tmp_path):
    from streamscope.synthetic import write_sized

    ckpt = write_sized(tmp_path / "ckpt", "small", 128 << 20)  # large enough to be still running when the signal comes
    out = tmp_path / "o"
    # a child inherits an ignored SIGINT (as the test runner may leave it) and Python then keeps ignoring it
    child = subprocess.Popen([sys.executable, "-m", "streamscope", "scan", str(ckpt), "--out", str(out), "--analyses", "all", "--quiet"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    log = out / ".partial" / "records.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and log.read_text().count("\n") >= 2):
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert "interrupted:" in err and "tensors kept in" in err and "run the same command to resume" in err and "Traceback" not in err
    r = streamscope.scan(ckpt, out=out, analyses="all")
    assert r.model["timing"]["tensors_reused"] >= 2 and not r.errors and not (out / ".partial").exists()


def test_unreachable_scheduler_fails_fast_in_one_line(tmp_path):
    path = save_tensors(tmp_path / "m.safetensors", {"w": torch.ones(2, 2)})
    t0 = time.time()
    result = runner.invoke(app, ["scan", str(path), "--out", str(tmp_path / "o"), "--scheduler", "tcp://127.0.0.1:9"])
    assert result.exit_code == 1 and time.time() - t0 < 20
    assert "cannot reach a dask scheduler" in result.output and "Traceback" not in result.output


# -- things that succeeded silently -----------------------------------------------------------------------------------


def test_silent_successes_now_speak(llama_dir, tmp_path):
    result = runner.invoke(app, ["scan", str(llama_dir), "--out", str(tmp_path / "o"), "--select", "nothing_matches"])
    assert result.exit_code == 1 and "matches none of the 30 tensors" in result.output and "(e.g. " in result.output
    result = runner.invoke(app, ["compare", str(llama_dir), str(llama_dir), "--select", "("])
    assert result.exit_code == 1 and "not a valid regular expression" in result.output
    with pytest.raises(streamscope.OptionError, match="local cluster"):
        streamscope.scan(llama_dir, workers=2)
    r = streamscope.scan(llama_dir, analyses="all", select=r"layers\.0\.mlp\.up")
    assert "spectral" in next(iter(r.tensors.values()))
    same = streamscope.compare(llama_dir, llama_dir, weights=True, select=r"layers\.0\.")
    assert same["unchanged_tensors"] and all(w["frobenius_norm_change"] == 0 for w in same["weights"].values())
    result = runner.invoke(app, ["compare", str(llama_dir), str(llama_dir), "--weights", "--select", r"layers\.0\."])
    assert "compared tensors are identical" in result.output


def test_bench_small_layout_at_its_default_size(tmp_path):
    from streamscope.synthetic import write_sized

    ckpt = write_sized(tmp_path / "c", "small", 64 << 20)
    index = CheckpointIndex.from_path(ckpt)
    assert index.total_bytes > 48 << 20 and sum(n == "model.embed_tokens.weight" for n in index.tensors) == 1


def test_narrow_tables_keep_the_end_of_names(llama_dir, tmp_path):
    from rich.console import Console

    from streamscope.report.terminal import print_scan_summary, rate, shorten

    assert shorten("model.layers.3.mlp.down_proj.weight", 20).endswith("down_proj.weight")
    assert (rate(2.31e9, 1), rate(35.2e6, 1), rate(812e3, 1), rate(5, 1), rate(1, 0)) == ("2.31 GB/s", "35.2 MB/s", "812 KB/s", "5 B/s", "-")
    r = streamscope.scan(llama_dir, out=tmp_path / "o")
    console = Console(width=80, record=True, file=open(os.devnull, "w"))
    print_scan_summary(r.table, r.model, console)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "L0.mlp.down_proj" in text and "…" not in text  # the figures' short names, never a cut one
