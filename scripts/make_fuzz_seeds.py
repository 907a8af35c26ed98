"""Writes the fuzz seed that needs a Python tool: a tiny Llama GGUF file made with llama.cpp's
own writer (gguf-py), from the `fixtures/models/llama_gqa` weights and tokenizer, laid out as
llama.cpp's converter lays out a `llama` file (make_fixtures.write_family_gguf: its keys, the q/k
row interleaving), with Q8_0 and F16 tensors beside F32 ones (so the fuzzer starts from every
path of the GGUF reader).

    /tmp/pyref/bin/python scripts/make_fuzz_seeds.py

Versions: scripts/requirements-fixtures.txt (gguf, safetensors, numpy).
"""
import pathlib
import sys

import gguf

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from make_fixtures import ROOT, write_family_gguf  # noqa: E402

OUT = ROOT / "crates/prism-fuzz/seeds/tiny-llama.gguf"

# Which tensors are quantised, by llama.cpp's name: every reading path (Q8_0, F16, F32).
Q8 = ("token_embd", "attn_q", "attn_k", "ffn_gate", "ffn_down")
F16 = ("output.", "attn_output")


def qtype_of(name):
    if any(part in name for part in F16):
        return gguf.GGMLQuantizationType.F16
    if any(part in name for part in Q8):
        return gguf.GGMLQuantizationType.Q8_0
    return gguf.GGMLQuantizationType.F32


def main():
    write_family_gguf("llama_gqa", "llama", OUT, qtype_of)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
