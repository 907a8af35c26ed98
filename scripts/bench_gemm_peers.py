#!/usr/bin/env python3
"""The f32 GEMM rates of the libraries the Python tools run on, at the shapes Prism's pipeline
multiplies: Intel MKL / oneDNN through PyTorch and OpenBLAS through NumPy.

    /tmp/pyref/bin/python scripts/bench_gemm_peers.py [--threads 2]

Run it next to `cargo run --release --example bench_forward -- --peak` (the same shapes, the
same best-of-five timing, burn's and Prism's host GEMM): the two together say how close to the
best available f32 GEMM each of Prism's speed goals asks to be. `x · Wᵀ` with `W` stored
`[out, in]`, as a model's projections (and `torch.nn.functional.linear`) multiply.
"""
import argparse
import time

import numpy as np
import torch

SHAPES = [  # the same list as examples/common/peak.rs
    ("projection", 1024, 576, 1536),
    ("down projection", 1024, 1536, 576),
    ("unembedding", 1024, 576, 49152),
    ("similarity chunk", 1024, 512, 32768),
    ("encoder", 4096, 512, 8192),
    ("demo encoder", 1024, 576, 4608),
]


def best_seconds(run, repeats=3):
    run()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)
    except ImportError:
        pass  # NumPy's OpenBLAS then follows OPENBLAS_NUM_THREADS
    print(f"torch {torch.__version__} (CPU capability {torch.backends.cpu.get_cpu_capability()}), "
          f"numpy {np.__version__}, {args.threads} threads")
    for name, m, k, n in SHAPES:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(m, k, generator=gen)
        w = torch.randn(n, k, generator=gen)
        flops = 2.0 * m * k * n
        mkl = flops / best_seconds(lambda: torch.nn.functional.linear(x, w)) / 1e9
        xn, wn = x.numpy(), w.numpy()
        blas = flops / best_seconds(lambda: xn @ wn.T) / 1e9
        print(f"{name} {m}×{k} · {k}×{n}: torch (MKL/oneDNN) {mkl:.1f} GFLOP/s, "
              f"numpy (OpenBLAS) {blas:.1f}")


if __name__ == "__main__":
    main()
