#!/usr/bin/env python3
"""PyTorch baseline for examples/bench_train.rs: dictionary_learning's training steps (by
default d=512, m=8192, batch 4096 on the CPU; --d/--m/--batch/--k/--device change them),
written out plainly in torch (the library's own code path:
AutoEncoder / AutoEncoderTopK forward, loss, backward, decoder-gradient projection, Adam step,
decoder renormalisation; TopK also clips the gradient norm at 1). Prints JSON tokens/s."""

import argparse
import json
import os
import time

import torch

D, M, B, K = 512, 8192, 4096, 32
DEV = "cpu"


def unit_rows(w):
    return w / w.norm(dim=1, keepdim=True)


def make(topk):
    w_dec = unit_rows(torch.randn(M, D, device=DEV))
    p = {
        "w_enc": torch.nn.Parameter(w_dec.clone()),  # [m, d], tied init
        "b_enc": torch.nn.Parameter(torch.zeros(M, device=DEV)),
        "w_dec": torch.nn.Parameter(w_dec.clone()),  # [m, d] (decoder.weight transposed)
        "b_dec": torch.nn.Parameter(torch.zeros(D, device=DEV)),
    }
    return p, torch.optim.Adam(p.values(), lr=1e-3)


def step(p, opt, x, topk, l1):
    pre = (x - p["b_dec"]) @ p["w_enc"].T + p["b_enc"]
    if topk:
        post = torch.relu(pre)
        vals, idx = post.topk(K, dim=-1, sorted=False)
        f = torch.zeros_like(post).scatter_(-1, idx, vals)
    else:
        f = torch.relu(pre)
    x_hat = f @ p["w_dec"] + p["b_dec"]
    loss = (x - x_hat).pow(2).sum(-1).mean()
    if not topk:
        loss = loss + l1 * f.sum(-1).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    with torch.no_grad():
        g, w = p["w_dec"].grad, p["w_dec"]
        g -= (g * w).sum(1, keepdim=True) * w
    if topk:
        torch.nn.utils.clip_grad_norm_(p.values(), 1.0)
    opt.step()
    with torch.no_grad():
        p["w_dec"].data = unit_rows(p["w_dec"].data)
    return (f != 0).float().sum(-1).mean().item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--l1", type=float, default=0.3)
    ap.add_argument("--d", type=int, default=D)
    ap.add_argument("--m", type=int, default=M)
    ap.add_argument("--batch", type=int, default=B)
    ap.add_argument("--k", type=int, default=K)
    ap.add_argument("--device", default=DEV, help="cpu or cuda")
    ap.add_argument("--only", choices=["relu", "relu_l1", "topk"], default=None)
    a = ap.parse_args()
    globals().update(D=a.d, M=a.m, B=a.batch, K=a.k, DEV=a.device)
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    xs = [torch.randn(B, D, device=DEV) * 0.1 for _ in range(4)]
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": DEV}
    if DEV.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name()
    cases = [("relu_l1", False), (f"topk_k{K}", True)]
    if a.only:
        cases = [c for c in cases if c[0].startswith(a.only)]
    for name, topk in cases:
        p, opt = make(topk)
        for i in range(2):
            step(p, opt, xs[i % 4], topk, a.l1)
        t0 = time.perf_counter()
        l0 = 0.0
        for i in range(a.steps):
            l0 += step(p, opt, xs[i % 4], topk, a.l1) / a.steps
        secs = (time.perf_counter() - t0) / a.steps
        out[name] = {"tokens_per_s": B / secs, "seconds_per_step": secs, "l0": l0}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
