#!/usr/bin/env python3
"""The exact `resid_pre` patching sweep on SmolLM2: Prism vs PyTorch, same prompts, same machine.

    /tmp/pyref/bin/python scripts/bench_patching_torch.py [--gguf assets/SmolLM2-135M-Instruct.Q4_1.gguf] [--profile release|dev]

Runs `cargo run --profile PROFILE --example bench_patching -- --json` first (Prism's exact sweeps and
attribution patching, and the prompt pairs' token ids), then the same block × position sweep of
`blocks.{l}.hook_resid_pre` (denoising, logit difference at the last position, mean over the pairs):
- with HF `transformers` and PyTorch forward pre-hooks on each decoder layer, one patched
  forward pass of the whole batch of pairs per cell, as TransformerLens' `patching.py` does;
- with TransformerLens' own `patching.get_act_patch_resid_pre` where it can load the model
  (SmolLM2 is not in its model list; the script builds a HookedTransformerConfig by hand, converts
  the HF weights with TransformerLens' Llama converter and checks its logits against HF's first).
Prints each time and the ratio to Prism's, and checks that the three sweeps agree.
"""
import argparse
import json
import pathlib
import subprocess
import time

import torch
from transformers import AutoModelForCausalLM

ROOT = pathlib.Path(__file__).resolve().parent.parent

ap = argparse.ArgumentParser()
ap.add_argument("--gguf", default=str(ROOT / "assets/SmolLM2-135M-Instruct.Q4_1.gguf"))
ap.add_argument("--pairs", type=int, default=4)
ap.add_argument("--profile", default="release",
                help="cargo profile of the Rust example (dev: dependencies optimised, ours at -O1)")
args = ap.parse_args()

out = subprocess.run(["cargo", "run", "-q", "--profile", args.profile, "--example", "bench_patching", "--",
                      "--model", args.gguf, "--pairs", str(args.pairs), "--json"],
                     cwd=ROOT, check=True, capture_output=True, text=True)
prism = json.loads(out.stdout.strip().splitlines()[-1])
print(out.stderr.strip())
clean = torch.tensor(prism["clean_ids"])
corrupt = torch.tensor(prism["corrupt_ids"])
answer, wrong = torch.tensor(prism["answer"]), torch.tensor(prism["wrong"])

path = pathlib.Path(args.gguf)
model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                             dtype=torch.float32).eval()
layers = model.model.layers
rows = torch.arange(clean.shape[0])


def logit_diff(logits):
    return float((logits[rows, -1, answer] - logits[rows, -1, wrong]).mean())


def hf_sweep():
    cache = {}

    def capture(l):
        def hook(mod, args, kwargs):
            cache[l] = (args[0] if args else kwargs["hidden_states"]).clone()
        return hook

    with torch.inference_mode():
        hs = [layers[l].register_forward_pre_hook(capture(l), with_kwargs=True)
              for l in range(len(layers))]
        model(clean)
        for h in hs:
            h.remove()
        out = torch.zeros(len(layers), clean.shape[1])
        for l in range(len(layers)):
            for p in range(clean.shape[1]):
                def patch(mod, args, kwargs, l=l, p=p):
                    x = (args[0] if args else kwargs["hidden_states"]).clone()
                    x[:, p] = cache[l][:, p]
                    if args:
                        return (x, *args[1:]), kwargs
                    kwargs = dict(kwargs)
                    kwargs["hidden_states"] = x
                    return args, kwargs
                h = layers[l].register_forward_pre_hook(patch, with_kwargs=True)
                out[l, p] = logit_diff(model(corrupt).logits)
                h.remove()
    return out


def tl_model():
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions import convert_llama_weights

    c = model.config
    cfg = HookedTransformerConfig(
        d_model=c.hidden_size, d_head=c.hidden_size // c.num_attention_heads,
        n_heads=c.num_attention_heads, n_key_value_heads=c.num_key_value_heads,
        d_mlp=c.intermediate_size, n_layers=c.num_hidden_layers, n_ctx=2048,
        d_vocab=c.vocab_size, act_fn="silu", normalization_type="RMS", eps=c.rms_norm_eps,
        positional_embedding_type="rotary", rotary_dim=c.hidden_size // c.num_attention_heads,
        rotary_adjacent_pairs=False, rotary_base=c.rope_theta if hasattr(c, "rope_theta")
        else c.rope_parameters["rope_theta"], final_rms=True, gated_mlp=True,
        original_architecture="LlamaForCausalLM", default_prepend_bos=False)
    tl = HookedTransformer(cfg)
    tl.load_state_dict(convert_llama_weights(model, cfg), strict=False)
    tl.eval()
    with torch.inference_mode():
        gap = (tl(clean) - model(clean).logits).abs().max().item()
    return tl, gap


hf_times = []
for _ in range(2):
    t0 = time.perf_counter()
    hf = hf_sweep()
    hf_times.append(time.perf_counter() - t0)
hf_s = min(hf_times)
print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), transformers "
      f"{__import__('transformers').__version__}: resid_pre sweep with forward hooks {hf_s:.1f} s")
ours = torch.tensor(prism["resid_pre_exact"]).reshape(hf.shape)
print(f"max |prism − HF| over the sweep: {float((ours - hf).abs().max()):.2g} "
      f"(values up to {float(hf.abs().max()):.2g})")
print(f"prism exact resid_pre sweep: {prism['resid_pre_exact_s']:.1f} s "
      f"-> prism is {hf_s / prism['resid_pre_exact_s']:.2f}x as fast as HF hooks")

try:
    from transformer_lens import patching
    tl, gap = tl_model()
    if gap > 1e-2:
        print(f"TransformerLens: logits differ from HF by {gap:.3g}; its timing is not reported")
    else:
        with torch.inference_mode():
            _, cache = tl.run_with_cache(clean)

        def metric(logits):
            return (logits[rows, -1, answer] - logits[rows, -1, wrong]).mean()

        t0 = time.perf_counter()
        with torch.inference_mode():
            tl_sweep = patching.get_act_patch_resid_pre(tl, corrupt, cache, metric)
        tl_s = time.perf_counter() - t0
        print(f"TransformerLens get_act_patch_resid_pre: {tl_s:.1f} s "
              f"(max |TL − HF| {float((tl_sweep - hf).abs().max()):.2g}) -> prism is "
              f"{tl_s / prism['resid_pre_exact_s']:.2f}x as fast as TransformerLens")
except Exception as e:  # noqa: BLE001 - report why TransformerLens could not run
    print(f"TransformerLens could not run the sweep: {e!r}")
