"""Activation analysis: the streamed forward against the in-memory forward and accelerate's disk offload.

    python benchmarks/bench_activations.py [--out FILE] [--smoke]

A Llama-style checkpoint of about 2.2 GB (bf16, random weights, 20 layers of hidden 2048 and MLP 5632,
vocabulary 16000, shards of 500 MB) is built once in the temp directory. The same samples (4 x 256 random
tokens, then 16 x 32: a forward call's cost shrinks with its tokens while offloading re-reads every weight
per call), in the same batches (streamscope's automatic ``data.batch_size``: about 256 tokens per call, so
1 x 256 and 8 x 32), then go, each method in its own child process under ``/usr/bin/time -v`` (peak RSS),
through:
- ``streamed``: streamscope's layer-by-layer forward alone (``activation.forward.run``, no statistics);
- ``profile``: ``streamscope activations`` (the forward with every statistic and file);
- ``in_memory``: transformers ``from_pretrained`` in float32, then the forward;
- ``disk_offload``: accelerate's disk offload (``device_map`` with ``max_memory`` and ``offload_folder``),
  which reads the offloaded weights again on every forward call; here they come from the page cache.
- ``disk_offload_cold`` and ``streamed_cold``: the same with the weights' pages evicted from the page cache
  (``posix_fadvise(DONTNEED)``) before every forward call of the offload, before the run of the streamed
  pass: what a model larger than the machine's memory costs, where nothing stays cached.
- ``disk_offload_cold_per_sample``: the last with one sample per forward call (the seed tool's loop).
Throughput is tokens per second of the forward alone (loading excluded: the in-memory model loads once);
the streamed forward includes its reads, as that is where it reads. All in float32 on CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = dict(vocab_size=16000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=20, num_attention_heads=16,
              num_key_value_heads=16, max_position_embeddings=2048, tie_word_embeddings=False)  # fmt: skip
SMOKE = dict(CONFIG, hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4, vocab_size=512)
SHAPES = ((4, 256), (16, 32))  # (samples, tokens per sample)


def build(path: Path, config: dict, shard: str) -> Path:
    if (path / "config.json").exists():
        return path
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    with torch.device("cpu"):
        model = LlamaForCausalLM(LlamaConfig(**config)).to(torch.bfloat16)
    model.save_pretrained(path, max_shard_size=shard)
    return path


def ids(vocab: int, samples: int, seq: int):
    import torch

    return torch.randint(0, vocab, (samples, seq), generator=torch.Generator().manual_seed(0))


def child(method: str, path: str, vocab: int, work: str, samples: int, seq: int) -> dict:
    if method.startswith("streamed") or method == "profile":
        # streamscope before torch, as in ``streamscope activations``: its defaults for the thread pools and the
        # allocators are read when torch starts them (imported after torch, the streamed run peaked 40-120 MiB
        # higher). The baselines run with torch's own defaults.
        import streamscope  # noqa: F401
    import torch

    tokens = ids(vocab, samples, seq)
    if method == "streamed_cold":
        from streamscope.bench import drop_cache

        drop_cache(path)
        method = "streamed"
    if method == "streamed":
        from streamscope.activation import forward, skeleton
        from streamscope.io.checkpoint import CheckpointIndex

        index = CheckpointIndex.from_path(path)
        sk = skeleton.build(Path(path), dtype=torch.float32)
        r = forward.run(sk, index, tokens, torch.float32, torch.device("cpu"))
        return {"forward_seconds": r.seconds, "bytes_read": r.bytes_read, "checkpoint_bytes": index.total_bytes}
    if method == "profile":
        import streamscope

        r = streamscope.activations(path, out=work, overrides={"data.num_samples": samples, "data.seq_len": seq}, echo=lambda s: None)
        return {"forward_seconds": r["run"]["forward_seconds"], "bytes_read": r["run"]["bytes_read"], "checkpoint_bytes": r["run"]["checkpoint_bytes"]}
    from transformers import AutoModelForCausalLM

    if method == "in_memory":
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    else:  # disk_offload, disk_offload_cold
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, device_map="auto", max_memory={"cpu": "600MB"},
                                                     offload_folder=work, offload_state_dict=True)  # fmt: skip
    model.eval()
    cold = method.startswith("disk_offload_cold")
    from streamscope.activation.forward import batches

    spans = batches(samples, seq, 1 if method.endswith("_per_sample") else None)  # the streamed forward's batches
    t = time.perf_counter()
    with torch.no_grad():
        for s0, s1 in spans:
            if cold:  # accelerate reads offloaded weights from the work folder, or straight from safetensors shards
                _evict(Path(work))
                _evict(Path(path))
            model(input_ids=tokens[s0:s1], use_cache=False)
    return {"forward_seconds": time.perf_counter() - t}


def _evict(folder: Path) -> None:
    import os

    for f in folder.rglob("*"):
        if f.is_file() and not f.is_symlink():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def run(method: str, path: Path, vocab: int, samples: int, seq: int) -> dict:
    from streamscope.bench import run_timed

    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "result.json"
        rss, wall = run_timed([sys.executable, __file__, "--child", method, str(path), str(vocab), work, str(out), str(samples), str(seq)])
        r = json.loads(out.read_text())
    r.update(peak_rss=rss, wall_seconds=wall, tokens_per_second=samples * seq / r["forward_seconds"])
    return r


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--child", nargs=7)
    a = p.parse_args()
    if a.child:
        method, path, vocab, work, out, samples, seq = a.child
        Path(out).write_text(json.dumps(child(method, path, int(vocab), work, int(samples), int(seq))))
        return {}
    config = SMOKE if a.smoke else CONFIG
    path = build(Path(tempfile.gettempdir()) / "streamscope-bench" / ("llama-act-smoke" if a.smoke else "llama-act-2GB"), config,
                 "2MB" if a.smoke else "500MB")  # fmt: skip
    from streamscope.bench import warm
    from streamscope.io.checkpoint import CheckpointIndex

    index = CheckpointIndex.from_path(path)
    layer = 4 * config["hidden_size"] ** 2 + 3 * config["hidden_size"] * config["intermediate_size"] + 2 * config["hidden_size"]
    fig = {"checkpoint_bytes": index.total_bytes, "layer_bytes_f32": layer * 4, "runs": []}
    print(f"checkpoint {index.total_bytes / 1e9:.2f} GB; one layer in float32 {layer * 4 / 2**20:.0f} MiB")
    for samples, seq in SHAPES[:1] if a.smoke else SHAPES:
        hidden_states = samples * seq * config["hidden_size"] * 4
        run_fig = {"samples": samples, "seq_len": seq, "hidden_states_bytes": hidden_states, "methods": {}}
        print(f"{samples} x {seq} tokens; hidden states {hidden_states / 2**20:.0f} MiB")
        warm(path)  # the warm methods start from the page cache (the first ran partly from disk before)
        for method in ("streamed", "profile", "in_memory", "disk_offload", "streamed_cold", "disk_offload_cold", "disk_offload_cold_per_sample"):
            r = run(method, path, config["vocab_size"], samples, seq)
            run_fig["methods"][method] = r
            read = f", read {r['bytes_read'] / 1e9:.2f} GB" if "bytes_read" in r else ""
            print(f"  {method:13s} {r['tokens_per_second']:8.1f} tokens/s  forward {r['forward_seconds']:7.2f} s  wall {r['wall_seconds']:6.1f} s  "
                  f"peak RSS {r['peak_rss'] / 2**20:6.0f} MiB{read}")  # fmt: skip
        m = run_fig["methods"]
        run_fig["streamed_vs_in_memory"] = m["streamed"]["tokens_per_second"] / m["in_memory"]["tokens_per_second"]
        run_fig["streamed_vs_disk_offload"] = m["streamed"]["tokens_per_second"] / m["disk_offload"]["tokens_per_second"]
        run_fig["profile_vs_in_memory"] = m["profile"]["tokens_per_second"] / m["in_memory"]["tokens_per_second"]
        run_fig["cold_streamed_vs_disk_offload"] = m["streamed_cold"]["tokens_per_second"] / m["disk_offload_cold"]["tokens_per_second"]
        run_fig["cold_streamed_vs_disk_offload_per_sample"] = m["streamed_cold"]["tokens_per_second"] / m["disk_offload_cold_per_sample"]["tokens_per_second"]
        print(f"streamed: {run_fig['streamed_vs_in_memory']:.2f}x the in-memory forward's tokens/s, {run_fig['streamed_vs_disk_offload']:.1f}x "
              f"disk offload's ({run_fig['cold_streamed_vs_disk_offload']:.1f}x with the page cache evicted, "
              f"{run_fig['cold_streamed_vs_disk_offload_per_sample']:.1f}x against one sample per call); with every statistic "
              f"{run_fig['profile_vs_in_memory']:.2f}x")  # fmt: skip
        fig["runs"].append(run_fig)
    if a.out:
        a.out.write_text(json.dumps(fig, indent=1))
    return fig


if __name__ == "__main__":
    main()
