#!/usr/bin/env python3
"""Forward-pass throughput of HF `transformers` on SmolLM2's GGUF vs Prism, same batch, same machine.

    /tmp/pyref/bin/python scripts/bench_forward_hf.py [--gguf assets/SmolLM2-135M-Instruct.Q4_1.gguf]
        [--stop-at 15]

Builds the same 8 × 128 batch as examples/bench_forward.rs (same text, same tokenizer), times the
HF forward pass (f32, torch's default threads), then runs the Rust example and prints the ratio.
With `--stop-at L` both sides harvest block L's MLP output instead: HF through a forward hook that
keeps the output and stops the pass there (the nnsight / TransformerLens `stop_at_layer` way),
Prism through `bench_forward --stop-at blocks.L.hook_mlp_out` (its cache's harvest).
"""
import argparse
import json
import pathlib
import statistics
import subprocess
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEXT = ("Sparse autoencoders decompose the activations of a language model into a dictionary of "
        "features, each a direction in activation space that fires on a small fraction of tokens. Researchers "
        "train them on hundreds of millions of activation vectors harvested from a corpus, measure how much of "
        "the model's loss the reconstruction recovers, and study the contexts on which each feature fires. ")

ap = argparse.ArgumentParser()
ap.add_argument("--gguf", default=str(ROOT / "assets/SmolLM2-135M-Instruct.Q4_1.gguf"))
ap.add_argument("--iters", type=int, default=5)
ap.add_argument("--stop-at", type=int, default=None, help="harvest this block's MLP output")
args = ap.parse_args()
path = pathlib.Path(args.gguf)
tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
ids = tok(TEXT * 40)["input_ids"]
batch = torch.tensor([ids[i * 97:i * 97 + 128] for i in range(8)])


class Stop(Exception):
    pass


captured = []


def keep_and_stop(_module, _inputs, output):
    captured.append(output.detach().clone())
    raise Stop


def run():
    try:
        model(batch)
    except Stop:
        pass


if args.stop_at is not None:
    model.model.layers[args.stop_at].mlp.register_forward_hook(keep_and_stop)
times = []
with torch.inference_mode():
    run()
    for _ in range(args.iters):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
hf = batch.numel() / statistics.median(times)
what = "forward" if args.stop_at is None else f"harvest of block {args.stop_at}'s mlp output"
print(f"transformers {__import__('transformers').__version__} torch {torch.__version__} "
      f"({torch.get_num_threads()} threads), {what}: {hf:.0f} tokens/s")
extra = [] if args.stop_at is None else ["--stop-at", f"blocks.{args.stop_at}.hook_mlp_out"]
out = subprocess.run(["cargo", "run", "-q", "--release", "--example", "bench_forward", "--",
                      "--model", str(path), "--iters", str(args.iters), "--json", *extra],
                     cwd=ROOT, check=True, capture_output=True, text=True).stdout
prism = json.loads(out.strip().splitlines()[-1])["tokens_per_s"]
print(f"prism: {prism:.0f} tokens/s")
print(f"ratio prism / transformers: {prism / hf:.2f}x")
