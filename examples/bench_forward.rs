//! # Forward-pass throughput
//!
//! Runs the model on a batch of 8 sequences × 128 tokens of real text (f32) and reports tokens/s:
//! one warm-up pass, then the median of `--iters` timed passes. `scripts/bench_forward_hf.py`
//! runs HF `transformers` on the same GGUF and batch and prints the ratio.
//!
//! ```text
//! cargo run --release --example bench_forward -- [--model PATH] [--device cpu|wgpu] [--iters N] [--json]
//! ```

#[path = "common/args.rs"]
mod args;

use std::time::Instant;

use prism::core::Hooks;
use prism::{Model, Result, TokenBatch};

const TEXT: &str = "Sparse autoencoders decompose the activations of a language model into a dictionary of \
features, each a direction in activation space that fires on a small fraction of tokens. Researchers \
train them on hundreds of millions of activation vectors harvested from a corpus, measure how much of \
the model's loss the reconstruction recovers, and study the contexts on which each feature fires. ";

fn main() -> Result<()> {
    let args = args::Args::from_env();
    let opt = |name: &str| args.opt(name);
    let model_path = args.model();
    let device_name = opt("--device").unwrap_or_else(|| "cpu".into());
    let iters: usize = opt("--iters").and_then(|v| v.parse().ok()).unwrap_or(5);
    let (batch_size, seq) = (8, 128);

    let device = prism::core::device(&device_name)?;
    let model = Model::load(model_path.as_ref(), &device)?;
    let ids = model.encode(&TEXT.repeat(40))?;
    let seqs: Vec<Vec<u32>> = (0..batch_size)
        .map(|i| ids[i * 97..i * 97 + seq].to_vec())
        .collect();
    let batch = TokenBatch::from_sequences(&seqs, model.pad_id())?;
    let run = || -> Result<f64> {
        let t0 = Instant::now();
        let logits = model.forward(&batch, &Hooks::new())?.logits()?;
        // Reading one value forces the whole (possibly asynchronous) computation to finish.
        let _ = logits.narrow(2, 0, 1).sum().into_scalar::<f32>();
        Ok(t0.elapsed().as_secs_f64())
    };
    run()?;
    let mut times: Vec<f64> = (0..iters).map(|_| run()).collect::<Result<_>>()?;
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
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
