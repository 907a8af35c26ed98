//! # Forward-pass throughput
//!
//! Runs the model on a batch of 8 sequences × 128 tokens of real text (f32) and reports tokens/s:
//! one warm-up pass, then the median of `--iters` timed passes. `scripts/bench_forward_hf.py`
//! runs HF `transformers` on the same GGUF and batch and prints the ratio.
//!
//! ```text
//! cargo run --release --example bench_forward -- [--model PATH] [--device cpu|wgpu] [--iters N] [--json]
//! cargo run --release --example bench_forward -- --stop-at blocks.15.hook_mlp_out [--json]
//! cargo run --release --example bench_forward -- --peak
//! cargo run --release --example bench_forward -- --ops       # time per stage, both CPU paths
//! cargo run --release --example bench_forward -- --compare   # fused path × allocator, one process
//! ```
//!
//! `--stop-at HOOK` times a harvest of that hook instead (`prism_cache::Harvester`: the pass stops
//! after the hook's block and reads the activations back), as the cache's harvest runs it.
//!
//! `--peak` prints this machine's f32 FMA peak and the rate of burn's matmul at the pipeline's
//! shapes instead (`common/peak.rs`): the ceiling any speed goal has to fit under.

#[path = "common/allocator.rs"]
mod allocator;
#[path = "common/args.rs"]
mod args;
#[path = "common/ops.rs"]
mod ops;
#[path = "common/peak.rs"]
mod peak;
#[path = "common/text.rs"]
mod text;
#[path = "common/timing.rs"]
mod timing;

use prism::core::alloc::ReusingAllocator;
use prism::models::CpuPath;
use prism::{Model, Result, TokenBatch};

fn main() -> Result<()> {
    let args = args::Args::from_env();
    let opt = |name: &str| args.opt(name);
    let model_path = args.model();
    let device_name = opt("--device").unwrap_or_else(|| "cpu".into());
    let iters: usize = opt("--iters").and_then(|v| v.parse().ok()).unwrap_or(5);
    let (batch_size, seq) = (8, 128);

    let device = prism::core::device(&device_name)?;
    if args.flag("--peak") {
        peak::report(&device);
        return Ok(());
    }
    let mut model = Model::load(model_path.as_ref(), &device)?;
    let ids = model.encode(&text::TEXT.repeat(40))?;
    let seqs: Vec<Vec<u32>> = (0..batch_size)
        .map(|i| ids[i * 97..i * 97 + seq].to_vec())
        .collect();
    let batch = TokenBatch::from_sequences(&seqs, model.pad_id())?;
    if args.flag("--compare") {
        // burn's ops and the system allocator, then each change on its own, then both.
        let mut base = 0.0;
        for (path, reuse, what) in [
            (
                CpuPath::BurnOps,
                false,
                "burn ops, system allocator (baseline)",
            ),
            (CpuPath::Fused, false, "fused CPU kernels, system allocator"),
            (CpuPath::BurnOps, true, "burn ops, reusing allocator"),
            (CpuPath::Fused, true, "fused CPU kernels, reusing allocator"),
        ] {
            model.transformer.cpu_path = path;
            ReusingAllocator::set_enabled(reuse);
            let secs = timing::forward_seconds(&model, &batch, iters)?;
            let tps = (batch_size * seq) as f64 / secs;
            if base == 0.0 {
                base = tps;
            }
            println!("{what:<42} {tps:>6.0} tokens/s  {:.2}×", tps / base);
        }
        return Ok(());
    }
    if args.flag("--ops") {
        return ops::report(&model, &batch, iters);
    }
    let median = match opt("--stop-at") {
        Some(hook) => {
            let harvester = prism::cache::Harvester::new(&model, vec![hook.parse()?], false)?;
            timing::median_seconds(iters, || harvester.harvest(&seqs).map(drop))?
        }
        None => timing::forward_seconds(&model, &batch, iters)?,
    };
    let tps = (batch_size * seq) as f64 / median;
    if args.flag("--json") {
        println!(
            "{{\"tokens_per_s\": {tps:.1}, \"median_s\": {median:.4}, \"device\": \"{device_name}\"}}"
        );
    } else {
        println!(
            "prism forward {batch_size}×{seq} on {device_name}: {tps:.0} tokens/s (median {median:.3}s over {iters})"
        );
    }
    Ok(())
}
