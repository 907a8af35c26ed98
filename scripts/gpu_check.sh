#!/usr/bin/env bash
# The GPU check (issue 12): forward, harvest and TopK-training throughput on wgpu and cuda, with
# PyTorch's TopK step on the same GPU as the baseline, in one short run (≈ 3–5 minutes) on a
# machine with one H100/H200, the NVIDIA driver, CUDA-enabled PyTorch and no network.
#
# Everything the run needs travels with it, and what travels is limited (64 MiB per call with the
# working tree), so the check is built and packed here and unpacked there:
#
#   scripts/gpu_check.sh bundle          # here: build examples/gpu_check with --features wgpu,cuda
#                                        # (a separate burn build: ~40 min on 2 cores; needs
#                                        # network access to GitHub, where cubecl-cuda's build
#                                        # script fetches a prebuilt LLVM), strip and
#                                        # xz it, split the model into parts, into gpu-bundle/
#   scripts/gpu_check.sh run OUT [PYTHON] # there: reassemble, run, write OUT/gpu_check.{md,json}
#
# gpu-bundle/ holds part1/ (the model's first 50 MiB) and part2/ (the rest and the binary), each
# small enough for one call: send part1 in a first call that only copies it aside, then part2 in
# a second call on the same warm machine that runs the check:
#   call 1 (carry gpu-bundle/part1): mkdir -p /tmp/gpu && cp gpu-bundle/part1/* /tmp/gpu/
#   call 2 (carry gpu-bundle/part2): scripts/gpu_check.sh run "$OUT"
# Record the table in docs/BENCHMARKS.md with the GPU's name (the JSON carries it).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=assets/SmolLM2-135M-Instruct.Q4_1.gguf

case "${1:-}" in
bundle)
    cargo build --release --features wgpu,cuda --example gpu_check
    target="${CARGO_TARGET_DIR:-target}"
    rm -rf gpu-bundle && mkdir -p gpu-bundle/part1 gpu-bundle/part2
    strip -o gpu-bundle/gpu_check "$target/release/examples/gpu_check"
    xz -T0 -6 -c gpu-bundle/gpu_check >gpu-bundle/part2/gpu_check.xz && rm gpu-bundle/gpu_check
    split -b 50M -d "$MODEL" gpu-bundle/model.
    mv gpu-bundle/model.00 gpu-bundle/part1/ && mv gpu-bundle/model.* gpu-bundle/part2/
    sha256sum "$MODEL" | cut -d' ' -f1 >gpu-bundle/part2/model.sha256
    du -sh gpu-bundle/part1 gpu-bundle/part2
    ;;
run)
    out="${2:?usage: scripts/gpu_check.sh run OUT [PYTHON]}"
    python="${3:-python3}"
    mkdir -p "$out" /tmp/gpu
    cp gpu-bundle/part1/* /tmp/gpu/ 2>/dev/null || true
    cp gpu-bundle/part2/* /tmp/gpu/
    cat /tmp/gpu/model.* >/tmp/gpu/model.gguf
    echo "$(cat /tmp/gpu/model.sha256)  /tmp/gpu/model.gguf" | sha256sum -c -
    xz -dc /tmp/gpu/gpu_check.xz >/tmp/gpu/gpu_check && chmod +x /tmp/gpu/gpu_check
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
    /tmp/gpu/gpu_check --model /tmp/gpu/model.gguf --devices wgpu,cuda --python "$python" \
        --torch-script scripts/bench_train_torch.py --steps 10 --iters 5 --json "$out/gpu_check.json" | tee "$out/gpu_check.md"
    ;;
*)
    sed -n '2,22p' "$0"
    exit 2
    ;;
esac
