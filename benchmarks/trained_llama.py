"""A Llama-architecture model trained for a few hundred steps, so that its spectra are not pure noise.

    python benchmarks/trained_llama.py [--out DIR] [--steps 200]

Built from a config with transformers in SmolLM-135M's shape (30 layers, hidden 576, MLP 1536, 9 heads with
3 key-value heads, vocabulary 49152, tied embeddings: 135M parameters), trained with AdamW on seeded random
token sequences in which every token repeats the one 7 places before with probability 0.5 (something to
learn), then saved as bf16 safetensors. Kept in ``benchmarks/.cache`` and reused; about ten minutes on two
CPU cores.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DEFAULT = Path(__file__).resolve().parent / ".cache" / "llama-135m-trained"


def batch(gen, size: int, seq: int, vocab: int):
    import torch

    x = torch.randint(0, vocab, (size, seq), generator=gen)
    copy = torch.rand(size, seq, generator=gen) < 0.5
    copy[:, :7] = False
    x[copy] = x.roll(7, dims=1)[copy]
    return x


def build(out: Path = DEFAULT, steps: int = 200, seed: int = 0) -> Path:
    if (out / "model.safetensors").exists():
        return out
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, max_position_embeddings=2048, tie_word_embeddings=True)  # fmt: skip
    model = LlamaForCausalLM(config)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.time()
    for step in range(steps):
        x = batch(gen, 4, 64, config.vocab_size)
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 0 or step == steps - 1:
            print(f"step {step:4d} loss {loss.item():.3f} ({time.time() - t0:.0f} s)", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    model.to(torch.bfloat16).save_pretrained(out)
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT)
    p.add_argument("--steps", type=int, default=200)
    a = p.parse_args()
    print(build(a.out, a.steps))
