"""Importance-matrix statistics (``kernels.imatrix_stats``, ``streamscope imatrix``, the probe's
``activations.json["imatrix_statistics"]``) against an independent numpy computation on the same vectors, and,
where a llama.cpp build is found, against what ``llama-imatrix --show-statistics`` prints for the same file.

Tolerances: the kernel rounds some steps to float32 as llama.cpp does (std, skew, kurtosis, entropy, the averages
compared across layers), the reference stays in float64: relative 1e-5 covers float32's 6e-8 with sums over a
few hundred channels. Against llama-imatrix: half a unit of the last printed digit.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from streamscope.cli import app

gguf = pytest.importorskip("gguf")
LLAMA_IMATRIX = Path(os.environ.get("LLAMA_CPP_DIR", "/work/llama/build")) / "bin" / "llama-imatrix"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


# ---------------------------------------------------------------------------------------------- an independent reference


def write_imatrix(path: Path, tensors: dict, stats_tensors: bool = False) -> Path:
    """An importance matrix GGUF: ``{name: (sums2 (matrices, channels), counts (matrices,), sums or None)}``."""
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_type("imatrix")
    w.add_array("imatrix.datasets", ["test"])
    w.add_uint32("imatrix.chunk_count", 3)
    w.add_uint32("imatrix.chunk_size", 16)
    for name, (sums2, counts, sums) in tensors.items():
        w.add_tensor(f"{name}.in_sum2", np.asarray(sums2, np.float32))
        w.add_tensor(f"{name}.counts", np.asarray(counts, np.float32).reshape(-1, 1))
        if sums is not None:
            w.add_tensor(f"{name}.in_sum", np.asarray(sums, np.float32))
        if stats_tensors:  # llama.cpp writes these too; readers ignore them
            w.add_tensor(f"{name}.stats", np.zeros(12, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def synthetic(seed: int = 0, with_sums: bool | str = True, channels: int = 96) -> dict:
    """``with_sums``: ``in_sum`` for every tensor, none, or ``"mixed"`` (none for layer 1's). Four layers of attention and MLP inputs, a 3-expert tensor with an expert that saw no token, a tensor
    missing in layer 2 (layer 3 compares with layer 1), an output head; heavy-tailed like real activations."""
    rng = np.random.default_rng(seed)
    out = {}

    def add(name, m=1, c=channels, counts=None):
        counts = np.asarray(counts if counts is not None else rng.integers(40, 80, m), np.float64)
        x = rng.standard_t(3, (m, c)) * rng.lognormal(0, 1, c) + rng.normal(0, 0.3, c)  # per channel mean activations
        sums = (x * counts[:, None]).astype(np.float32)
        sums2 = ((x**2 + rng.gamma(2.0, 0.5, (m, c))) * counts[:, None]).astype(np.float32)
        keep = with_sums is True or (with_sums == "mixed" and not name.startswith("blk.1."))
        out[name] = (sums2, counts, sums if keep else None)

    for layer in range(4):
        add(f"blk.{layer}.attn_q.weight")
        add(f"blk.{layer}.ffn_down_exps.weight", m=3, counts=[30, 0, 50])
        if layer != 2:
            add(f"blk.{layer}.ffn_up.weight", c=2 * channels)
    add("output.weight")
    return out


def reference(tensors: dict) -> dict:
    """The statistics from their definitions (llama.cpp's README and code), in plain float64 numpy."""
    vec = {}
    for name, (sums2, counts, sums) in tensors.items():
        c = np.asarray(counts, np.float64)[:, None]
        e2 = np.where(c > 0, np.asarray(sums2, np.float64) / np.where(c > 0, c, 1), np.nan).reshape(-1)
        ea = None if sums is None else np.where(c > 0, np.asarray(sums, np.float64) / np.where(c > 0, c, 1), np.nan).reshape(-1)
        vec[name] = (e2, ea)
    out = {}
    for name, (e2, ea) in vec.items():
        x = e2 if ea is None else ea  # a tensor with in_sum: moments of E[A]
        keep = np.isfinite(x) & np.isfinite(e2)
        x, energy = x[keep], e2[keep]
        d = x - x.mean()
        var = np.mean(d**2)
        p = energy / energy[energy > 0].sum()
        p = p[p > 1e-10]
        r = dict(mean=x.mean(), std=math.sqrt(var), skew=np.mean(d**3) / var**1.5, kurt=np.mean(d**4) / var**2 - 3,
                 h_norm=100 * -(p * np.log2(p)).sum() / math.log2(x.size), sum_e_a2=energy.sum(),
                 gain=None, l2_dist=None, cossim=None, pcc=None, cov=None, n=x.size)  # fmt: skip
        out[name] = r
    for name in vec:
        m = re.match(r"blk\.(\d+)\.(.*)$", name)
        if not m or int(m.group(1)) == 0:
            continue
        prev = next((f"blk.{k}.{m.group(2)}" for k in range(int(m.group(1)) - 1, -1, -1) if f"blk.{k}.{m.group(2)}" in vec), None)
        if prev is None:
            continue
        both = vec[name][1] is not None and vec[prev][1] is not None
        a, b = (vec[name][1], vec[prev][1]) if both else (vec[name][0], vec[prev][0])  # E[A] only where both have it
        ok = np.isfinite(a) & np.isfinite(b)
        a, b = a[ok], b[ok]
        r, q = out[name], out[prev]
        r.update(gain=math.sqrt(r["sum_e_a2"] / r["n"]) / math.sqrt(q["sum_e_a2"] / q["n"]), l2_dist=float(np.linalg.norm(a - b)),
                 cossim=float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)), pcc=float(np.corrcoef(a, b)[0, 1]),
                 cov=float(np.cov(a, b, bias=True)[0, 1]))  # fmt: skip
    return out


