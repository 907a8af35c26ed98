//! Timing helpers the benchmarks share.

use std::time::Instant;

use prism::core::Hooks;
use prism::{Model, Result, TokenBatch};

/// The median of some timings.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median seconds of `iters` runs of `work`, after one warm-up run.
pub fn median_seconds(iters: usize, mut work: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut run = || -> Result<f64> {
        let t0 = Instant::now();
        work()?;
        Ok(t0.elapsed().as_secs_f64())
    };
    run()?;
    Ok(median(
        (0..iters.max(1)).map(|_| run()).collect::<Result<_>>()?,
    ))
}

/// Median seconds of a full forward pass (logits) over `batch`, after one warm-up pass.
pub fn forward_seconds(model: &Model, batch: &TokenBatch, iters: usize) -> Result<f64> {
    median_seconds(iters, || {
        let logits = model.forward(batch, &Hooks::new())?.logits()?;
        // Reading one value forces the whole (possibly asynchronous) computation to finish.
        let _ = logits.narrow(2, 0, 1).sum().into_scalar::<f32>();
        Ok(())
    })
}
