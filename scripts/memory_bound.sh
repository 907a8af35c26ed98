#!/usr/bin/env bash
# Peak resident memory (RSS, GNU time's %M) of the jobs whose data grows — harvesting a cache,
# training from it, comparing dictionaries — at two sizes 8× apart. A job whose memory is bounded
# by its buffers shows the same peak at both sizes.
#
#   scripts/memory_bound.sh [TOKENS]        (default 8192: caches of 8192 and 65536 tokens)
#
# Needs the release binary (`cargo build --release`) and the default assets (`prism fetch
# smollm2`, `prism fetch python-docs`). Results: docs/BENCHMARKS.md, "Memory".
set -euo pipefail
cd "$(dirname "$0")/.."
PRISM="${PRISM:-${CARGO_TARGET_DIR:-target}/release/prism}"
MODEL=assets/SmolLM2-135M-Instruct.Q4_1.gguf
DATA=assets/python-docs
HOOK=blocks.15.hook_resid_post
SMALL="${1:-8192}"
LARGE=$((SMALL * 8))
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

peak() { # peak RSS in MiB of the command after `--`
    local what="$1"; shift; shift
    /usr/bin/time -f "%M" -o "$WORK/rss" "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err"; exit 1; }
    printf "%-42s %8.1f MiB\n" "$what" "$(echo "$(tail -n1 "$WORK/rss") / 1024" | bc -l)"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for tokens in "$SMALL" "$LARGE"; do
    cache="$WORK/cache-$tokens"
    peak "cache $tokens tokens (harvest)" -- "$PRISM" cache --model "$MODEL" --data "$DATA" \
        --hooks "$HOOK" --tokens "$tokens" --out "$cache"
    echo "  cache on disk: $(du -sh "$cache" | cut -f1)"
    peak "train from the $tokens-token cache" -- "$PRISM" train --cache "$cache" --hook "$HOOK" \
        --arch topk --k 32 --dict-size 4608 --tokens "$tokens" --batch 1024 --out "$WORK/dict-$tokens"
done
# Similarity's inputs are the dictionaries, not the cache: two 8×-apart widths (random
# dictionaries of the same hook from two seeds are enough to size the job).
for m in 2304 18432; do
    for seed in 1 2; do
        "$PRISM" train --cache "$WORK/cache-$SMALL" --hook "$HOOK" --arch topk --k 32 \
            --dict-size "$m" --tokens 1024 --batch 1024 --seed "$seed" --out "$WORK/sim-$m-$seed" >/dev/null 2>&1
    done
    a=$(find "$WORK/sim-$m-1" -name cfg.json -printf '%h\n' | head -n1)
    b=$(find "$WORK/sim-$m-2" -name cfg.json -printf '%h\n' | head -n1)
    peak "similarity of two $m-feature dictionaries" -- "$PRISM" similarity --a "$a" --b "$b"
    echo "  dictionaries on disk: $(du -ch "$a"/sae_weights.safetensors "$b"/sae_weights.safetensors | tail -n1 | cut -f1)"
done
