//! # Dictionary-training throughput against PyTorch
//!
//! The research's sizes: d = 512 inputs, m = 8192 features, batches of 4096 activation vectors,
//! on the CPU. Inputs are fixed random vectors (a sparse non-negative mixture of 4096 random
//! directions plus noise, so that codes become sparse the way they do on real activations).
//!
//! 1. ReLU + L1 (dictionary_learning's standard trainer): warm up until the L1 penalty has made
//!    the codes sparse, then time steps.
//! 2. TopK, k = 32 (AuxK, gradient clipping, unit-norm decoder): codes are sparse from step one.
//!
//! Each step is the whole update: encoder GEMM, codes, decoding, loss, gradients, decoder-norm
//! constraint, Adam. Reported: tokens/s, the codes' density, the dense-equivalent GFLOP/s
//! (the 5 products of size n·d·m a dense step computes, per second) and the GFLOP/s actually
//! executed. With `--python PATH` (an interpreter with torch) the same steps run in PyTorch
//! (`scripts/bench_train_torch.py`) and the ratio is printed.
//!
//! ```text
//! cargo run --release --example bench_train -- [--steps 10] [--python /path/to/python]
//! ```

#[path = "common/args.rs"]
mod args;

use std::time::Instant;

use prism::sae::kernel::KernelMode;
use prism::sae::train::{ArchitectureConfig, TrainConfig, Trainer};
use prism::{HostTensor, Result};
use rand::{Rng, SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, StandardNormal};

const D: usize = 512;
const M: usize = 8192;
const BATCH: usize = 4096;

/// A few fixed batches: each row a sparse non-negative mixture of random unit directions.
fn inputs(batches: usize) -> Vec<HostTensor> {
    let mut rng = StdRng::seed_from_u64(1);
    let atoms = 4096;
    let dirs: Vec<f32> = (0..atoms * D)
        .map(|_| StandardNormal.sample(&mut rng))
        .map(|v: f32| v / (D as f32).sqrt())
        .collect();
    (0..batches)
        .map(|_| {
            let mut data = vec![0f32; BATCH * D];
            for row in data.chunks_mut(D) {
                for _ in 0..20 {
                    let a = rng.random_range(0..atoms);
                    let c: f32 = rng.random_range(0.2..2.0);
                    for (o, v) in row.iter_mut().zip(&dirs[a * D..][..D]) {
                        *o += c * v;
                    }
                }
                for o in row.iter_mut() {
                    let noise: f32 = StandardNormal.sample(&mut rng);
                    *o += 0.01 * noise;
                }
            }
            HostTensor::new(vec![BATCH, D], data).unwrap()
        })
        .collect()
}

struct Timing {
    tokens_per_s: f64,
    density: f64,
    l0: f64,
    executed_gflops: f64,
}

fn time_steps(trainer: &mut Trainer, data: &[HostTensor], warm: usize, steps: usize) -> Timing {
    for i in 0..warm {
        trainer.step(&data[i % data.len()]).unwrap();
    }
    let t0 = Instant::now();
    let mut l0 = 0.0;
    for i in 0..steps {
        l0 += trainer.step(&data[(warm + i) % data.len()]).unwrap().l0 / steps as f64;
    }
    let secs = t0.elapsed().as_secs_f64() / steps as f64;
    let density = l0 / M as f64;
    let dense = density > prism::sae::kernel::DENSE_ABOVE;
    let nmd = (BATCH * D * M) as f64;
    // Encoder GEMM, then decode, decoder gradient, code gradient, encoder gradient.
    let flops = 2.0 * nmd
        + if dense {
            4.0 * 2.0 * nmd
        } else {
            4.0 * 2.0 * l0 * BATCH as f64 * D as f64
        };
    Timing {
        tokens_per_s: BATCH as f64 / secs,
        density,
        l0,
        executed_gflops: flops / secs / 1e9,
    }
}

fn baseline_error(message: String) -> prism::PrismError {
    prism::PrismError::Command {
        command: "scripts/bench_train_torch.py".into(),
        message,
    }
}

fn main() -> Result<()> {
    let args = args::Args::from_env();
    let opt = |name: &str| args.opt(name);
    let steps: usize = opt("--steps").and_then(|v| v.parse().ok()).unwrap_or(10);
    let relu_warm: usize = opt("--relu-warmup")
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let l1: f32 = opt("--l1").and_then(|v| v.parse().ok()).unwrap_or(0.3);
    eprintln!(
        "d = {D}, m = {M}, batch {BATCH}, {} threads",
        rayon::current_num_threads()
    );
    let data = inputs(8);
    let dense_equiv =
        |t: &Timing| 5.0 * 2.0 * (BATCH * D * M) as f64 * t.tokens_per_s / BATCH as f64 / 1e9;

    let mut results = Vec::new();
    for (name, arch, warm) in [
        ("relu_l1", ArchitectureConfig::Relu { l1 }, relu_warm),
        ("topk_k32", ArchitectureConfig::topk(32), 3),
    ] {
        let mut c = TrainConfig::new(arch, D, M);
        c.warmup_steps = 20;
        c.sparsity_warmup_steps = 20;
        c.lr = 1e-3;
        c.resample = None;
        c.kernel = KernelMode::Auto;
        let mut t = Trainer::new(c)?;
        let r = time_steps(&mut t, &data, warm, steps);
        eprintln!(
            "{name:>9}: {:>7.0} tokens/s  L0 {:>6.1} (density {:.4})  dense-equivalent {:>5.0} GFLOP/s, executed {:>5.0} GFLOP/s",
            r.tokens_per_s,
            r.l0,
            r.density,
            dense_equiv(&r),
            r.executed_gflops
        );
        results.push((name, r));
    }
    if let Some(python) = opt("--python") {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../scripts/bench_train_torch.py");
        let out = std::process::Command::new(python)
            .arg(script)
            .args(["--steps", &steps.to_string(), "--l1", &l1.to_string()])
            .output()
            .map_err(|e| baseline_error(e.to_string()))?;
        if !out.status.success() {
            return Err(baseline_error(
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        let torch: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| baseline_error(format!("unreadable output: {e}")))?;
        println!("| step | Prism tokens/s | PyTorch tokens/s | ratio | Prism L0 |");
        println!("|---|---|---|---|---|");
        for (name, r) in &results {
            let base = torch[name]["tokens_per_s"].as_f64().unwrap_or(f64::NAN);
            println!(
                "| {name} | {:.0} | {:.0} | {:.2}× | {:.1} |",
                r.tokens_per_s,
                base,
                r.tokens_per_s / base,
                r.l0
            );
        }
        println!(
            "PyTorch {} with {} threads",
            torch["torch"], torch["threads"]
        );
    }
    Ok(())
}
