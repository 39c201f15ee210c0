"""Importance-matrix statistics: ``streamscope imatrix`` (and the probe's ``activations.json["imatrix_statistics"]``)
against ``llama-imatrix --show-statistics``, number by number, with the time each takes.

    python benchmarks/bench_imatrix_stats.py [--llama-cpp DIR] [--workdir DIR] [--repeat N] [--out FILE] [--smoke]

The checkpoint, its GGUF F32 conversion and the calibration text are ``bench_imatrix.py``'s (built there once per
``--workdir``; see its docstring for llama.cpp). Without a ``llama-imatrix`` binary it prints one line and exits 0.

1. One run of each tool on the same 4 consecutive windows: ``llama-imatrix`` writes its matrix (with ``in_sum``:
   its moments are of E[A]), ``streamscope activations`` writes ``imatrix.gguf`` (no ``in_sum``: moments of E[A²]).
2. For each file: every number ``llama-imatrix --show-statistics`` prints (per tensor and per layer) against
   ``streamscope imatrix FILE --json``, to the printed precision (agreeing: within half a unit of the last printed
   digit); for streamscope's file also against ``activations.json["imatrix_statistics"]``.
3. The time of each (whole processes, ``--repeat`` runs, medians), and of the statistics alone in this process.
4. The two files compared by ``streamscope imatrix A B``: cosine of the per-channel E[A²] and the ratio of ΣE[A²].
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_imatrix as base

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's streamscope, as the subprocesses get it through PYTHONPATH


def printed_statistics(binary: Path, path: Path) -> tuple[dict, dict]:
    """``({tensor: [printed values]}, {layer: [printed values]})`` of ``llama-imatrix --show-statistics``."""
    proc = subprocess.run([str(binary), "--in-file", str(path), "--show-statistics", "-m", "unused.gguf"], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"llama-imatrix --show-statistics failed on {path}:\n{proc.stderr[-2000:]}")
    tensors, layers = {}, {}
    for line in proc.stdout.splitlines():
        cells = [c.strip() for c in line.split(" | ")]
        if len(cells) == 5 and not cells[1].startswith("Tensor"):
            tensors[cells[1]] = " ".join(cells[2:]).replace("%", "").split()
        elif len(cells) == 3 and cells[0] != "Layer":
            layers[cells[0]] = " ".join(cells[1:]).split()
    return tensors, layers


def agreement(printed: dict, ours: dict, columns: list[str]) -> dict:
    """Numbers compared, those within half a unit of the last printed digit, the largest miss in those units."""
    n = agree = 0
    worst, where = 0.0, None
    for name, texts in printed.items():
        for text, col in zip(texts, columns, strict=True):
            v = ours.get(name, {}).get(col)
            n += 1
            if text == "nan" or v is None:
                agree += text == "nan" and v is None
                continue
            step = 10.0 ** -len(text.split(".")[1])
            miss = abs(v - float(text)) / step
            agree += miss <= 0.5 * (1 + 1e-6)
            if miss > worst:
                worst, where = miss, f"{name} {col}"
    return {"numbers": n, "agreeing": agree, "largest_miss_in_last_digit_units": worst, "largest_miss_at": where}


def compare_file(binary: Path, path: Path, repeat: int, probe_json: Path | None) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    ours = json.loads(subprocess.run([sys.executable, "-m", "streamscope", "imatrix", str(path), "--json"], capture_output=True, text=True, env=env, check=True).stdout)
    tensors, layers = printed_statistics(binary, path)
    l2 = ["l2_dist"] if ours["in_sum"] else []
    cols = ["mean", "std", "skew", "kurt", "h_norm", "sum_e_a2", "gain", *l2, "pcc", "cov"]
    lcols = ["sum_e_a2", "gain", *l2, "cossim", "pcc", "cov"]
    out = {"tensors_printed": len(tensors), "tensors_streamscope": len(ours["tensors"]), "moments_of": ours["moments_of"],
           "tensor_table": agreement(tensors, ours["tensors"], cols),
           "layer_table": agreement({k: v for k, v in layers.items()}, {("-" if k == "output" else k): v for k, v in ours["layers"].items()}, lcols)}  # fmt: skip
    if probe_json is not None:
        out["probe_json"] = agreement(tensors, json.loads(probe_json.read_text())["imatrix_statistics"], cols)
    llama = [base.timed([str(binary), "--in-file", str(path), "--show-statistics", "-m", "unused.gguf"])["wall_seconds"] for _ in range(repeat)]
    ss = [base.timed([sys.executable, "-m", "streamscope", "imatrix", str(path), "--json"], env)["wall_seconds"] for _ in range(repeat)]
    from streamscope.io.imatrix_file import read_imatrix
    from streamscope.kernels.imatrix_stats import layer_statistics, tensor_statistics

    inproc = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        m = read_imatrix(path)
        layer_statistics(tensor_statistics(m.entries, m.n_layer_nextn), m.n_layer_nextn)
        inproc.append(time.perf_counter() - t0)
    out["seconds"] = {"llama_show_statistics": statistics.median(llama), "streamscope_imatrix_process": statistics.median(ss),
                      "streamscope_read_and_statistics": statistics.median(inproc)}  # fmt: skip
    return out


def main() -> dict | None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--llama-cpp", help="llama.cpp build directory (or its bin/); default $LLAMA_CPP_DIR, else PATH")
    p.add_argument("--convert", help="llama.cpp's convert_hf_to_gguf.py (see bench_imatrix.py)")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "streamscope-bench")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", type=Path)
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args()
    found = base.find_llama(a.llama_cpp, a.convert)
    if isinstance(found, str):
        print(found.replace("bench_imatrix", "bench_imatrix_stats"))
        return None
    binary, script = found
    ctx = base.SMOKE_CTX if a.smoke else base.CTX
    checkpoint = base.build(a.workdir / ("llama-imatrix-smoke" if a.smoke else "llama-imatrix-1.8GB"), a.smoke)
    gguf_path = checkpoint.with_name(checkpoint.name + "-f32.gguf")
    base.convert(checkpoint, script, gguf_path)
    fig = {"llama_cpp": base.llama_version(binary), "checkpoint": checkpoint.name, "chunks": base.CHUNKS, "ctx": ctx, "streamscope": base.git_state()}
    with tempfile.TemporaryDirectory(dir=a.workdir) as tmp:
        work = Path(tmp)
        cal = base.calibration(checkpoint, ctx, work)
        base.run_llama(binary, gguf_path, cal["files"]["calib"], work / "llama.gguf", ctx)
        (work / "ss").mkdir()
        base.run_streamscope(checkpoint, cal["files"]["calib"], work / "ss", ctx)
        fig["streamscope_file"] = compare_file(binary, work / "ss" / "imatrix.gguf", a.repeat, work / "ss" / "activations.json")
        fig["llama_file"] = compare_file(binary, work / "llama.gguf", a.repeat, None)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        pair = subprocess.run([sys.executable, "-m", "streamscope", "imatrix", str(work / "ss" / "imatrix.gguf"), str(work / "llama.gguf"), "--json"],
                              capture_output=True, text=True, env=env, check=True)  # fmt: skip
        r = json.loads(pair.stdout)
        fig["pair"] = {**r["summary"], "only_streamscope": r["only_a"], "only_llama": r["only_b"], "mismatched": r["mismatched"]}
    for key, label in (("streamscope_file", "streamscope's imatrix.gguf"), ("llama_file", "llama-imatrix's file")):
        f = fig[key]
        t, lt, s = f["tensor_table"], f["layer_table"], f["seconds"]
        print(f"{label} ({f['tensors_printed']} tensors, moments of {f['moments_of']}): tensor table {t['agreeing']}/{t['numbers']} numbers agree "
              f"to the printed digit (largest miss {t['largest_miss_in_last_digit_units']:.2f} units), layer table {lt['agreeing']}/{lt['numbers']}"
              + (f", activations.json {f['probe_json']['agreeing']}/{f['probe_json']['numbers']}" if "probe_json" in f else "")
              + f"; llama-imatrix --show-statistics {s['llama_show_statistics']:.2f} s, streamscope imatrix --json {s['streamscope_imatrix_process']:.2f} s "
              f"(reading and statistics {s['streamscope_read_and_statistics'] * 1000:.0f} ms)")  # fmt: skip
    pr = fig["pair"]
    print(f"streamscope imatrix A B: {pr['both']} tensors in both, cosine of E[A²] median {pr['cosine_median']:.6f}, lowest {pr['cosine_min']:.6f} "
          f"({pr['cosine_min_tensor']}); ΣE[A²] B / A {pr['ratio']:.6f}; only streamscope: {pr['only_streamscope']}, only llama: {pr['only_llama']}")  # fmt: skip
    if a.out:
        a.out.write_text(json.dumps(fig, indent=1))
    return fig


if __name__ == "__main__":
    main()
