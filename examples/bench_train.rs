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
//! (`scripts/bench_train_torch.py`) and the ratio is printed; with `--peers` as well, the real
//! peer packages' steps (dictionary_learning's `TopKTrainer.update` / `StandardTrainer.update`,
//! sparsify's `SparseCoder` step: `scripts/bench_train_peers.py`, which says how to install them)
//! and the ratio to the faster of them.
//!
//! Both training engines can be timed: `host` (the dedicated CPU kernels) and `burn` (burn
//! tensors on `--device`: `cpu` is burn's flex backend, or `wgpu`, or `cuda` in a build with
//! `--features cuda`); PyTorch runs on the GPU too when the device is one.
//!
//! ```text
//! cargo run --release --example bench_train -- [--steps 10] [--python /path/to/python]
//!     [--engines host,burn] [--device cpu|wgpu|cuda] [--d 512] [--m 8192] [--batch 4096]
//!     [--k 32] [--only relu|topk] [--peers] [--kernel auto|sparse|dense] [--row-blocks]
//! ```
//!
//! `--row-blocks` times only the TopK encoder: one GEMM over the batch and a selection pass
//! over its `[batch, m]` pre-activations, against the same done a block of rows at a time (the
//! selection reading each block while it is still in cache).

#[path = "common/allocator.rs"]
mod allocator;
#[path = "common/args.rs"]
mod args;
#[path = "common/synthetic.rs"]
mod synthetic;

use std::time::Instant;

use prism::core::dense::matmul_new;
use prism::sae::kernel::KernelMode;
use prism::sae::kernel::{View, matmul};
use prism::sae::train::{ArchitectureConfig, EngineChoice, TrainConfig, Trainer, top_k_rows};
use prism::{HostTensor, Result};
use synthetic::{Sizes, inputs};

struct Timing {
    tokens_per_s: f64,
    density: f64,
    l0: f64,
    executed_gflops: f64,
}

fn time_steps(
    trainer: &mut Trainer,
    data: &[HostTensor],
    s: Sizes,
    warm: usize,
    steps: usize,
    dense_engine: bool,
    kernel: KernelMode,
) -> Result<Timing> {
    for i in 0..warm {
        trainer.step(&data[i % data.len()])?;
    }
    let t0 = Instant::now();
    let mut l0 = 0.0;
    for i in 0..steps {
        l0 += trainer.step(&data[(warm + i) % data.len()])?.l0 / steps as f64;
    }
    let secs = t0.elapsed().as_secs_f64() / steps as f64;
    let density = l0 / s.m as f64;
    let dense = dense_engine || kernel.dense_at(density);
    let nmd = (s.batch * s.d * s.m) as f64;
    // Encoder GEMM, then decode, decoder gradient, code gradient, encoder gradient.
    let flops = 2.0 * nmd
        + if dense {
            4.0 * 2.0 * nmd
        } else {
            4.0 * 2.0 * l0 * s.batch as f64 * s.d as f64
        };
    Ok(Timing {
        tokens_per_s: s.batch as f64 / secs,
        density,
        l0,
        executed_gflops: flops / secs / 1e9,
    })
}

/// One run of a baseline script in `scripts/` with the benchmark's sizes.
struct ScriptRun<'a> {
    python: &'a str,
    sizes: Sizes,
    steps: usize,
    k: usize,
    l1: f32,
    only: Option<&'a str>,
}

impl ScriptRun<'_> {
    /// Runs `scripts/{script}` with the sizes and `extra`; its JSON output.
    fn json(&self, script: &str, extra: &[&str]) -> Result<serde_json::Value> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../scripts")
            .join(script);
        let failed = |message: String| prism::PrismError::Command {
            command: format!("scripts/{script}"),
            message,
        };
        let s = &self.sizes;
        let mut command = std::process::Command::new(self.python);
        command.arg(path).args([
            "--steps",
            &self.steps.to_string(),
            "--l1",
            &self.l1.to_string(),
            "--d",
            &s.d.to_string(),
            "--m",
            &s.m.to_string(),
            "--batch",
            &s.batch.to_string(),
            "--k",
            &self.k.to_string(),
        ]);
        command.args(extra);
        if let Some(o) = self.only {
            command.args(["--only", o]);
        }
        let out = command.output().map_err(|e| failed(e.to_string()))?;
        if !out.status.success() {
            return Err(failed(String::from_utf8_lossy(&out.stderr).into_owned()));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| failed(format!("unreadable output: {e}")))
    }
}

