#!/usr/bin/env python3
"""Cold download + first forward of a hub model: `prism forward --model ORG/NAME` against
`transformers.from_pretrained` + one forward, through the same loopback stand-in hub, same machine,
same run.

    cargo build --release -p prism-cli -p prism-testkit --example hub_server
    /tmp/pyref/bin/python scripts/bench_hub.py [--gguf assets/SmolLM2-135M-Instruct.Q4_1.gguf] [--runs 3]

The model is SmolLM2-135M-Instruct as an HF directory (transformers converts the GGUF asset and
saves it in bfloat16: config.json, tokenizer.json, model.safetensors), served by prism-testkit's
`hub_server` example as `HuggingFaceTB/SmolLM2-135M-Instruct`. Each run starts from an empty
cache (`HF_HOME` a fresh folder) and is one process from start to exit: `python -c` importing
torch and transformers, downloading, loading and running one forward pass; `prism forward` doing
the same. Prints each side's median wall time and the ratio.
"""
import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
TEXT = "Sparse autoencoders decompose a language model's activations into features."

ap = argparse.ArgumentParser()
ap.add_argument("--gguf", default=str(ROOT / "assets/SmolLM2-135M-Instruct.Q4_1.gguf"))
ap.add_argument("--runs", type=int, default=3)
args = ap.parse_args()

PY_RUN = f"""
import time, torch
t0 = time.perf_counter()
from transformers import AutoModelForCausalLM, AutoTokenizer
t1 = time.perf_counter()
tok = AutoTokenizer.from_pretrained({REPO!r})
model = AutoModelForCausalLM.from_pretrained({REPO!r}, dtype=torch.float32).eval()
with torch.no_grad():
    model(**tok({TEXT!r}, return_tensors="pt")).logits
print(f"{{t1 - t0:.3f}} {{time.perf_counter() - t1:.3f}}")
"""

with tempfile.TemporaryDirectory() as work:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    gguf = pathlib.Path(args.gguf)
    hf = pathlib.Path(work) / "smollm2"
    from transformers import AutoConfig
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
    AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(hf)
    # transformers keeps GGUF weights quantized (not savable): dequantize them with its own
    # GGUF reader into a plain model of the same config, and save that.
    config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    plain = AutoModelForCausalLM.from_config(config)
    tensors = load_gguf_checkpoint(str(gguf), return_tensors=True, model_to_load=plain)["tensors"]
    missing, _ = plain.load_state_dict(tensors, strict=False)
    assert all("rotary" in m or m == "lm_head.weight" for m in missing), missing
    plain.to(torch.bfloat16).save_pretrained(hf)
    size = sum(p.stat().st_size for p in hf.iterdir()) / 1e6
    server = subprocess.Popen([str(TARGET / "examples" / "hub_server"), f"{REPO}={hf}"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    url = server.stdout.readline().strip()
    times = {"transformers": [], "transformers (after imports)": [], "prism": []}
    try:
        for _ in range(args.runs):
            for side in ["transformers", "prism"]:
                home = tempfile.mkdtemp(dir=work)
                env = dict(os.environ, HF_HOME=home, HF_ENDPOINT=url)
                for k in ["HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN"]:
                    env.pop(k, None)
                t0 = time.perf_counter()
                if side == "prism":
                    subprocess.run([str(TARGET / "prism"), "forward", "--model", REPO, "--text", TEXT],
                                   env=env, check=True, capture_output=True)
                    times["prism"].append(time.perf_counter() - t0)
                else:
                    out = subprocess.run([sys.executable, "-c", PY_RUN], env=env, check=True,
                                         capture_output=True, text=True).stdout.split()
                    times["transformers"].append(time.perf_counter() - t0)
                    times["transformers (after imports)"].append(float(out[1]))
    finally:
        server.stdin.close()
        server.wait()

print(f"{REPO}: {size:.0f} MB (bf16 safetensors + tokenizer), {args.runs} cold runs each, median wall s")
med = {k: statistics.median(v) for k, v in times.items()}
for k, v in med.items():
    print(f"  {k:32s} {v:7.2f} s")
print(f"  ratio transformers / prism (whole process)  {med['transformers'] / med['prism']:.2f}x")
print(f"  ratio transformers after imports / prism   {med['transformers (after imports)'] / med['prism']:.2f}x")
