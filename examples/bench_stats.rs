//! # Evaluation, similarity and feature-browser throughput
//!
//! 1. Evaluating a dictionary (all docs/metrics.md metrics: three model runs per batch plus
//!    encode/decode) against a plain forward pass on the same 8 × 128 windows.
//! 2. Comparing two random 32768 × 512 dictionaries (MMCS both ways + greedy matching):
//!    wall time and the process's peak resident memory.
//!
//! ```text
//! cargo run --release --example bench_stats -- [--model PATH] [--data DIR] [--only similarity|eval]
//! cargo run --release --example bench_stats -- --only browser --sae DIR [--tokens 32768]
//! ```
//!
//! 3. With `--only browser`: the feature browser's scan against the forwards and encodings it
//!    must pay, its size, and its open time in headless Chromium (`common/browser_bench.rs`).

#[path = "common/allocator.rs"]
mod allocator;
#[path = "common/args.rs"]
mod args;
#[path = "common/browser_bench.rs"]
mod browser_bench;

use std::time::Instant;

use burn::tensor::{Distribution, Tensor};
use prism::core::{HookPoint, Hooks};
use prism::{Model, Result, TokenBatch};
use prism_cache::{Corpus, WindowConfig, windows};
use prism_sae::{Architecture, Sae};
use prism_similarity::{SimilarityOptions, compare_directions};

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_string)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn main() -> Result<()> {
    allocator::system_if_asked();
    let args = args::Args::from_env();
    let opt = |name: &str| args.opt(name);
    let model_path = args.model();
    let data = opt("--data").unwrap_or_else(|| "assets/python-docs".into());
    let device = prism::core::device("cpu")?;

    let only = opt("--only");
    if only.as_deref() == Some("browser") {
        return browser_bench::run(&args);
    }
    // 2 first, on a fresh process heap.
    let (m, d) = (32768, 512);
    if only.as_deref() != Some("eval") {
        let a = Tensor::<2>::random([m, d], Distribution::Normal(0.0, 1.0), &device);
        let b = Tensor::<2>::random([m, d], Distribution::Normal(0.0, 1.0), &device);
        let before = peak_rss_mib();
        let t0 = Instant::now();
        let s = compare_directions(a.clone(), b.clone(), &SimilarityOptions::default())?;
        let secs = t0.elapsed().as_secs_f64();
        // The floor any implementation pays: the same chunked cosine GEMMs, read back to the host.
        let t0 = Instant::now();
        let bt = b.transpose();
        for start in (0..m).step_by(1024) {
            let sims = a.clone().narrow(0, start, 1024).matmul(bt.clone());
            std::hint::black_box(prism::core::to_vec(sims)?);
        }
        let gemm_secs = t0.elapsed().as_secs_f64();
        println!(
            "the bare cosine GEMMs (32 chunks of 1024 × {m}, read back): {gemm_secs:.1}s; similarity = {:.2}× that",
            secs / gemm_secs
        );
        println!(
            "similarity {m}×{d} vs {m}×{d}: {secs:.1}s, mmcs {:.3}/{:.3}, {} matched pairs ({}), peak RSS {:.0} MiB (inputs alone {:.0} MiB)",
            s.mmcs_a_to_b,
            s.mmcs_b_to_a,
            s.matching.as_ref().map_or(0, |x| x.pairs.len()),
            s.matching.as_ref().map_or("none", |x| x.method),
            peak_rss_mib(),
            before
        );
    }
    if only.as_deref() == Some("similarity") {
        return Ok(());
    }

    // 1.
    let model = Model::load(model_path.as_ref(), &device)?;
    let corpus = Corpus::open(data.as_ref(), "text")?;
    let wins: Vec<Vec<u32>> = windows(&corpus, &model.tokenizer, WindowConfig::default())?
        .take(8)
        .collect::<Result<_>>()?;
    let batch = TokenBatch::from_sequences(&wins, model.pad_id())?;
    let dm = model.config().d_model;
    let mid = model.config().n_layers / 2;
    let sae = Sae::new(
        Architecture::TopK { k: 32 },
        Tensor::random([dm, 8 * dm], Distribution::Normal(0.0, 0.05), &device),
        Tensor::zeros([1, 8 * dm], &device),
        Tensor::random([8 * dm, dm], Distribution::Normal(0.0, 0.05), &device),
        Tensor::zeros([1, dm], &device),
    )?;
    let time = |f: &dyn Fn() -> Result<()>| -> Result<f64> {
        f()?;
        let mut v = Vec::new();
        for _ in 0..3 {
            let t0 = Instant::now();
            f()?;
            v.push(t0.elapsed().as_secs_f64());
        }
        v.sort_by(f64::total_cmp);
        Ok(v[1])
    };
    let plain = time(&|| {
        let l = model.forward(&batch, &Hooks::new())?.logits()?;
        let _ = l.narrow(2, 0, 1).sum().into_scalar::<f32>();
        Ok(())
    })?;
    let eval = time(&|| {
        prism_stats::evaluate(
            &model,
            &sae,
            HookPoint::MlpOut(mid),
            [Ok(batch.clone())],
            |_| {},
        )
        .map(|_| ())
    })?;
    let n = (batch.batch * batch.seq) as f64;
    println!(
        "evaluate (TopK 8×{dm} at blocks.{mid}.hook_mlp_out): {:.0} tokens/s vs plain forward {:.0} tokens/s = {:.2} forwards' time",
        n / eval,
        n / plain,
        eval / plain
    );
    Ok(())
}
