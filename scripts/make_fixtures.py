#!/usr/bin/env python3
"""Builds the reference fixtures that Prism's Rust tests compare against.

Run once, by hand, after changing what the fixtures cover; the outputs are committed so that the
Rust tests and CI need no Python:

    python3 -m venv /tmp/pyref && /tmp/pyref/bin/pip install torch transformers gguf accelerate
    /tmp/pyref/bin/python scripts/make_fixtures.py [--smollm2 assets/SmolLM2-135M-Instruct.Q4_1.gguf]

What it writes under fixtures/:
- models/<name>/: small *randomly initialised* GPT-NeoX (parallel residual with rotary_pct 0.25;
  sequential with rotary_pct 1.0 and a legacy Pythia-style config), GPT-2 and Llama (grouped-query
  attention) models in HF layout (config.json, model.safetensors, tokenizer.json with a small
  byte-level BPE trained here), and reference.json / reference.safetensors: token ids, loss and
  full logits of HF `transformers` on a few texts.
- gguf/quants.gguf + quants_reference.safetensors: one tensor of every GGUF type Prism reads
  (F32, F16, BF16, Q4_0, Q4_1, Q8_0, Q4_K) from random blocks, with gguf-py's dequantisation.
- sae/<arch>/: standard, TopK and JumpReLU dictionaries in SAELens' layout, and
  sae/reference.safetensors: inputs with codes and reconstructions computed by numpy.
- ae/<class>.pt + ae/reference.safetensors: dictionary_learning state dicts (AutoEncoder,
  AutoEncoderTopK, JumpReluAutoEncoder, GatedAutoEncoder tensor names) saved with torch.save, and
  codes/reconstructions computed in torch from dictionary_learning's forward passes.
- smollm2/reference.json + reference.safetensors: SmolLM2-135M-Instruct loaded by transformers from
  its GGUF (dequantised to f32): token ids from the GGUF's tokenizer, loss, last-position logits.
"""

import argparse
import json
import os
import pathlib

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIX = ROOT / "fixtures"

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


def common_gpt2(vocab):
    return dict(vocab_size=vocab, n_layer=2)


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

    for qt in ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q8_0", "Q4_K"]:
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
            # Sane scales (random bytes can make NaN/inf halves): overwrite the f16 fields.
            n_half = {"Q4_0": 1, "Q8_0": 1, "Q4_1": 2, "Q4_K": 2}[qt]
            scales = rng.uniform(-0.05, 0.05, size=(n_blocks, n_half)).astype(np.float16)
            if qt in ("Q4_1", "Q4_K"):
                scales[:, 1] = rng.uniform(0.0, 0.05, size=n_blocks).astype(np.float16)
            blocks[:, : 2 * n_half] = scales.view(np.uint8).reshape(n_blocks, 2 * n_half)
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
    print("wrote", out)


