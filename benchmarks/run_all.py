"""Run every benchmark the project's targets are stated in; write JSON to results/ and the README table.

    python benchmarks/run_all.py            # full figures (about 10 minutes on 2 cores)
    python benchmarks/run_all.py --smoke    # tiny sizes into a temporary directory: checks that all runs

Figures: scan throughput vs the raw floor and the naive approach (Llama-7B layer), peak RSS on the 2.5 GB
embedding layout with a 512 MB budget (statistics only, then every analysis), randomized vs exact SVD time and
error, peak RSS of every analysis on Qwen2.5-0.5B's embedding at a 256 MB budget, cost per GB of each analysis (``streamscope bench``),
streamscope vs WeightWatcher, and ``streamscope activations`` vs llama.cpp's ``llama-imatrix`` (when a build is given).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from streamscope.environment import tune

HERE = Path(__file__).resolve().parent
ALL = "basic,sparsity,quantization,spectral"


def runs(smoke: bool) -> dict[str, list[str]]:
    if smoke:
        return {
            "scan_small": ["bench_scan.py", "--smoke"],
            "svd_small": ["bench_svd.py", "--smoke"],
            "memory_small": ["bench_memory.py", "--smoke"],
            "embeddings_small": ["bench_embeddings.py", "--smoke"],
            "alpha_small": ["bench_alpha.py", "--smoke"],
            "activations_small": ["bench_activations.py", "--smoke"],
            "imatrix_small": ["bench_imatrix.py", "--smoke", "--repeat", "1"],  # one line and no file without a llama.cpp build
            "sensitivity_small": ["bench_sensitivity.py", "--smoke", "--shapes", "2x32", "--only", "profile,local5"],
            "bench_small": ["-m", "streamscope.cli", "bench", "--size", "16MB", "--layout", "small", "--device", "cpu", "--json"],
        }
    return {
        "scan_llama7b": ["bench_scan.py", "--layout", "llama-7b", "--budget", "512MB"],
        "scan_llama7b_all": ["bench_scan.py", "--layout", "llama-7b", "--budget", "512MB", "--skip-naive", "--analyses", ALL],
        "scan_embedding_512MB": ["bench_scan.py", "--layout", "qwen2.5-72b-embedding", "--budget", "512MB", "--skip-naive"],
        "scan_embedding_512MB_all": ["bench_scan.py", "--layout", "qwen2.5-72b-embedding", "--budget", "512MB", "--skip-naive", "--analyses", ALL],
        "memory_embedding_256MB": ["bench_memory.py", "--layout", "qwen2.5-0.5b-embedding", "--budget", "256MB"],
        "embeddings_72b_1GB": ["bench_embeddings.py", "--layout", "qwen2.5-72b-embedding", "--budget", "1GB", "--k-range", "2:32"],
        "svd_4096x11008": ["bench_svd.py"],
        "weightwatcher": ["bench_weightwatcher.py"],
        "alpha_full_spectrum": ["bench_alpha.py"],
        "activations": ["bench_activations.py"],
        "sensitivity": ["bench_sensitivity.py"],
        # the local errors at the token count a profile takes by default (64 x 1024), where the Gram matrices pay off
        "sensitivity_local": ["bench_sensitivity.py", "--shapes", "4x256,16x1024,64x1024", "--only", "profile,local5"],
        "imatrix": ["bench_imatrix.py"],  # needs LLAMA_CPP_DIR (a llama.cpp build); without it one line, and results/imatrix.json is kept
        "bench_cpu": ["-m", "streamscope.cli", "bench", "--size", "1GB", "--device", "cpu", "--memory-budget", "512MB", "--json", "--repeat", "3",
                      "--analyses", "basic,sparsity;quantization;spectral;" + ALL],
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--only", help="comma-separated names of runs")
    args = p.parse_args()
    out_dir = Path(tempfile.mkdtemp(prefix="streamscope-bench-")) if args.smoke else HERE / "results"
    out_dir.mkdir(exist_ok=True)
    env = dict(os.environ)
    tune(env)  # the benchmarks that use the API in-process run with the command line's settings too
    for name, argv in runs(args.smoke).items():
        if args.only and name not in args.only.split(","):
            continue
        out = out_dir / f"{name}.json"
        cmd = [sys.executable, *([str(HERE / argv[0])] if argv[0].endswith(".py") else argv[:2]), *(argv[1:] if argv[0].endswith(".py") else argv[2:]), "--out", str(out)]
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        print(proc.stdout[-4000:] if "--json" not in argv else "", proc.stderr[-2000:] if proc.returncode else "", flush=True)
        if proc.returncode:
            raise SystemExit(f"benchmark {name} failed")
    if not args.smoke:
        (HERE / "README.md").write_text(readme(out_dir))
    print(f"results in {out_dir}")


def _raw_gbs(figures: dict) -> float:
    return next(r["gbs"] for r in figures["rows"] if r["method"] == "raw" and r["cache"] == "warm")


def readme(results: Path) -> str:
    """The benchmark README, regenerated from the JSON figures."""
    load = lambda n: json.loads((results / f"{n}.json").read_text()) if (results / f"{n}.json").exists() else None  # noqa: E731
    lines = ["# Benchmarks", "", "Regenerated by `python benchmarks/run_all.py` from `results/*.json`; each figure was measured in one run",
             "with its baseline, on page-cached files unless marked cold. Peak RSS is `ru_maxrss` of a child process per method",
             "(mapped file pages count, as with `/usr/bin/time -v`).", ""]  # fmt: skip
    any_fig = next((load(n) for n in ("scan_llama7b", "bench_cpu", "svd_4096x11008") if load(n)), None)
    if any_fig:
        m = any_fig["machine"]
        lines += [f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GiB RAM, torch {m['torch']}, Python {m['python']}.", ""]
    lines += ["## Scan vs raw floor and naive approach", "", "| layout | budget | analyses | method | GB/s | vs raw | vs naive | peak RSS (MiB) | RSS vs naive |",
              "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for name in ("scan_llama7b", "scan_llama7b_all", "scan_embedding_512MB", "scan_embedding_512MB_all"):
        f = load(name)
        if not f:
            continue
        rows = f["methods"]
        for method, r in rows.items():
            gbs = f["bytes"] / r["seconds"] / 1e9
            vs_naive = f"{rows['naive']['seconds'] / r['seconds']:.1f}x" if "naive" in rows else "-"
            rss_naive = f"{r['peak_rss'] / rows['naive']['peak_rss']:.2f}x" if "naive" in rows else "-"
            lines.append(f"| {f['layout']} ({f['bytes'] / 1e9:.2f} GB) | {f['budget']} | {f.get('analyses', 'basic,sparsity') if method == 'scan' else '-'} | {method} | "
                         f"{gbs:.2f} | {rows['raw']['seconds'] / r['seconds']:.2f}x | {vs_naive} | {r['peak_rss'] / 2**20:.0f} | {rss_naive} |")  # fmt: skip
    f = load("memory_embedding_256MB")
    if f:
        lines += ["", "## Memory budget (`scan --analyses all`, peak RSS from `/usr/bin/time -v`)", "",
                  "| layout | budget | interpreter alone (MiB) | scan peak RSS (MiB) | target: budget + interpreter | seconds | spectral method |",
                  "| --- | ---: | ---: | ---: | --- | ---: | --- |",
                  f"| {f['layout']} | {f['budget'] >> 20} MiB | {f['interpreter_rss'] / 2**20:.0f} | {f['peak_rss'] / 2**20:.0f} | "
                  f"{'met' if f['met'] else 'missed'} | {f['seconds']:.1f} | {f['spectral_method']} |"]  # fmt: skip
    f = load("embeddings_72b_1GB")
    if f:
        lines += ["", "## Embedding study (`streamscope embeddings`, k-means for every k of the range)", "",
                  "| layout | k range | budget | seconds | peak RSS (MiB) | interpreter alone (MiB) | chosen k | passes over the rows |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
                  f"| {f['layout']} | {f['k_range']} | {f['budget'] >> 20} MiB | {f['seconds']:.0f} | {f['peak_rss'] / 2**20:.0f} | "
                  f"{f['interpreter_rss'] / 2**20:.0f} | {f['k']} | {f['passes']} |"]  # fmt: skip
    f = load("svd_4096x11008")
    if f:
        s = f["seconds"]
        lines += ["", f"## Singular values of a {f['shape'][0]} x {f['shape'][1]} matrix (top-{f['k']})", "", "| method | seconds | speedup vs svdvals | max rel. error |", "| --- | ---: | ---: | ---: |",
                  f"| svdvals | {s['svdvals']:.2f} | 1.0x | reference |",
                  f"| randomized subspace iteration ({f['randomized_iterations']} iterations) | {s['randomized']:.2f} | {s['svdvals'] / s['randomized']:.1f}x | {f['randomized_top10_rel_error']:.1e} (top 10) |",
                  *([f"| block Krylov, bf16 products (depth {f['block_krylov_depth']}; what `randomized` runs) | {s['block_krylov']:.2f} | {s['svdvals'] / s['block_krylov']:.1f}x | {f['block_krylov_top10_rel_error']:.1e} (top 10) |"]
                    if "block_krylov" in s else []),
                  f"| gram | {s['gram']:.2f} | {s['svdvals'] / s['gram']:.1f}x | {f['gram_rel_error']:.1e} (resolved values) |"]  # fmt: skip
    f, before = load("bench_cpu"), load("bench_cpu_before")
    if f and before:
        lines += ["", "## Health-scan speed, before and after (`streamscope bench`, llama-7b layout, 1.21 GB, budget 512MB, warm cache)", "",
                  "Before: `results/bench_cpu_before.json`, one run each, kept from the commit before this work; after: `results/bench_cpu.json`,",
                  "median of runs in turns. Ratios are against the raw floor measured in the same run; the floor itself moves with the",
                  f"machine's load ({_raw_gbs(before):.2f} GB/s before, {_raw_gbs(f):.2f} GB/s after), more than the scans do.", "",
                  "| analyses | before GB/s | before vs raw | after GB/s | after vs raw | target | 72B extrapolation after |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
        targets = {"quantization": "0.3x", "spectral": "0.15x", "basic,sparsity,quantization,spectral": "0.1x"}
        for r in f["rows"]:
            if r["method"] != "scan" or r["cache"] != "warm":
                continue
            b = next((x for x in before["rows"] if x["method"] == "scan" and x["cache"] == "warm" and x["analyses"] == r["analyses"]), None)
            ext = f"{r['extrapolated_72b_seconds'] / 60:.1f} min" if r.get("extrapolated_72b_seconds") else "-"
            lines.append(f"| {r['analyses']} | {b['gbs'] if b else float('nan'):.2f} | {b['vs_raw'] if b else float('nan'):.2f}x | {r['gbs']:.2f} | "
                         f"{r['vs_raw']:.2f}x | {targets.get(r['analyses'], '-')} | {ext} |")  # fmt: skip
    if f:
        from streamscope.bench import format_table

        lines += ["", f"## Cost per analysis (`streamscope bench`, {f['checkpoint']['layout']}, {f['checkpoint']['bytes'] / 1e9:.2f} GB, device {f['device']}, budget {f['budget']})", "",
                  f"Cold cache: {f['cold_cache']}.", "", format_table(f)]  # fmt: skip
    f = load("activations")
    if f and "runs" in f:
        lines += ["", f"## Activation analysis: streamed forward vs in-memory and accelerate's disk offload ({f['checkpoint_bytes'] / 1e9:.2f} GB "
                  f"Llama-style, float32, CPU, every method in the same batches of samples; one decoder layer in float32: {f['layer_bytes_f32'] / 2**20:.0f} MiB)", "",
                  "| samples x tokens | method | tokens/s | forward s | wall s | peak RSS (MiB) | bytes read |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
        for run in f["runs"]:
            for name, r in run["methods"].items():
                read = f"{r['bytes_read'] / 1e9:.2f} GB" if "bytes_read" in r else "-"
                lines.append(f"| {run['samples']} x {run['seq_len']} | {name} | {r['tokens_per_second']:.1f} | {r['forward_seconds']:.2f} | "
                             f"{r['wall_seconds']:.1f} | {r['peak_rss'] / 2**20:.0f} | {read} |")  # fmt: skip
        lines.append("")
        for run in f["runs"]:
            lines.append(f"- {run['samples']} x {run['seq_len']}: streamed {run['streamed_vs_in_memory']:.2f}x the in-memory forward's tokens/s and "
                         f"{run['streamed_vs_disk_offload']:.1f}x disk offload's from the page cache, "
                         f"{run.get('cold_streamed_vs_disk_offload', float('nan')):.1f}x with the weights evicted from it (the regime of a model "
                         f"larger than memory), {run.get('cold_streamed_vs_disk_offload_per_sample', float('nan')):.1f}x against that offload "
                         f"called once per sample; with every statistic and file {run['profile_vs_in_memory']:.2f}x.")  # fmt: skip
    f = load("imatrix")
    if f and "runs" in f:
        lines += imatrix_section(f)
    f = load("sensitivity")
    if f and "runs" in f:
        lines += sensitivity_section(f)
    f = load("sensitivity_local")
    if f and "runs" in f:
        lines += sensitivity_section(f, "the local errors of five schemes against a plain activation profile, up to the profile's default "
                                        "64 x 1024 tokens")  # fmt: skip
    f = load("weightwatcher")
    if f and "models" in f:
        lines += ["", "## streamscope vs WeightWatcher 0.7.7 (spectral analysis, each tool a process from start to exit; after imports: its work once its modules are imported, as `streamscope bench` times)", "",
                  "| model | layers | streamscope s | WeightWatcher s | speedup | after imports: streamscope s | WeightWatcher s | speedup | streamscope RSS (MiB) | WeightWatcher RSS (MiB) | RSS ratio | alpha within 0.05 | largest alpha diff |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
        for m in f["models"]:
            after = (f"{m['streamscope']['analysis_seconds']:.2f} | {m['weightwatcher']['analysis_seconds']:.2f} | {m['analysis_speedup']:.1f}x"
                     if "analysis_speedup" in m else "- | - | -")  # fmt: skip
            lines.append(f"| {m['model']} | {m['layers']} | {m['streamscope']['seconds']:.2f} | {m['weightwatcher']['seconds']:.2f} | {m['speedup']:.1f}x | {after} | "
                         f"{m['streamscope']['peak_rss'] / 2**20:.0f} | {m['weightwatcher']['peak_rss'] / 2**20:.0f} | {m['rss_ratio']:.2f}x | "
                         f"{m['within_tolerance']}/{m['layers']} | {m['max_alpha_diff']:.4f} |")  # fmt: skip
    f = load("alpha_full_spectrum")
    if f:
        lines += ["", f"## alpha of large matrices: full Gram spectra vs a top-k tail ({f['layout']}, one decoder layer)", "",
                  "| matrix | shape | Gram + eigvalsh (float32) s | alpha (full) | fitted tail | alpha from top 32 | alpha from top 256 |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
        for r in f["matrices"]:
            lines.append(f"| {r['name']} | {r['shape'][0]} x {r['shape'][1]} | {r['seconds']:.2f} | {r['alpha']:.3f} | {r['tail_size']} | {r['alpha_top32']:.3f} | {r['alpha_top256']:.3f} |")
        lines += ["", f"Full spectra of every matrix: {f['layer_seconds']:.0f} s per decoder layer here; {f['extrapolated_7b_minutes']:.0f} min for a 7B layout "
                  f"(32 layers), {f['extrapolated_72b_hours']:.1f} h for a 72B layout (80 layers, hidden 8192, MLP 29568; from the same per-flop rate)."]  # fmt: skip
    lines += ["", (HERE / "measured.md").read_text().rstrip()]  # sections measured by their own scripts, kept by hand
    lines += ["", (HERE / "why.md").read_text().rstrip()]  # the measurements behind design choices, kept by hand
    return "\n".join(lines) + "\n"


def sensitivity_section(f: dict, title: str = "streamscope sensitivity vs a plain activation profile") -> list[str]:
    c = f["config"]
    lines = ["", f"## {title} (Llama-style, {c['num_hidden_layers']} layers of hidden "
             f"{c['hidden_size']} and MLP {c['intermediate_size']}, float32, random weights and tokens, CPU; each a process under /usr/bin/time -v)", "",
             "| tokens | run | wall s | x profile | peak RSS (MiB) | input groups gram / inputs |", "| --- | --- | ---: | ---: | ---: | --- |"]  # fmt: skip
    for shape, runs in f["runs"].items():
        for name, r in runs.items():
            groups = r.get("input_groups") or {}
            modes = f"{groups.get('gram', 0)} / {groups.get('inputs', 0)}" if groups else "-"
            lines.append(f"| {shape} | {name} | {r['seconds']:.1f} | {r['ratio_to_profile']:.2f} | {r['peak_rss_bytes'] / 2**20:.0f} | {modes} |")
    for shape, b in (f.get("memory_bound") or {}).items():
        got = f["runs"][shape].get("propagated1", {}).get("peak_rss_bytes")
        if not got:  # a run of the local errors alone
            continue
        lines.append("")
        lines.append(f"- {shape}: the propagated run's peak RSS {got / 2**20:.0f} MiB against the bound one decoder layer "
                     f"({b['layer'] / 2**20:.0f} MiB) + two hidden-state streams ({b['streams'] / 2**20:.0f} MiB) + one quantized module "
                     f"({b['module'] / 2**20:.0f} MiB) + the interpreter ({b['interpreter'] / 2**20:.0f} MiB, the same command on a tiny model) "
                     f"= {b['total'] / 2**20:.0f} MiB." if got else "")  # fmt: skip
    lines += ["", "Runs: `profile` = `streamscope activations` (the baseline); `local5` = the local errors of the scan's five schemes; "
              "`propagated1` = one quantized stream (every decoder Linear at int4_g128) with KL, top-1 and perplexity; `smoothquant` = "
              "W8A8 per alpha; `default` = the command as a user runs it (eight schemes, SmoothQuant, the stream, the plan and its checks)."]  # fmt: skip
    return lines


def imatrix_section(f: dict) -> list[str]:
    c, med, m = f["checkpoint"], f["median"], f["machine"]
    src = Path(f["llama_cpp"]["converter"]).parent
    lines = ["", f"## streamscope activations vs llama.cpp's llama-imatrix ({c['bytes'] / 1e9:.2f} GB Llama-style, float32, random weights; "
             f"{f['chunks']} x {f['ctx']} tokens, {f['threads']} threads, CPU)", "",
             f"llama.cpp {f['llama_cpp']['version']} (source: {src.parent.name}/{src.name}), CPU build; the same checkpoint as GGUF F32 "
             f"({c['gguf_bytes'] / 1e9:.2f} GB) by its `convert_hf_to_gguf.py`. Each tool a whole process under `/usr/bin/time -v`, medians of "
             f"{f['repeat']} runs in alternating order, from the page cache. `llama-imatrix -c {f['ctx']} --chunks {f['chunks']} -t {f['threads']}` "
             "also computes the perplexity (its default); its RSS counts the memory-mapped GGUF's pages. `streamscope activations` computes "
             "every statistic and writes every file (imatrix.gguf among them), streaming the safetensors shards layer by layer. "
             f"Windows: {f['windows']}.", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GiB RAM, torch {m['torch']}; streamscope at {f['streamscope']['commit']}"
             f"{' with uncommitted changes in streamscope/' if f['streamscope']['uncommitted_changes'] else ''}.",
             *([f"Machine state: {f['note']}."] if f.get("note") else []), "",
             "| tool | wall s | fastest run s | peak RSS (MiB) | CPU % | CPU s (user + system) |", "| --- | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for tool, label in (("llama", "llama-imatrix"), ("streamscope", "streamscope activations")):
        t = med[tool]
        lines.append(f"| {label} | {t['wall_seconds']:.1f} | {f['min'][tool]['wall_seconds']:.1f} | {t['peak_rss'] / 2**20:.0f} | {t['cpu_percent']:.0f} | "
                     f"{t['cpu_seconds']:.1f} |")  # fmt: skip
    r = f["ratios"]
    lines += [f"| streamscope / llama-imatrix | {r['wall_seconds']:.2f}x | {f['ratios_of_minimums']['wall_seconds']:.2f}x | {r['peak_rss']:.2f}x | "
              f"{r['cpu_percent']:.2f}x | {r['cpu_seconds']:.2f}x |", "",
              "Importance matrices, per tensor the cosine of in_sum2/counts (the mean of x² per input channel) between the two files:"]  # fmt: skip
    for label, g in (("same text, the same consecutive windows", f["imatrix"]), ("identical tokens (the aligned pair)", (f.get("aligned") or {}).get("imatrix"))):
        if g:
            only = f"; only streamscope writes {', '.join(g['only_streamscope'])}" if g["only_streamscope"] else ""
            lines.append(f"- {label}: median {g['cosine_median']:.6f}, minimum {g['cosine_min']:.6f} (1 - cos = {1 - g['cosine_min']:.1e}, "
                         f"{g['cosine_min_tensor']}) over the {g['tensors_both']} tensors both write{only}; relative L2 difference median "
                         f"{g['rel_l2_median']:.1e}, max {g['rel_l2_max']:.1e}; tokens counted {', '.join(f'{x:.0f}' for x in g['counts_streamscope'])} "
                         f"(streamscope), {', '.join(f'{x:.0f}' for x in g['counts_llama'])} (llama-imatrix).")  # fmt: skip
    a = f.get("aligned")
    if a:
        lines.append(f"- the aligned pair: streamscope reads a text of exactly {f['ctx']} tokens (each of its {f['chunks']} windows is the whole text), "
                     f"llama-imatrix that text {f['chunks']} times; token ids checked equal: streamscope's {a['streamscope_tokens_as_intended']}, "
                     f"llama.cpp's (`llama-tokenize`) {a['llama_tokens_as_intended']}. One run each: llama-imatrix {a['llama']['wall_seconds']:.1f} s, "
                     f"{a['llama']['peak_rss'] / 2**20:.0f} MiB; streamscope {a['streamscope']['wall_seconds']:.1f} s, {a['streamscope']['peak_rss'] / 2**20:.0f} MiB. "
                     "Different windows of random-weight activations differ by tens of percent; the same tokens agree to float32 rounding.")  # fmt: skip
    sc = f.get("scaling")
    if sc:
        s, ll = sc["streamscope"], sc["llama"]
        lines += ["", f"Scaling, one run each on {sc['chunks']} x {f['ctx']} tokens: llama-imatrix {ll['wall_seconds']:.1f} s, streamscope "
                  f"{s['wall_seconds']:.1f} s ({sc['ratio_wall']:.2f}x), peak RSS {ll['peak_rss'] / 2**20:.0f} and {s['peak_rss'] / 2**20:.0f} MiB. "
                  f"Each further chunk of {f['ctx']} tokens costs {s['seconds_per_chunk']:.2f} s in streamscope and {ll['seconds_per_chunk']:.2f} s "
                  f"in llama-imatrix ({sc['ratio_per_chunk']:.2f}x); the fixed cost (process start, imports, loading) is {s['fixed_seconds']:.1f} s "
                  f"and {ll['fixed_seconds']:.1f} s. streamscope's fixed cost is mostly importing torch and transformers' model code."]  # fmt: skip
    return lines


if __name__ == "__main__":
    main()
