//! Each architecture recovers known sparse directions: 512 ground-truth unit vectors in d = 64,
//! every sample a sparse non-negative combination of them (5 active on average).

use prism_core::{Dictionary, HostTensor, device};
use prism_sae::train::{
    ArchitectureConfig, EngineChoice, JumpRelu, ResampleConfig, TrainConfig, Trainer,
};

use crate::common::synthetic::{D, Synthetic, TRUTH};

const DICT: usize = 1024;

/// Mean over ground-truth directions of the best cosine with a dictionary decoder row.
fn mmcs_truth_to_dict(truth: &[f32], w_dec: &[f32]) -> f64 {
    let unit: Vec<Vec<f32>> = w_dec
        .chunks(D)
        .map(|r| {
            let n = r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            r.iter().map(|v| v / n).collect()
        })
        .collect();
    truth
        .chunks(D)
        .map(|t| {
            unit.iter()
                .map(|u| t.iter().zip(u).map(|(a, b)| a * b).sum::<f32>())
                .fold(f32::MIN, f32::max) as f64
        })
        .sum::<f64>()
        / TRUTH as f64
}

/// Trains on fresh synthetic batches; returns MMCS and the saved dictionary's L0 on new data
/// minus the true mean number of active directions in that data (≈ 5).
fn train(config: TrainConfig, steps: usize, engine: &EngineChoice) -> (f64, f64, Trainer) {
    let mut data = Synthetic::new(42);
    let mut trainer = Trainer::new_on(config, engine).unwrap();
    let mut last = None;
    for _ in 0..steps {
        let (x, _) = data.batch(512);
        last = Some(trainer.step(&x).unwrap());
    }
    let dev = device("cpu").unwrap();
    let sae = trainer.to_sae(&dev).unwrap();
    let (x, active) = data.batch(2048);
    let truth = active.iter().sum::<usize>() as f64 / active.len() as f64;
    let codes = sae.encode(x.to_burn::<2>(&dev).unwrap());
    let l0 = codes
        .clone()
        .not_equal_elem(0.0)
        .float()
        .sum()
        .into_scalar::<f32>() as f64
        / 2048.0
        - truth;
    let w_dec = HostTensor::from_burn(sae.w_dec().clone()).unwrap();
    let mmcs = mmcs_truth_to_dict(&data.truth, &w_dec.data);
    eprintln!(
        "{} ({engine}): mmcs {mmcs:.3}, l0 − true active {l0:.2} (true {truth:.2}), last step {:?}",
        trainer.config.architecture.name(),
        last.unwrap()
    );
    (mmcs, l0, trainer)
}

fn config(arch: ArchitectureConfig, lr: f32, dict: usize) -> TrainConfig {
    let mut c = TrainConfig::new(arch, D, dict);
    c.lr = lr;
    c.warmup_steps = 100;
    c.sparsity_warmup_steps = 100;
    c.seed = 7;
    c.dead_after_tokens = 100_000;
    c
}

/// Resampling every 500 steps (window 250) and, when `decay`, linear lr decay over the last 20%.
fn schedule(mut c: TrainConfig, steps: u64, decay: bool) -> TrainConfig {
    c.resample = Some(ResampleConfig {
        every: 500,
        window: 250,
    });
    c.total_steps = steps;
    if decay {
        c.decay_start = Some(steps * 4 / 5);
    }
    c
}

#[test]
fn relu_l1_recovers_the_directions() {
    relu_l1(&EngineChoice::Host);
}

fn relu_l1(engine: &EngineChoice) {
    let c = schedule(
        config(ArchitectureConfig::relu(0.8), 1e-3, DICT),
        2250,
        false,
    );
    let (mmcs, excess, _) = train(c, 2250, engine);
    assert!(mmcs >= 0.9, "MMCS {mmcs}");
    // An L1 penalty keeps small extra codes: measured +6.0 per token over the truth here.
    assert!((4.5..7.5).contains(&excess), "L0 − true active {excess}");
}

#[test]
fn topk_recovers_the_directions() {
    topk(&EngineChoice::Host);
}