def sae_fixtures():
    """Small dictionaries in SAELens' layout, with codes and reconstructions computed by numpy
    from SAELens' formulas (not by Prism):
    pre = (x - b_dec) @ W_enc + b_enc; standard: relu(pre); topk: relu of the k largest pre
    per row, rest 0; jumprelu: relu(pre) * (pre > threshold); x_hat = f @ W_dec + b_dec."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(11)
    d_in, d_sae, n = 16, 48, 8
    x = rng.standard_normal((n, d_in)).astype(np.float32)
    refs = {"x": x}
    for arch in ["standard", "topk", "jumprelu"]:
        out = FIX / "sae" / arch
        out.mkdir(parents=True, exist_ok=True)
        w = {
            "W_enc": (0.3 * rng.standard_normal((d_in, d_sae))).astype(np.float32),
            "b_enc": (0.1 * rng.standard_normal(d_sae)).astype(np.float32),
            "W_dec": (0.3 * rng.standard_normal((d_sae, d_in))).astype(np.float32),
            "b_dec": (0.1 * rng.standard_normal(d_in)).astype(np.float32),
        }
        cfg = {"architecture": arch, "d_in": d_in, "d_sae": d_sae, "dtype": "float32",
               "apply_b_dec_to_input": True, "hook_name": "blocks.0.hook_resid_post",
               "normalize_activations": "none", "model_name": "fixture"}
        pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
        if arch == "standard":
            f = np.maximum(pre, 0)
        elif arch == "topk":
            cfg["k"] = 5
            f = np.zeros_like(pre)
            idx = np.argsort(-pre, axis=1)[:, :5]
            np.put_along_axis(f, idx, np.maximum(np.take_along_axis(pre, idx, axis=1), 0), axis=1)
        else:
            w["threshold"] = np.abs(0.3 * rng.standard_normal(d_sae)).astype(np.float32)
            f = np.maximum(pre, 0) * (pre > w["threshold"])
        save_file(w, str(out / "sae_weights.safetensors"))
        (out / "cfg.json").write_text(json.dumps(cfg, indent=2) + "\n")
        refs[f"codes_{arch}"] = f.astype(np.float32)
        refs[f"recon_{arch}"] = (f @ w["W_dec"] + w["b_dec"]).astype(np.float32)
    save_file(refs, str(FIX / "sae" / "reference.safetensors"))
    print("wrote", FIX / "sae")


def ae_fixtures():
    """dictionary_learning `ae.pt` files: each class's state dict (names and orientations as the
    library stores them) written by torch.save, with codes and reconstructions from the class's
    forward pass, re-implemented here in torch:
    AutoEncoder: f = relu(enc(x - bias)), x_hat = dec(f) + bias;
    AutoEncoderTopK: post = relu(enc(x - b_dec)), keep top k, x_hat = dec(f) + b_dec;
    JumpReluAutoEncoder: pre = x @ W_enc + b_enc, f = relu(pre) * (pre > threshold), x_hat = f @ W_dec + b_dec;
    GatedAutoEncoder: a = enc(x - decoder_bias), f = (a + gate_bias > 0) * relu(exp(r_mag) a + mag_bias),
    x_hat = dec(f) + decoder_bias."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(5)
    d, m, n = 16, 48, 8
    r = lambda *s, scale=0.3: (scale * torch.randn(*s, generator=g)).float()
    x = r(n, d, scale=1.0)
    out = FIX / "ae"
    out.mkdir(parents=True, exist_ok=True)
    refs = {"x": x}
    enc_w, enc_b, dec_w, bias = r(m, d), r(m, scale=0.1), r(d, m), r(d, scale=0.1)
    sd = {"bias": bias, "encoder.weight": enc_w, "encoder.bias": enc_b, "decoder.weight": dec_w}
    f = torch.relu((x - bias) @ enc_w.T + enc_b)
    refs["codes_standard"], refs["recon_standard"] = f, f @ dec_w.T + bias
    torch.save(sd, out / "standard.pt")
    # A non-contiguous tensor (a transposed view) exercises stride handling.
    k = 5
    sd = {"encoder.weight": enc_w, "encoder.bias": enc_b, "decoder.weight": enc_w.clone().T,
          "b_dec": bias, "k": torch.tensor(k, dtype=torch.int64), "threshold": torch.tensor(-1.0)}
    post = torch.relu((x - bias) @ enc_w.T + enc_b)
    vals, idx = post.topk(k, dim=-1)
    f = torch.zeros_like(post).scatter_(-1, idx, vals)
    refs["codes_topk"], refs["recon_topk"] = f, f @ sd["decoder.weight"].T + bias
    torch.save(sd, out / "topk.pt")
    w_enc, b_enc, w_dec, th = r(d, m), r(m, scale=0.1), r(m, d), r(m).abs()
    sd = {"W_enc": w_enc, "b_enc": b_enc, "W_dec": w_dec, "b_dec": bias, "threshold": th}
    pre = x @ w_enc + b_enc
    f = torch.relu(pre) * (pre > th)
    refs["codes_jumprelu"], refs["recon_jumprelu"] = f, f @ w_dec + bias
    torch.save(sd, out / "jumprelu.pt")
    r_mag, gate_b, mag_b = r(m), r(m, scale=0.1), r(m, scale=0.1)
    sd = {"decoder_bias": bias, "r_mag": r_mag, "gate_bias": gate_b, "mag_bias": mag_b,
          "encoder.weight": enc_w, "decoder.weight": dec_w}
    a = (x - bias) @ enc_w.T
    f = (a + gate_b > 0).float() * torch.relu(torch.exp(r_mag) * a + mag_b)
    refs["codes_gated"], refs["recon_gated"] = f, f @ dec_w.T + bias
    torch.save(sd, out / "gated.pt")
    save_file({k: v.contiguous() for k, v in refs.items()}, str(out / "reference.safetensors"))
    print("wrote", out)


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
    print("wrote", out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smollm2", type=pathlib.Path, help="path of SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--only", choices=["models", "gguf", "sae", "ae", "smollm2"], help="build one group only")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    if args.only in (None, "models"):
        tiny_models()
    if args.only in (None, "gguf"):
        quant_fixtures()
    if args.only in (None, "sae"):
        sae_fixtures()
    if args.only in (None, "ae"):
        ae_fixtures()
    if args.smollm2 and args.only in (None, "smollm2"):
        smollm2(args.smollm2)