fn main() -> Result<()> {
    allocator::system_if_asked();
    let args = args::Args::from_env();
    let opt = |name: &str| args.opt(name);
    let num =
        |name: &str, default: usize| opt(name).and_then(|v| v.parse().ok()).unwrap_or(default);
    let steps = num("--steps", 10);
    let relu_warm = num("--relu-warmup", 120);
    let k = num("--k", 32);
    let s = Sizes {
        d: num("--d", 512),
        m: num("--m", 8192),
        batch: num("--batch", 4096),
    };
    let l1: f32 = opt("--l1").and_then(|v| v.parse().ok()).unwrap_or(0.3);
    let device = opt("--device").unwrap_or_else(|| "cpu".into());
    let engines: Vec<String> = opt("--engines")
        .map(|v| v.split(',').map(|e| e.trim().to_string()).collect())
        .unwrap_or_else(|| vec![if device == "cpu" { "host" } else { "burn" }.to_string()]);
    let only = opt("--only");
    let kernel = match opt("--kernel").as_deref() {
        None | Some("auto") => KernelMode::Auto,
        Some("sparse") => KernelMode::Sparse,
        Some("dense") => KernelMode::Dense,
        Some(other) => {
            return Err(prism::PrismError::InvalidInput(format!(
                "--kernel {other}: expected auto, sparse or dense"
            )));
        }
    };
    eprintln!(
        "d = {}, m = {}, batch {}, device {device}, {} threads",
        s.d,
        s.m,
        s.batch,
        rayon::current_num_threads()
    );
    let data = inputs(s, 8);
    if args.flag("--row-blocks") {
        return row_blocks(s, k, &data[0]);
    }
    let dense_equiv = |t: &Timing| {
        5.0 * 2.0 * (s.batch * s.d * s.m) as f64 * t.tokens_per_s / s.batch as f64 / 1e9
    };

    let topk_name = format!("topk_k{k}");
    let cases = [
        (
            "relu_l1".to_string(),
            ArchitectureConfig::relu(l1),
            relu_warm,
        ),
        (topk_name, ArchitectureConfig::topk(k), 3),
    ];
    let mut results = Vec::new();
    for engine_name in &engines {
        let engine = match engine_name.as_str() {
            "host" => EngineChoice::Host,
            "burn" => EngineChoice::burn_on(&device)?,
            other => {
                return Err(prism::PrismError::InvalidInput(format!(
                    "unknown engine `{other}` (host, burn)"
                )));
            }
        };
        for (name, arch, warm) in &cases {
            if only.as_deref().is_some_and(|o| !name.starts_with(o)) {
                continue;
            }
            let mut c = TrainConfig::new(arch.clone(), s.d, s.m);
            c.warmup_steps = 20;
            c.sparsity_warmup_steps = 20;
            c.lr = 1e-3;
            c.resample = None;
            c.kernel = kernel;
            let mut t = Trainer::new_on(c, &engine)?;
            let r = time_steps(
                &mut t,
                &data,
                s,
                *warm,
                steps,
                engine_name != "host",
                kernel,
            )?;
            eprintln!(
                "{engine_name:>5} {name:>9}: {:>8.0} tokens/s  L0 {:>6.1} (density {:.4})  dense-equivalent {:>6.0} GFLOP/s, executed {:>6.0} GFLOP/s",
                r.tokens_per_s,
                r.l0,
                r.density,
                dense_equiv(&r),
                r.executed_gflops
            );
            results.push((engine_name.clone(), name.clone(), r));
        }
    }
    let python = opt("--python");
    let run = python.as_deref().map(|python| ScriptRun {
        python,
        sizes: s,
        steps,
        k,
        l1,
        only: only.as_deref(),
    });
    if let (Some(run), true) = (&run, args.flag("--peers")) {
        let peers = run.json("bench_train_peers.py", &[])?;
        println!(
            "| step | Prism (host) tokens/s | dictionary_learning {} | sparsify {} ({}) | Prism / the faster peer |",
            peers["dictionary_learning"], peers["sparsify"], peers["sparsify_optimizer"]
        );
        println!("|---|---|---|---|---|");
        for (_, name, r) in results.iter().filter(|(engine, ..)| engine == "host") {
            let peer = |p: &str| peers[name.as_str()][p].as_f64();
            let faster = [peer("dictionary_learning"), peer("sparsify")]
                .into_iter()
                .flatten()
                .fold(f64::NAN, f64::max);
            let shown = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.0}"));
            println!(
                "| {name} | {:.0} | {} | {} | {:.2}× |",
                r.tokens_per_s,
                shown(peer("dictionary_learning")),
                shown(peer("sparsify")),
                r.tokens_per_s / faster
            );
        }
        println!("torch {} with {} threads", peers["torch"], peers["threads"]);
    }
    if let Some(run) = &run {
        let torch_device = if device == "cpu" { "cpu" } else { "cuda" };
        let torch = run.json("bench_train_torch.py", &["--device", torch_device])?;
        println!("| engine | step | Prism tokens/s | PyTorch tokens/s | ratio | Prism L0 |");
        println!("|---|---|---|---|---|---|");
        for (engine, name, r) in &results {
            let base = torch[name.as_str()]["tokens_per_s"]
                .as_f64()
                .unwrap_or(f64::NAN);
            println!(
                "| {engine} ({device}) | {name} | {:.0} | {:.0} | {:.2}× | {:.1} |",
                r.tokens_per_s,
                base,
                r.tokens_per_s / base,
                r.l0
            );
        }
        println!(
            "PyTorch {} on {} with {} threads{}",
            torch["torch"],
            torch["device"],
            torch["threads"],
            torch
                .get("gpu")
                .map(|g| format!(" ({g})"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// The TopK encoder (pre-activations of `x` and the per-row selection) as one GEMM and one
/// selection pass, against a block of rows at a time with the selection on each block right
/// after its GEMM; best of three each, the ratio printed.
fn row_blocks(s: Sizes, k: usize, x: &HostTensor) -> Result<()> {
    let (n, d, m) = (s.batch, s.d, s.m);
    let p = Trainer::new(TrainConfig::new(ArchitectureConfig::topk(k), d, m))?.params()?;
    let w_enc = View::new(&p.w_enc, m, d).t();
    let best = |mut run: Box<dyn FnMut() -> usize + '_>| {
        let mut best = f64::INFINITY;
        let mut nnz = 0;
        for _ in 0..4 {
            let t = Instant::now();
            nnz = run();
            best = best.min(t.elapsed().as_secs_f64());
        }
        (best, nnz)
    };
    // As the training step does: the GEMM writes a new, unzeroed matrix.
    let (whole, nnz) = best(Box::new(|| {
        let a = matmul_new(View::new(&x.data, n, d), w_enc);
        top_k_rows(&a, &p.b_enc, n, m, k, None).nnz()
    }));
    let (gemm, _) = best(Box::new(|| {
        matmul_new(View::new(&x.data, n, d), w_enc).len()
    }));
    println!(
        "TopK encoder, whole batch: {:.1} ms ({nnz} codes), of which the GEMM alone {:.1} ms",
        whole * 1e3,
        gemm * 1e3
    );
    for rows in [128, 256, 512, 1024, 2048] {
        let (blocked, nnz) = best(Box::new(|| {
            let mut a = vec![0f32; rows * m];
            let mut nnz = 0;
            for block in x.data.chunks(rows * d) {
                let r = block.len() / d;
                matmul(View::new(block, r, d), w_enc, &mut a[..r * m], false);
                nnz += top_k_rows(&a[..r * m], &p.b_enc, r, m, k, None).nnz();
            }
            nnz
        }));
        println!(
            "  blocks of {rows} rows: {:.1} ms ({nnz} codes) = {:.2}x the whole batch's speed",
            blocked * 1e3,
            whole / blocked
        );
    }
    Ok(())
}
