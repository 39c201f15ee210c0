"""alpha for large matrices: what a full Gram spectrum costs, and how far a top-k tail estimate lands.

    python benchmarks/bench_alpha.py [--out FILE] [--smoke]

On one decoder layer of the synthetic llama-7b layout (4096 x 4096 and 4096 x 11008 matrices, bf16): for each
matrix, the Gram matrix of the smaller side in float32 and ``eigvalsh`` (what ``--spectral gram`` runs above a
side of 2048), timed; WeightWatcher's alpha fit on the full spectrum and on its top 32 and top 256 eigenvalues
alone. Then ``streamscope scan --spectral gram`` of that layer end to end, and the extrapolation to 7B and 72B
layouts from the measured flop rates (Gram: 2 * small^2 * large flops; eigvalsh: small^3).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from streamscope.bench import machine
from streamscope.kernels.powerlaw import fit_alpha
from streamscope.synthetic import write_sized

LAYER_72B = [(8192, 8192), (1024, 8192), (1024, 8192), (8192, 8192), (29568, 8192), (29568, 8192), (8192, 29568)]


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args()
    import streamscope
    from streamscope.io.checkpoint import CheckpointIndex

    layout, size = ("small", 4 << 20) if args.smoke else ("llama-7b", 420 << 20)
    path = write_sized(Path(tempfile.gettempdir()) / "streamscope-bench" / f"{layout}-{size}", layout, size)
    index = CheckpointIndex.from_path(path)
    matrices = [t for t in index if t.is_matrix and ".layers.0." in t.name]
    rows, gram_flops, gram_s, eig_units, eig_s = [], 0.0, 0.0, 0.0, 0.0
    from safetensors import safe_open

    for info in matrices:
        with safe_open(str(info.shard), "pt") as f:
            w = f.get_tensor(info.name).float()
        small, large = min(w.shape), max(w.shape)
        t = time.perf_counter()
        g = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        t_gram = time.perf_counter() - t
        t = time.perf_counter()
        ev = torch.linalg.eigvalsh(g).flip(0).clamp_min(0).double().numpy()
        t_eig = time.perf_counter() - t
        gram_flops += 2 * small * small * large
        gram_s += t_gram
        eig_units += small**3
        eig_s += t_eig
        full, top32, top256 = fit_alpha(ev), fit_alpha(ev[:32]), fit_alpha(ev[:256])
        rows.append({"name": info.name, "shape": list(w.shape), "seconds": t_gram + t_eig, "alpha": full["alpha"], "tail_size": full["tail_size"],
                     "alpha_top32": top32["alpha"], "alpha_top256": top256["alpha"]})  # fmt: skip
        print(f"{info.name:45s} {w.shape[0]:6d} x {w.shape[1]:<6d} {t_gram + t_eig:6.2f} s  alpha {full['alpha']:.3f} (tail {full['tail_size']}), "
              f"top-32 {top32['alpha']:.3f}, top-256 {top256['alpha']:.3f}")  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        streamscope.scan(path, out=out, analyses="spectral", spectral="gram", select=r"\.layers\.0\.", memory_budget="2GB", resume=False)
        scan_s = time.perf_counter() - t
    rate, eig_rate = gram_flops / gram_s, eig_s / eig_units
    per_layer_72b = sum(2 * min(s) ** 2 * max(s) / rate + min(s) ** 3 * eig_rate for s in LAYER_72B)
    fig = {"layout": layout, "matrices": rows, "layer_seconds": scan_s, "gram_gflops": rate / 1e9,
           "extrapolated_7b_minutes": 32 * scan_s / 60, "extrapolated_72b_hours": 80 * per_layer_72b / 3600, "machine": machine()}  # fmt: skip
    print(f"scan --spectral gram of the layer: {scan_s:.1f} s; Gram at {rate / 1e9:.0f} GFLOP/s; 7B: {fig['extrapolated_7b_minutes']:.0f} min; "
          f"72B: {fig['extrapolated_72b_hours']:.1f} h")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(fig, indent=1))
    return fig


if __name__ == "__main__":
    main()
