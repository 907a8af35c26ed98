//! # Probe training and feature scoring at scale
//!
//! The four statement datasets (`prism fetch cities`: cities, neg_cities, larger_than,
//! smaller_than — 8 324 statements) run through SmolLM2 to `blocks.13.hook_resid_post` (the best
//! layer for `cities`), then, timed in one process:
//! 1. the baseline: the forward passes that produced the activations;
//! 2. the logistic probe (C = 1, no bias, Newton's method) and the mass-mean probe on all rows;
//! 3. a TopK dictionary of 32 × 576 = 18 432 features (k = 32; random initialisation: scoring
//!    costs the same for any weights at a given sparsity) encoding every row, and every feature
//!    scored as a classifier of the labels (AUROC with ties, best-threshold accuracy).
//!
//! `--dump FILE.safetensors` writes the activations, labels and the codes (sparse) so that
//! `scripts/bench_probes.py` can time scikit-learn on the same numbers.
//!
//! ```text
//! cargo run --release --example bench_probes -- [--model PATH] [--datasets DIR] [--dump FILE]
//! ```

#[path = "common/allocator.rs"]
mod allocator;
#[path = "common/args.rs"]
mod args;

use std::time::Instant;

use prism::core::{HookPoint, Hooks, HostTensor};
use prism::probe::{
    LabelledDataset, Pooling, Probe, ProbeMethod, score_codes, sparse_codes, statement_activations,
};
use prism::sae::{Architecture, Sae};
use prism::{Model, Result};

fn main() -> Result<()> {
    let args = args::Args::from_env();
    let opt = |name: &str| args.opt(name);
    let model_path = args.model();
    let dir = opt("--datasets").unwrap_or_else(|| "assets/datasets".into());
    let device = prism::core::device("cpu")?;
    let model = Model::load(model_path.as_ref(), &device)?;
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    for name in ["cities", "neg_cities", "larger_than", "smaller_than"] {
        let d = LabelledDataset::read_csv(&std::path::Path::new(&dir).join(format!("{name}.csv")))?;
        texts.extend(d.rows.iter().map(|r| r.text.clone()));
        labels.extend(d.labels());
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let hook = HookPoint::ResidPost(13);
    let t = Instant::now();
    let acts = statement_activations(
        &model,
        &refs,
        &[hook],
        Pooling::LastToken,
        &Hooks::new(),
        64,
        |_, _| {},
    )?
    .remove(&hook)
    .expect("captured");
    let forward = t.elapsed().as_secs_f64();
    let [n, d] = acts.dims2()?;
    println!("{n} statements × {d} dims: activations (forward to block 13) {forward:.2} s");

    let t = Instant::now();
    let logistic = Probe::fit(
        ProbeMethod::Logistic {
            c: 1.0,
            bias: false,
        },
        &acts,
        &labels,
    )?;
    let lr = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mm = Probe::fit(ProbeMethod::MassMean, &acts, &labels)?;
    let mass = t.elapsed().as_secs_f64();
    println!(
        "logistic probe {lr:.3} s (train accuracy {:.3}), mass-mean {mass:.4} s ({:.3})",
        logistic.evaluate(&acts, &labels)?.accuracy,
        mm.evaluate(&acts, &labels)?.accuracy
    );

    let m = 32 * d;
    let w_dec = burn::tensor::Tensor::<2>::random(
        [m, d],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let norms = w_dec.clone().powf_scalar(2.0).sum_dim(1).sqrt();
    let w_dec = w_dec / norms;
    let sae = Sae::new(
        Architecture::TopK { k: 32 },
        w_dec.clone().transpose(),
        burn::tensor::Tensor::zeros([1, m], &device),
        w_dec,
        burn::tensor::Tensor::zeros([1, d], &device),
    )?;
    let t = Instant::now();
    let codes = sparse_codes(&sae, &acts, 1024)?;
    let encode = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let scores = score_codes(&codes, &labels);
    let score = t.elapsed().as_secs_f64();
    let best = scores.iter().map(|s| s.strength()).fold(0.0, f64::max);
    println!(
        "{m} features: encode {encode:.2} s, score every feature {score:.3} s (strongest |AUROC − ½| {best:.3})"
    );
    println!(
        "in forward passes of the statements: logistic {:.3}, mass-mean {:.4}, feature scoring {:.3}",
        lr / forward,
        mass / forward,
        (encode + score) / forward
    );
    if let Some(path) = opt("--dump") {
        let rows: Vec<f32> = codes
            .iter()
            .enumerate()
            .flat_map(|(f, e)| e.iter().map(move |_| f as f32))
            .collect();
        let (cols, vals): (Vec<f32>, Vec<f32>) = codes
            .iter()
            .flat_map(|e| e.iter().map(|&(r, v)| (r as f32, v)))
            .unzip();
        let nnz = vals.len();
        let label_f: Vec<f32> = labels.iter().map(|&l| f32::from(u8::from(l))).collect();
        let tensors = [
            ("acts", acts.clone()),
            ("labels", HostTensor::new(vec![n], label_f)?),
            ("code_feature", HostTensor::new(vec![nnz], rows)?),
            ("code_row", HostTensor::new(vec![nnz], cols)?),
            ("code_value", HostTensor::new(vec![nnz], vals)?),
            ("d_sae", HostTensor::new(vec![1], vec![m as f32])?),
        ];
        let named: Vec<(String, HostTensor)> = tensors
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        prism::core::write_safetensors(path.as_ref(), &named, prism::core::FloatDtype::F32, None)?;
        println!("wrote {path}; time scikit-learn with: python scripts/bench_probes.py {path}");
    }
    Ok(())
}
