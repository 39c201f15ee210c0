"""Peak RSS of ``streamscope scan --analyses all`` against its memory budget, as ``/usr/bin/time -v`` reports it.

    python benchmarks/bench_memory.py [--layout qwen2.5-0.5b-embedding] [--budget 256MB] [--smoke]

Target (issue: robustness, memory budget): on a 151936 x 896 bf16 embedding (Qwen2.5-0.5B's) at
``--memory-budget 256MB``, peak RSS <= budget + the interpreter's own ~400 MB. The interpreter's share is
measured in the same run: the same command on a 16 x 16 tensor.
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


def peak_rss(path: Path, budget: str, out: Path) -> tuple[int, float, dict]:
    """(peak RSS bytes, wall seconds, model.json) of one CLI scan in a child under /usr/bin/time -v."""
    rss, seconds = run_timed([sys.executable, "-m", "streamscope", "scan", str(path), "--out", str(out), "--analyses", "all",
                              "--memory-budget", budget, "--device", "cpu", "--quiet", "--no-resume"])  # fmt: skip
    return rss, seconds, json.loads((out / "model.json").read_text())


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layout", default="qwen2.5-0.5b-embedding")
    p.add_argument("--budget", default="256MB")
    p.add_argument("--smoke", action="store_true", help="the small layout: checks that the benchmark runs")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    layout = "small" if args.smoke else args.layout
    path = write_layout(CACHE / layout, layout)
    warm(path)
    work = Path(tempfile.mkdtemp(prefix="streamscope-mem-"))
    tiny = save_tensors(work / "tiny.safetensors", {"w": __import__("torch").randn(16, 16)})
    base_rss, _, _ = peak_rss(tiny, args.budget, work / "tiny")
    rss, seconds, model = peak_rss(path, args.budget, work / "scan")
    budget = parse_bytes(args.budget)
    name = next(iter(model["embedding"]), None)
    spectral = json.loads((work / "scan" / "tensors.json").read_text())[name]["spectral"] if name else {}
    target = budget + base_rss
    print(f"layout {layout}: {model['checkpoint']['total_bytes'] / 2**20:.0f} MiB bf16; --analyses all --memory-budget {args.budget}")
    print(f"interpreter alone (same command, 16 x 16 tensor): peak RSS {base_rss / 2**20:.0f} MiB")
    print(f"scan: {seconds:.1f} s, peak RSS {rss / 2**20:.0f} MiB; target <= budget + interpreter = {target / 2**20:.0f} MiB: "
          f"{'met' if rss <= target else 'MISSED'} (growth over the interpreter {(rss - base_rss) / 2**20:.0f} MiB)")  # fmt: skip
    print(f"spectral method {spectral.get('method')}{' (' + spectral['method_note'] + ')' if spectral.get('method_note') else ''}")
    figures = {"layout": layout, "budget": budget, "peak_rss": rss, "interpreter_rss": base_rss, "seconds": seconds,
               "met": rss <= target, "spectral_method": spectral.get("method"), "machine": machine()}  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
