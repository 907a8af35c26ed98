//! Each architecture recovers known sparse directions: 512 ground-truth unit vectors in d = 64,
//! every sample a sparse non-negative combination of them (5 active on average). Transcoders
//! recover a planted MLP: each of those directions writes its own output direction.

use prism_core::{Dictionary, HostTensor, device};
use prism_sae::train::{
    ArchitectureConfig, EngineChoice, JumpRelu, ResampleConfig, TrainConfig, Trainer,
};

use crate::common::synthetic::{D, PlantedMlp, Synthetic, TRUTH};

const DICT: usize = 1024;

/// Mean over ground-truth directions of the best cosine with a dictionary decoder row.
fn mmcs_truth_to_dict(truth: &[f32], w_dec: &[f32]) -> f64 {
    mmcs_at_width(truth, w_dec, D)
}

/// [`mmcs_truth_to_dict`] for rows of width `d`.
fn mmcs_at_width(truth: &[f32], w_dec: &[f32], d: usize) -> f64 {
    let unit: Vec<Vec<f32>> = w_dec
        .chunks(d)
        .map(|r| {
            let n = r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            r.iter().map(|v| v / n).collect()
        })
        .collect();
    truth
        .chunks(d)
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

/// `1 − Σ‖y − ŷ‖² / Σ‖y − ȳ‖²` over rows of width `d`.
fn fve(y: &HostTensor, out: &HostTensor, d: usize) -> f64 {
    let n = (y.data.len() / d) as f64;
    let mut mean = vec![0f64; d];
    for r in y.data.chunks(d) {
        mean.iter_mut()
            .zip(r)
            .for_each(|(m, v)| *m += *v as f64 / n);
    }
    let total: f64 = (y.data.iter().enumerate())
        .map(|(e, v)| (*v as f64 - mean[e % d]).powi(2))
        .sum();
    let err: f64 = (y.data.iter().zip(&out.data))
        .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
        .sum();
    1.0 - err / total
}

/// The planted MLP's output width (not `D`, so that a mix-up of the widths fails).
const D_OUT: usize = 48;

/// A TopK transcoder trained on pairs (the planted MLP's input, its output × 3) recovers the
/// MLP: its decoder finds the output directions and its output explains the output's variance
/// on new data, in raw units (the two normalising scales differ and are folded on export). A
/// skip transcoder, on an MLP with a strong linear part, learns that linear map in `W_skip`.
///
/// Measured (2000 steps of 512, host and burn alike to the printed digits): without skip MMCS
/// 0.975, FVE 0.64 (0.996 / 0.70 after 6000 steps: the untied encoder is what lags — a
/// transcoder whose target is its input, tied, matches the SAE, below); with skip MMCS 0.91,
/// FVE 0.92, cosine of `W_skip` with the planted map 0.972. The skip matrix is only close, not
/// equal, to the planted one: the MLP part's own best linear fit from `x` (about a fifth of
/// the planted map's size here) may go to either.
fn transcoder(engine: &EngineChoice, skip: bool) {
    let mut data = PlantedMlp::new(42, D_OUT, skip.then_some(2.0));
    let mut c = config(ArchitectureConfig::topk(8), 1e-3, DICT).with_output(D_OUT, skip);
    c.normalize_activations = true;
    let mut trainer = Trainer::new_on(c, engine).unwrap();
    let tripled = |y: HostTensor| {
        HostTensor::new(y.shape.clone(), y.data.iter().map(|v| 3.0 * v).collect()).unwrap()
    };
    let mut last = None;
    for _ in 0..2000 {
        let (x, y) = data.batch(512);
        last = Some(trainer.step_with_target(&x, &tripled(y)).unwrap());
    }
    assert!(
        (trainer.input_scale() / trainer.output_scale() - 1.0).abs() > 0.5,
        "the test should fold two different scales"
    );
    let dev = device("cpu").unwrap();
    let t = trainer.to_transcoder(&dev).unwrap();
    let (x, y) = data.batch(2048);
    let y = tripled(y);
    let out = HostTensor::from_burn(t.forward(x.to_burn::<2>(&dev).unwrap())).unwrap();
    let fve = fve(&y, &out, D_OUT);
    let w_dec = HostTensor::from_burn(t.w_dec().clone()).unwrap();
    let mmcs = mmcs_at_width(&data.outputs, &w_dec.data, D_OUT);
    eprintln!(
        "transcoder ({engine}, skip {skip}): mmcs {mmcs:.3}, fve {fve:.3}, last step {:?}",
        last.unwrap()
    );
    let (min_mmcs, min_fve) = if skip { (0.88, 0.88) } else { (0.95, 0.6) };
    assert!(mmcs >= min_mmcs, "MMCS {mmcs}");
    assert!(fve >= min_fve, "FVE {fve}");
    if let Some(planted) = &data.skip {
        let learned = HostTensor::from_burn(t.skip().unwrap().clone()).unwrap();
        let (mut dot, mut a2, mut b2) = (0f64, 0f64, 0f64);
        for (a, b) in learned.data.iter().zip(planted) {
            let (a, b) = (*a as f64, 3.0 * *b as f64);
            dot += a * b;
            a2 += a * a;
            b2 += b * b;
        }
        let cos = dot / (a2 * b2).sqrt();
        eprintln!("  W_skip: cosine with the planted map {cos:.4}");
        assert!(cos >= 0.95, "W_skip's cosine with the planted map {cos}");
    }
}

/// A transcoder whose target is its own input (same width: its encoder starts tied) trains as
/// the sparse autoencoder does: the same FVE within 0.01 (measured 0.825 and 0.824; they differ
/// only in `b_dec` not being subtracted from the transcoder's input). Catches a transcoder path
/// that scales, initialises or updates differently from the autoencoder's.
#[test]
fn a_transcoder_of_its_own_input_trains_as_the_autoencoder_does() {
    let dev = device("cpu").unwrap();
    let mut scores = Vec::new();
    for as_transcoder in [false, true] {
        let mut data = PlantedMlp::new(42, D_OUT, None);
        let mut c = config(ArchitectureConfig::topk(8), 1e-3, DICT);
        if as_transcoder {
            c = c.with_output(D, false);
        }
        c.normalize_activations = true;
        let mut trainer = Trainer::new(c).unwrap();
        for _ in 0..2000 {
            let (x, _) = data.batch(512);
            if as_transcoder {
                trainer.step_with_target(&x, &x).unwrap();
            } else {
                trainer.step(&x).unwrap();
            }
        }
        let (x, _) = data.batch(2048);
        let input = x.to_burn::<2>(&dev).unwrap();
        let out = if as_transcoder {
            trainer.to_transcoder(&dev).unwrap().forward(input)
        } else {
            trainer.to_sae(&dev).unwrap().forward(input)
        };
        scores.push(fve(&x, &HostTensor::from_burn(out).unwrap(), D));
    }
    eprintln!(
        "FVE: autoencoder {:.4}, transcoder {:.4}",
        scores[0], scores[1]
    );
    assert!(scores[0] > 0.75, "autoencoder FVE {}", scores[0]);
    assert!((scores[0] - scores[1]).abs() < 0.01, "{scores:?}");
}

#[test]
fn transcoder_recovers_a_planted_mlp() {
    transcoder(&EngineChoice::Host, false);
}

#[test]
fn skip_transcoder_recovers_a_planted_mlp_and_its_linear_map() {
    transcoder(&EngineChoice::Host, true);
}

#[test]
fn burn_engine_skip_transcoder_recovers_a_planted_mlp() {
    transcoder(&EngineChoice::burn_on("cpu").unwrap(), true);
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