def assert_matches_reference(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for name, w in want.items():
        for key in ("mean", "std", "skew", "kurt", "h_norm", "sum_e_a2", "gain", "l2_dist", "cossim", "pcc", "cov"):
            g = got[name][key]
            if w[key] is None:
                assert g is None, (name, key)
            else:
                assert g == pytest.approx(w[key], rel=1e-5, abs=1e-9), (name, key)


# ---------------------------------------------------------------------------------------------- kernel and reader


@pytest.mark.parametrize("with_sums", [True, False, "mixed"], ids=["in_sum", "in_sum2_only", "mixed"])
def test_statistics_equal_numpy_reference(tmp_path, with_sums):
    from streamscope.io.imatrix_file import read_imatrix
    from streamscope.kernels.imatrix_stats import layer_statistics, tensor_statistics

    tensors = synthetic(with_sums=with_sums)
    m = read_imatrix(write_imatrix(tmp_path / "m.gguf", tensors, stats_tensors=True))
    assert m.has_sums == (with_sums is True) and m.chunk_count == 3 and m.chunk_size == 16 and m.datasets == ["test"]
    stats = tensor_statistics(m.entries)
    want = reference(tensors)
    assert_matches_reference({n: s.as_dict() for n, s in stats.items()}, want)
    assert want["blk.3.ffn_up.weight"]["gain"] is not None  # compared with layer 1 (layer 2 lacks it)
    layers = layer_statistics(stats)
    assert list(layers) == ["0", "1", "2", "3", "output"]
    for label in ("1", "2", "3"):  # the per-layer sums (float32 in llama.cpp)
        names = [n for n in tensors if n.startswith(f"blk.{label}.")]
        assert layers[label]["sum_e_a2"] == pytest.approx(sum(want[n]["sum_e_a2"] for n in names), rel=1e-6)
    assert layers["0"]["gain"] is None and layers["output"]["cossim"] is None


def test_compare_two_matrices_equal_numpy(tmp_path):
    from streamscope.io.imatrix_file import read_imatrix
    from streamscope.kernels.imatrix_stats import compare

    a, b = synthetic(seed=1), synthetic(seed=2)
    ma, mb = read_imatrix(write_imatrix(tmp_path / "a.gguf", a)), read_imatrix(write_imatrix(tmp_path / "b.gguf", b))
    for name in a:
        got = compare(ma.entries[name], mb.entries[name])
        ca = np.asarray(a[name][1], np.float64)[:, None]
        cb = np.asarray(b[name][1], np.float64)[:, None]
        ok = ((ca > 0) & (cb > 0)).reshape(-1)
        x = (np.asarray(a[name][0], np.float64)[ok] / ca[ok]).reshape(-1)
        y = (np.asarray(b[name][0], np.float64)[ok] / cb[ok]).reshape(-1)
        assert got["cosine"] == pytest.approx(x @ y / np.linalg.norm(x) / np.linalg.norm(y), rel=1e-6)
        assert got["ratio"] == pytest.approx(y.sum() / x.sum(), rel=1e-6)


# ---------------------------------------------------------------------------------------------- the probe


@pytest.fixture(scope="module")
def probe_run(hub_checkpoint, tmp_path_factory):
    """``streamscope activations`` on the tiny hub Llama, through the command line: its output directory."""
    out = tmp_path_factory.mktemp("imatrix") / "act"
    r = CliRunner().invoke(app, ["activations", str(hub_checkpoint("llama")), "--out", str(out), "-q", "--data.num_samples", "2", "--data.seq_len", "12"])
    assert r.exit_code == 0, r.output
    return out


def file_vectors(path: Path) -> dict:
    """``{name: (sums2, counts, sums)}`` read with the gguf package alone."""
    t = {x.name: np.asarray(x.data, np.float64) for x in gguf.GGUFReader(str(path)).tensors}
    out = {}
    for name in t:
        if name.endswith(".in_sum2"):
            base = name[: -len(".in_sum2")]
            counts = t[base + ".counts"].reshape(-1)
            sums = t.get(base + ".in_sum")
            out[base] = (t[name].reshape(counts.size, -1), counts, None if sums is None else sums.reshape(counts.size, -1))
    return out


def test_probe_writes_statistics_of_its_file(probe_run):
    data = json.loads((probe_run / "activations.json").read_text())
    got = data["imatrix_statistics"]
    vectors = file_vectors(probe_run / "imatrix.gguf")
    assert set(got) == set(vectors) and "blk.1.ffn_down.weight" in got and "output.weight" in got
    assert set(got["blk.1.attn_q.weight"]) == {"mean", "std", "skew", "kurt", "h_norm", "sum_e_a2", "gain", "l2_dist", "cossim", "pcc", "cov"}
    assert_matches_reference(got, reference(vectors))
    assert got["blk.0.attn_q.weight"]["gain"] is None and got["blk.1.attn_q.weight"]["pcc"] is not None


# ---------------------------------------------------------------------------------------------- the command


def run(*args) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, ["imatrix", *map(str, args)])
    return r.exit_code, ANSI.sub("", r.stdout), ANSI.sub("", r.stderr)


