"""Writes the fuzz seed that needs a Python tool: a tiny Llama GGUF file made with llama.cpp's
own writer (gguf-py), from the `fixtures/models/llama_gqa` weights and tokenizer, with the
metadata keys and the q/k row interleaving llama.cpp's converter uses, and Q8_0 and F16 tensors
beside F32 ones (so the fuzzer starts from every path of the GGUF reader).

    /tmp/pyref/bin/python scripts/make_fuzz_seeds.py

Versions: scripts/requirements-fixtures.txt (gguf, safetensors, numpy).
"""
import json
import pathlib

import gguf
import numpy as np
from safetensors.numpy import load_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = ROOT / "fixtures/models/llama_gqa"
OUT = ROOT / "crates/prism-fuzz/seeds/tiny-llama.gguf"


def interleave(w, heads):
    # convert_hf_to_gguf.py's LlamaModel.permute: HF's [head][2][dh/2] rows → [head][dh/2][2].
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def main():
    cfg = json.loads((SRC / "config.json").read_text())
    tok = json.loads((SRC / "tokenizer.json").read_text())
    w = load_file(str(SRC / "model.safetensors"))
    h, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    writer = gguf.GGUFWriter(str(OUT), "llama")
    writer.add_context_length(cfg["max_position_embeddings"])
    writer.add_embedding_length(cfg["hidden_size"])
    writer.add_block_count(cfg["num_hidden_layers"])
    writer.add_feed_forward_length(cfg["intermediate_size"])
    writer.add_head_count(h)
    writer.add_head_count_kv(kv)
    writer.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    writer.add_rope_freq_base(cfg["rope_parameters"]["rope_theta"])
    vocab = sorted(tok["model"]["vocab"].items(), key=lambda kv_: kv_[1])
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([t for t, _ in vocab])
    writer.add_token_types([3 if i == 0 else 1 for i in range(len(vocab))])
    writer.add_token_merges([" ".join(m) for m in tok["model"]["merges"]])
    writer.add_bos_token_id(cfg["bos_token_id"])
    writer.add_eos_token_id(cfg["eos_token_id"])

    def add(name, array, qtype=gguf.GGMLQuantizationType.F32):
        array = array.astype(np.float32)
        if qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(name, array.astype(np.float16))
        elif qtype == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(name, array)
        else:
            writer.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)

    q8 = gguf.GGMLQuantizationType.Q8_0
    add("token_embd.weight", w["model.embed_tokens.weight"], q8)
    add("output.weight", w["lm_head.weight"], gguf.GGMLQuantizationType.F16)
    add("output_norm.weight", w["model.norm.weight"])
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        add(f"blk.{l}.attn_norm.weight", w[p + "input_layernorm.weight"])
        add(f"blk.{l}.ffn_norm.weight", w[p + "post_attention_layernorm.weight"])
        add(f"blk.{l}.attn_q.weight", interleave(w[p + "self_attn.q_proj.weight"], h), q8)
        add(f"blk.{l}.attn_k.weight", interleave(w[p + "self_attn.k_proj.weight"], kv), q8)
        add(f"blk.{l}.attn_v.weight", w[p + "self_attn.v_proj.weight"])
        add(f"blk.{l}.attn_output.weight", w[p + "self_attn.o_proj.weight"], gguf.GGMLQuantizationType.F16)
        add(f"blk.{l}.ffn_gate.weight", w[p + "mlp.gate_proj.weight"], q8)
        add(f"blk.{l}.ffn_up.weight", w[p + "mlp.up_proj.weight"])
        add(f"blk.{l}.ffn_down.weight", w[p + "mlp.down_proj.weight"], q8)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
