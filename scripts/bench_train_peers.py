#!/usr/bin/env python3
"""The real peer packages' training steps, for examples/bench_train.rs (`--peers`): the same sizes
(by default d=512, m=8192, batch 4096, k=32) on the CPU, with torch's threads set to the cores.

- dictionary_learning 0.1.0 (`pip install dictionary-learning==0.1.0`): `TopKTrainer.update` and
  `StandardTrainer.update` (ReLU + L1), each trainer's own step: forward, loss (TopK with its AuxK
  term), backward, gradient clipping and decoder-gradient projection where the trainer does
  them, Adam, decoder renormalisation.
- EleutherAI sparsify 1.3.3 (`pip install eai-sparsify==1.3.3`): one step of its `Trainer` for a
  `SparseCoder` (`activation="topk"`): the coder's forward (fused encoder, its decoder), `fvu`
  backward, `remove_gradient_parallel_to_decoder_directions`, the optimiser step and
  `set_decoder_norm_to_unit_norm`, with its eager decoder (`SPARSIFY_DISABLE_TRITON=1`: Triton
  runs on GPUs only). The optimiser is `torch.optim.Adam` (the Trainer's `adam`
  choice without bitsandbytes), like Prism's and dictionary_learning's; `--optimizer signum`
  times the Trainer's default (ScheduleFree-wrapped SignSGD) instead.

dictionary_learning imports nnsight (for its activation buffer) when imported; installing it with
`pip install --no-deps nnsight==0.3.7 python-socketio python-engineio docstring-parser pillow`
next to torch and transformers is enough. Prints JSON: tokens/s per peer per step.

    /tmp/pyref/bin/python scripts/bench_train_peers.py [--steps 10] [--d 512] [--m 8192]
        [--batch 4096] [--k 32] [--l1 0.3] [--only relu|topk] [--optimizer adam|signum]
"""

import argparse
import contextlib
import importlib.metadata as md
import json
import os
import sys
import time

import torch


def inputs(d, batch, seed=0):
    """Sparse non-negative mixtures of 4096 random unit directions plus noise (as bench_train)."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(4096, d, generator=g)
    dirs /= dirs.norm(dim=1, keepdim=True)
    out = []
    for _ in range(4):
        codes = torch.rand(batch, 4096, generator=g)
        codes = torch.where(codes < 8 / 4096, codes * 4096 / 8, torch.zeros_like(codes))
        out.append(codes @ dirs + 0.01 * torch.randn(batch, d, generator=g))
    return out


def timed(step, xs, steps, warmup=2):
    for i in range(warmup):
        step(i, xs[i % len(xs)])
    t0 = time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(i, xs[i % len(xs)])
    return (time.perf_counter() - t0) / steps


def dictionary_learning_step(kind, a):
    with contextlib.redirect_stdout(sys.stderr):
        from dictionary_learning.trainers.standard import StandardTrainer
        from dictionary_learning.trainers.top_k import TopKTrainer

    common = dict(steps=10_000, activation_dim=a.d, dict_size=a.m, layer=0, lm_name="bench",
                  device="cpu", seed=0)
    if kind == "topk":
        trainer = TopKTrainer(k=a.k, **common)
    else:
        trainer = StandardTrainer(l1_penalty=a.l1, **common)
    return trainer.update


def sparsify_step(a):
    # On a CPU the eager decoder (`embedding_bag`): sparsify's own switch; its notice goes to stderr.
    os.environ["SPARSIFY_DISABLE_TRITON"] = "1"
    with contextlib.redirect_stdout(sys.stderr):
        from sparsify import SparseCoder, SparseCoderConfig

    torch.manual_seed(0)
    sae = SparseCoder(a.d, SparseCoderConfig(num_latents=a.m, k=a.k), device="cpu",
                      dtype=torch.float32)
    lr = 2e-4 / (a.m / 2**14) ** 0.5
    if a.optimizer == "adam":
        opt = torch.optim.Adam(sae.parameters(), lr=lr)
    else:
        from schedulefree import ScheduleFreeWrapper
        from sparsify.sign_sgd import SignSGD

        opt = ScheduleFreeWrapper(SignSGD(sae.parameters(), lr=5e-3 / (a.m / 2**14) ** 0.5),
                                  momentum=0.95)
        opt.train()

    def step(_i, x):
        out = sae(x)
        out.fvu.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
        sae.set_decoder_norm_to_unit_norm()

    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--m", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--l1", type=float, default=0.3)
    ap.add_argument("--only", choices=["relu", "relu_l1", "topk"], default=None)
    ap.add_argument("--optimizer", choices=["adam", "signum"], default="adam")
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    xs = inputs(a.d, a.batch)
    out = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "dictionary_learning": md.version("dictionary-learning"),
        "sparsify": md.version("eai-sparsify"),
        "sparsify_optimizer": a.optimizer,
    }
    if a.only is None or a.only.startswith("relu"):
        secs = timed(dictionary_learning_step("relu_l1", a), xs, a.steps)
        out["relu_l1"] = {"dictionary_learning": a.batch / secs}
    if a.only is None or a.only == "topk":
        secs_dl = timed(dictionary_learning_step("topk", a), xs, a.steps)
        secs_sp = timed(sparsify_step(a), xs, a.steps)
        out[f"topk_k{a.k}"] = {"dictionary_learning": a.batch / secs_dl, "sparsify": a.batch / secs_sp}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