def tensor_rows(out: str) -> list[str]:
    """The first cells of the rows of the table after the line that starts with ``Tensors``."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Tensors"))
    return [line.split()[0] for line in lines[start + 1 :] if line.startswith(("blk.", "output "))]


def test_command_on_streamscope_file(probe_run):
    code, out, err = run(probe_run / "imatrix.gguf", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["tensors"] == json.loads((probe_run / "activations.json").read_text())["imatrix_statistics"]
    assert result["moments_of"] == "E[A²]" and list(result["layers"]) == ["0", "1", "output"]
    code, out, err = run(probe_run / "imatrix.gguf")
    assert code == 0, err
    assert all(len(line) <= 80 for line in out.splitlines()), out
    rows = tensor_rows(out)
    h = {n: t["h_norm"] for n, t in result["tensors"].items()}
    assert rows == [n.removesuffix(".weight") for n in sorted(h, key=h.get)[:10]]  # lowest H first, 10 rows
    code, out, _ = run(probe_run / "imatrix.gguf", "--all", "--sort", "kurt")
    k = {n: t["kurt"] for n, t in result["tensors"].items()}
    assert tensor_rows(out) == [
        n.removesuffix(".weight") for n in sorted(k, key=lambda n: -k[n])
    ]


def test_command_compares_two_files(tmp_path, probe_run):
    a, b = synthetic(seed=1), synthetic(seed=2)
    del b["blk.0.attn_q.weight"]
    b["blk.9.attn_k.weight"] = a["blk.1.attn_q.weight"]
    b["blk.1.attn_q.weight"] = (np.ones((1, 7)), [5], None)  # another channel count
    fa, fb = write_imatrix(tmp_path / "a.gguf", a), write_imatrix(tmp_path / "b.gguf", b)
    code, out, err = run(fa, fb, "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["only_a"] == ["blk.0.attn_q.weight"] and r["only_b"] == ["blk.9.attn_k.weight"] and r["mismatched"] == ["blk.1.attn_q.weight"]
    name = "blk.2.ffn_down_exps.weight"
    ok = np.array([True, False, True])  # the second expert saw no token in either
    x = (a[name][0][ok] / np.asarray(a[name][1])[ok, None]).reshape(-1).astype(np.float64)
    y = (b[name][0][ok] / np.asarray(b[name][1])[ok, None]).reshape(-1).astype(np.float64)
    assert r["tensors"][name]["cosine"] == pytest.approx(x @ y / np.linalg.norm(x) / np.linalg.norm(y), rel=1e-6)
    assert r["tensors"][name]["ratio"] == pytest.approx(y.sum() / x.sum(), rel=1e-6)
    cos = {n: t["cosine"] for n, t in r["tensors"].items()}
    assert r["summary"]["cosine_min_tensor"] == min(cos, key=cos.get)
    code, out, _ = run(fa, fb)
    assert code == 0 and all(len(line) <= 80 for line in out.splitlines()), out
    assert "only in A: 1: blk.0.attn_q" in out and "only in B: 1: blk.9.attn_k" in out and "model: " in out
    code, out, _ = run(probe_run / "imatrix.gguf", probe_run / "imatrix.gguf", "--json")
    same = json.loads(out)
    assert all(t["cosine"] == pytest.approx(1.0) and t["ratio"] == pytest.approx(1.0) for t in same["tensors"].values())


def test_bad_files(tmp_path, probe_run):
    text = tmp_path / "notes.gguf"
    text.write_text("not a gguf\n")
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes((probe_run / "imatrix.gguf").read_bytes()[:300])
    model = write_imatrix(tmp_path / "model.gguf", {})
    half = tmp_path / "half.gguf"
    w = gguf.GGUFWriter(str(half), arch="llama")
    w.add_tensor("blk.0.attn_q.weight.in_sum2", np.ones((1, 8), np.float32))  # no counts
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    for path, why in ((tmp_path / "missing.gguf", "no such file"), (text, "not a GGUF file"), (truncated, "invalid GGUF"),
                      (model, "no importance matrix"), (half, "mismatched sums and counts"), (tmp_path, "a directory")):  # fmt: skip
        code, out, err = run(path)
        assert code == 1, (path, out)
        first = err.splitlines()[0]
        assert first.startswith("error: ") and str(path) in first and why in first, err
        assert "Traceback" not in err
    code, _, err = run(probe_run / "imatrix.gguf", text)
    assert code == 1 and str(text) in err
    code, _, err = run(probe_run / "imatrix.gguf", "--sort", "cos")
    assert code == 1 and "--sort" in err


# ---------------------------------------------------------------------------------------------- llama.cpp itself


def show_statistics(path: Path) -> tuple[dict, dict]:
    """What ``llama-imatrix --show-statistics`` prints: ``({tensor: [values]}, {layer: [values]})`` as strings."""
    proc = subprocess.run([str(LLAMA_IMATRIX), "--in-file", str(path), "--show-statistics", "-m", "unused.gguf"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    tensors, layers = {}, {}
    for line in proc.stdout.splitlines():
        cells = [c.strip() for c in line.split(" | ")]
        if len(cells) == 5 and not cells[1].startswith("Tensor"):
            tensors[cells[1]] = " ".join(cells[2:]).replace("%", "").split()
        elif len(cells) == 3 and cells[0] != "Layer":
            layers[cells[0]] = " ".join(cells[1:]).split()
    return tensors, layers


def assert_printed(printed: list[str], values: list) -> None:
    for text, v in zip(printed, values, strict=True):
        if text == "nan":
            assert v is None, (printed, values)
            continue
        step = 10.0 ** -len(text.split(".")[1])
        assert v is not None and abs(v - float(text)) <= step / 2 * (1 + 1e-6) + 1e-12, (printed, values)


@pytest.mark.skipif(not LLAMA_IMATRIX.is_file(), reason="no llama.cpp build (set LLAMA_CPP_DIR)")
@pytest.mark.parametrize("source", ["probe", "synthetic_in_sum", "synthetic_in_sum2_only", "synthetic_mixed"])
def test_equal_to_llama_imatrix_show_statistics(tmp_path, probe_run, source):
    path = probe_run / "imatrix.gguf" if source == "probe" else write_imatrix(tmp_path / "m.gguf", synthetic(with_sums={"synthetic_in_sum": True, "synthetic_mixed": "mixed"}.get(source, False)))
    code, out, err = run(path, "--json")
    assert code == 0, err
    ours = json.loads(out)
    tensors, layers = show_statistics(path)
    assert set(tensors) == set(ours["tensors"])
    cols = ["mean", "std", "skew", "kurt", "h_norm", "sum_e_a2", "gain", *(["l2_dist"] if ours["in_sum"] else []), "pcc", "cov"]
    for name, printed in tensors.items():
        assert_printed(printed, [ours["tensors"][name][c] for c in cols])
    if source == "probe":
        json_stats = json.loads((probe_run / "activations.json").read_text())["imatrix_statistics"]
        for name, printed in tensors.items():
            assert_printed(printed, [json_stats[name][c] for c in cols])
    lcols = ["sum_e_a2", "gain", *(["l2_dist"] if ours["in_sum"] else []), "cossim", "pcc", "cov"]
    assert len(layers) == len(ours["layers"])
    for label, printed in layers.items():
        assert_printed(printed, [ours["layers"]["output" if label == "-" else label][c] for c in lcols])
