"""Scan throughput and peak RSS against the raw floor and the naive approach, in one run.

    python benchmarks/bench_scan.py [--layout llama-7b] [--budget 512MB] [--smoke]

Targets (issue: streaming scan engine): scan >= 0.5x the raw baseline's GB/s, >= 3x the naive approach's,
with <= 0.3x its peak RSS.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from streamscope.bench import machine, run_child, warm
from streamscope.io.checkpoint import CheckpointIndex
from streamscope.synthetic import write_layout

CACHE = Path(__file__).resolve().parent / ".cache"


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layout", default="llama-7b")
    p.add_argument("--budget", default="512MB")
    p.add_argument("--smoke", action="store_true", help="tiny layout: checks that the benchmark runs")
    p.add_argument("--skip-naive", action="store_true")
    p.add_argument("--analyses", default="basic,sparsity", help="analyses of the streamscope run")
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = p.parse_args()
    layout = "small" if args.smoke else args.layout
    path = write_layout(CACHE / layout, layout)
    size = CheckpointIndex.from_path(path).total_bytes
    warm(path)
    rows = {}
    methods = [("raw", {}), ("scan", {"budget": args.budget, "analyses": args.analyses})]
    if not args.skip_naive:
        methods.append(("naive", {}))
    for method, kwargs in methods:
        rows[method] = run_child(method, path, **kwargs)
    raw, scan = rows["raw"], rows["scan"]
    print(f"layout {layout}: {size / 1e9:.3f} GB bf16, page-cached; budget {args.budget}; analyses {args.analyses}")
    print(f"{'method':8s} {'seconds':>8s} {'GB/s':>7s} {'vs raw':>7s} {'vs naive':>9s} {'peak RSS':>10s} {'RSS vs naive':>13s}")
    for method, r in rows.items():
        gbs = size / r["seconds"] / 1e9
        vs_naive = rows["naive"]["seconds"] / r["seconds"] if "naive" in rows else float("nan")
        rss_naive = r["peak_rss"] / rows["naive"]["peak_rss"] if "naive" in rows else float("nan")
        print(f"{method:8s} {r['seconds']:8.3f} {gbs:7.2f} {raw['seconds'] / r['seconds']:7.2f}x {vs_naive:8.2f}x "
              f"{r['peak_rss'] / 2**20:8.0f} MiB {rss_naive:12.2f}x")  # fmt: skip
    figures = {"layout": layout, "bytes": size, "budget": args.budget, "analyses": args.analyses, "machine": machine(), "methods": rows}
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
