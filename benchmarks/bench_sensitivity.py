"""Measured quantization sensitivity against a plain activation profile of the same checkpoint and tokens.

    python benchmarks/bench_sensitivity.py [--out FILE] [--smoke] [--shapes 4x256,16x256]

The activation benchmark's checkpoint (``bench_activations.build``: Llama-style, 2.2 GB bf16, 20 layers of
hidden 2048 and MLP 5632) and the same random tokens go, each command in its own child process under
``/usr/bin/time -v`` (wall time and peak RSS), through:
- ``profile``: ``streamscope activations`` (every statistic and file): the baseline;
- ``local5``: ``streamscope sensitivity`` with the scan's five schemes, local errors only;
- ``propagated1``: the quantized stream of one recipe (every decoder Linear at int4_g128) beside the float one,
  with the next-token KL, top-1 and perplexities, nothing else;
- ``smoothquant``: SmoothQuant's W8A8 curves (alpha 0.3 .. 0.9) alone;
- ``default``: the command as a user runs it (all eight schemes, SmoothQuant, the stream, the plan).
Ratios are wall times over the profile's, in the same run; all float32 on CPU. The memory bound of the issue
(one decoder layer + two hidden-state streams + one quantized module + the interpreter) is computed beside the
propagated run's peak RSS, the interpreter being the same command's peak on a tiny model of the family.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_activations  # noqa: E402

SCAN_SCHEMES = "int8,int8_channel,int4_g128,int4_g128_asym,fp8_e4m3"
RUNS = {
    "profile": ["activations"],
    "local5": ["sensitivity", "--schemes", SCAN_SCHEMES, "--no-propagate", "--no-smoothquant", "--no-plan"],
    "propagated1": ["sensitivity", "--schemes", "int4_g128", "--no-local", "--no-smoothquant", "--no-plan"],
    "smoothquant": ["sensitivity", "--no-local", "--no-propagate", "--no-plan"],
    "default": ["sensitivity"],
}


def timed(cmd: list[str]) -> dict:
    """Wall seconds and peak RSS of ``cmd`` as ``/usr/bin/time -v`` reports them."""
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", proc.stderr).group(1)
    parts = [float(p) for p in wall.split(":")]
    seconds = sum(p * 60**i for i, p in enumerate(reversed(parts)))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1)) * 1024
    return {"seconds": seconds, "peak_rss_bytes": rss}


def run(model: Path, work: Path, samples: int, seq: int, names: list[str]) -> dict:
    out = {}
    data = ["--data.source", "random", "--data.num_samples", str(samples), "--data.seq_len", str(seq)]
    for name in names:
        dest = work / f"{name}-{samples}x{seq}"
        r = timed([sys.executable, "-m", "streamscope", *RUNS[name], str(model), *data, "--out", str(dest), "--quiet"])
        record = json.loads((dest / ("activations.json" if name == "profile" else "sensitivity.json")).read_text())
        r["inner_seconds"] = record["run"].get("seconds")
        if name != "profile":
            r["input_groups"] = record["run"].get("input_groups")
            p = next(iter(record["propagated"].values()), None)
            if p:
                r["propagated"] = {k: p[k] for k in ("kl_mean", "kl_p99", "top1_agreement", "ppl_float", "ppl_quant")}
            if record.get("plan"):
                r["plan"] = {k: record["plan"].get(k) for k in ("keep", "kl", "bits_per_weight", "met")}
                r["plan"]["keep"] = len(r["plan"]["keep"] or [])
        out[name] = r
        print(f"{name} {samples}x{seq}: {r['seconds']:.1f} s, {r['peak_rss_bytes'] / 2**20:.0f} MiB", flush=True)
    base = out.get("profile", {}).get("seconds")
    for r in out.values():
        r["ratio_to_profile"] = r["seconds"] / base if base else None
    return out


def bound(config: dict, samples: int, seq: int, interpreter: int) -> dict:
    """One decoder layer (float32) + two hidden-state streams + the largest quantized module + the interpreter."""
    h, m = config["hidden_size"], config["intermediate_size"]
    layer = (4 * h * h + 3 * h * m) * 4
    streams = 2 * samples * seq * h * 4
    module = h * m * 4
    return {"layer": layer, "streams": streams, "module": module, "interpreter": interpreter, "total": layer + streams + module + interpreter}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=HERE / "results" / "sensitivity.json")
    p.add_argument("--smoke", action="store_true", help="a tiny model, to check the script")
    p.add_argument("--shapes", default="4x256,16x256", help="comma-separated SAMPLESxTOKENS")
    p.add_argument("--only", help="comma-separated runs (default: all)")
    args = p.parse_args()
    work = Path(tempfile.gettempdir()) / "streamscope-bench"
    config = bench_activations.SMOKE if args.smoke else bench_activations.CONFIG
    model = bench_activations.build(work / ("llama-sens-smoke" if args.smoke else "llama-act-2GB"), config, "500MB")
    names = args.only.split(",") if args.only else list(RUNS)
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    figures = {"model": str(model), "config": config, "runs": {f"{s}x{t}": run(model, work / "sens", s, t, names) for s, t in shapes}}
    tiny = bench_activations.build(work / "llama-sens-smoke", bench_activations.SMOKE, "500MB")
    figures["interpreter"] = run(tiny, work / "sens-tiny", 1, 8, ["propagated1"])["propagated1"]["peak_rss_bytes"]
    figures["memory_bound"] = {f"{s}x{t}": bound(config, s, t, figures["interpreter"]) for s, t in shapes}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=1))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
