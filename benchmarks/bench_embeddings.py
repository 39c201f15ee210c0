"""Time and peak RSS of ``streamscope embeddings`` (k-means for every k of the range, streamed) under a budget.

    python benchmarks/bench_embeddings.py [--layout qwen2.5-72b-embedding] [--budget 1GB] [--k-range 2:32] [--smoke]

Target (issue: the embedding study): a 152064 x 8192 bf16 embedding (Qwen2.5-72B's layout, synthetic) at
``--memory-budget 1GB``; peak RSS from ``/usr/bin/time -v``, next to the interpreter's own (the same command on a
64 x 16 matrix).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from streamscope.bench import machine, run_timed, warm
from streamscope.synthetic import save_tensors, write_layout
from streamscope.units import parse_bytes

CACHE = Path(__file__).resolve().parent / ".cache"


def run(path: Path, budget: str, k_range: str, out: Path) -> tuple[int, float]:
    return run_timed([sys.executable, "-m", "streamscope", "embeddings", str(path), "--out", str(out), "--k-range", k_range,
                      "--memory-budget", budget, "--device", "cpu", "--quiet"])  # fmt: skip


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layout", default="qwen2.5-72b-embedding")
    p.add_argument("--budget", default="1GB")
    p.add_argument("--k-range", default="2:32")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    layout = "small" if args.smoke else args.layout
    k_range = "2:6" if args.smoke else args.k_range
    path = write_layout(CACHE / layout, layout)
    warm(path)
    work = Path(tempfile.mkdtemp(prefix="streamscope-emb-"))
    import torch

    tiny = save_tensors(work / "tiny.safetensors", {"model.embed_tokens.weight": torch.randn(64, 16)})
    base, _ = run(tiny, args.budget, k_range, work / "tiny")
    rss, seconds = run(path, args.budget, k_range, work / "big")
    result = json.loads((work / "big" / "embeddings.json").read_text())
    name, c = next(iter(result["clusters"].items()))
    print(f"layout {layout}, {name}: k-range {k_range}, --memory-budget {args.budget}")
    print(f"{seconds:.0f} s, peak RSS {rss / 2**20:.0f} MiB (interpreter alone {base / 2**20:.0f} MiB; budget {parse_bytes(args.budget) >> 20} MiB); "
          f"chosen k {c['k']}, {c['passes']} passes over the rows; PCA from {c['pca']}")  # fmt: skip
    figures = {"layout": layout, "k_range": k_range, "budget": parse_bytes(args.budget), "seconds": seconds, "peak_rss": rss,
               "interpreter_rss": base, "k": c["k"], "passes": c["passes"], "machine": machine()}  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
