#!/usr/bin/env python3
"""PyTorch baseline for examples/bench_train.rs: dictionary_learning's training steps at
d=512, m=8192, batch 4096 on the CPU, written out plainly in torch (the library's own code path:
AutoEncoder / AutoEncoderTopK forward, loss, backward, decoder-gradient projection, Adam step,
decoder renormalisation; TopK also clips the gradient norm at 1). Prints JSON tokens/s."""

import argparse
import json
import os
import time

import torch

D, M, B = 512, 8192, 4096


def unit_rows(w):
    return w / w.norm(dim=1, keepdim=True)


def make(topk):
    w_dec = unit_rows(torch.randn(M, D))
    p = {
        "w_enc": torch.nn.Parameter(w_dec.clone()),  # [m, d], tied init
        "b_enc": torch.nn.Parameter(torch.zeros(M)),
        "w_dec": torch.nn.Parameter(w_dec.clone()),  # [m, d] (decoder.weight transposed)
        "b_dec": torch.nn.Parameter(torch.zeros(D)),
    }
    return p, torch.optim.Adam(p.values(), lr=1e-3)


def step(p, opt, x, topk, l1):
    pre = (x - p["b_dec"]) @ p["w_enc"].T + p["b_enc"]
    if topk:
        post = torch.relu(pre)
        vals, idx = post.topk(32, dim=-1, sorted=False)
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
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    xs = [torch.randn(B, D) * 0.1 for _ in range(4)]
    out = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    for name, topk in [("relu_l1", False), ("topk_k32", True)]:
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