fn topk(engine: &EngineChoice) {
    let (mmcs, excess, _) = train(
        config(ArchitectureConfig::topk(5), 1e-3, DICT),
        2000,
        engine,
    );
    assert!(mmcs >= 0.9, "MMCS {mmcs}");
    // k = 5 codes by construction (fewer only where fewer pre-activations are positive), and
    // the data has 5.05 active directions per sample on average: measured −0.09.
    assert!((-0.3..0.1).contains(&excess), "L0 − true active {excess}");
}

/// BatchTopK lets a few latents absorb several directions early on (an independent PyTorch
/// implementation lands at the same MMCS ≈ 0.67 after 2000 steps with 1024 latents): it gets
/// twice the latents, resampling and a longer schedule.
#[test]
fn batch_topk_recovers_the_directions() {
    batch_topk(&EngineChoice::Host);
}

fn batch_topk(engine: &EngineChoice) {
    let mut arch = ArchitectureConfig::batch_topk(5);
    if let ArchitectureConfig::BatchTopK(b) = &mut arch {
        b.threshold_start_step = 200;
    }
    let c = schedule(config(arch, 1e-3, 2 * DICT), 6900, true);
    let (mmcs, excess, _) = train(c, 6900, engine);
    assert!(mmcs >= 0.9, "MMCS {mmcs}");
    // The learned threshold keeps k per token on average: measured −0.05.
    assert!(
        excess.abs() < 0.3,
        "L0 − true active with the learned threshold {excess}"
    );
}

#[test]
fn jumprelu_recovers_the_directions() {
    jumprelu(&EngineChoice::Host);
}

fn jumprelu(engine: &EngineChoice) {
    let arch = ArchitectureConfig::JumpRelu(JumpRelu {
        l0_coeff: 0.2,
        bandwidth: 0.05,
        init_threshold: 0.1,
    });
    let (mmcs, excess, _) = train(schedule(config(arch, 1e-3, DICT), 6900, true), 6900, engine);
    assert!(mmcs >= 0.9, "MMCS {mmcs}");
    // The thresholds cut the weakest true codes: measured −1.39 per token.
    assert!((-2.0..-0.8).contains(&excess), "L0 − true active {excess}");
}

#[test]
fn gated_recovers_the_directions() {
    gated(&EngineChoice::Host);
}

fn gated(engine: &EngineChoice) {
    let c = schedule(
        config(ArchitectureConfig::gated(1.0), 1e-3, DICT),
        9900,
        true,
    );
    let (mmcs, excess, _) = train(c, 9900, engine);
    assert!(mmcs >= 0.9, "MMCS {mmcs}");
    // The gate's L1 leaves fewer extra codes than ReLU's: measured +1.58 per token.
    assert!((1.0..2.2).contains(&excess), "L0 − true active {excess}");
}

/// The burn engine (on burn's CPU backend) recovers the directions like the host kernels, with the
/// same bounds. TopK runs in the tests; the others take minutes each on 2 cores (ReLU, JumpReLU
/// and Gated together: 571 s, MMCS 0.954 / 0.974 / 0.903, L0 excess as on the host):
/// `cargo test --workspace --features wgpu --test sae recovery::burn_engine -- --ignored`.
#[test]
fn burn_engine_topk_recovers_the_directions() {
    topk(&EngineChoice::burn_on("cpu").unwrap());
}

#[test]
#[ignore = "long on 2 cores (≈ 3 min)"]
fn burn_engine_relu_l1_recovers_the_directions() {
    relu_l1(&EngineChoice::burn_on("cpu").unwrap());
}

#[test]
#[ignore = "long on 2 cores (not yet timed; a bisection over the whole batch per step)"]
fn burn_engine_batch_topk_recovers_the_directions() {
    batch_topk(&EngineChoice::burn_on("cpu").unwrap());
}

#[test]
#[ignore = "long on 2 cores (≈ 8 min)"]
fn burn_engine_jumprelu_recovers_the_directions() {
    jumprelu(&EngineChoice::burn_on("cpu").unwrap());
}

#[test]
#[ignore = "long on 2 cores (≈ 10 min)"]
fn burn_engine_gated_recovers_the_directions() {
    gated(&EngineChoice::burn_on("cpu").unwrap());
}
