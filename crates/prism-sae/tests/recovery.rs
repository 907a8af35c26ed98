//! Each architecture recovers known sparse directions: 512 ground-truth unit vectors in d = 64,
//! every sample a sparse non-negative combination of them (5 active on average).

use prism_core::{Dictionary, HostTensor, device};
use prism_sae::train::{ArchitectureConfig, ResampleConfig, TrainConfig, Trainer};
use rand::{Rng, SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, StandardNormal};

const D: usize = 64;
const TRUTH: usize = 512;
const MEAN_ACTIVE: f64 = 5.0;
const DICT: usize = 1024;

struct Synthetic {
    truth: Vec<f32>,
    rng: StdRng,
}

impl Synthetic {
    fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut truth: Vec<f32> = (0..TRUTH * D)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        for r in truth.chunks_mut(D) {
            let n = r.iter().map(|v| v * v).sum::<f32>().sqrt();
            r.iter_mut().for_each(|v| *v /= n);
        }
        Self { truth, rng }
    }

    /// `n` samples and the number of active ground-truth features in each.
    fn batch(&mut self, n: usize) -> (HostTensor, Vec<usize>) {
        let p = MEAN_ACTIVE / TRUTH as f64;
        let mut data = vec![0f32; n * D];
        let mut active = Vec::with_capacity(n);
        for row in data.chunks_mut(D) {
            let mut count = 0;
            for t in 0..TRUTH {
                if self.rng.random::<f64>() < p {
                    let c: f32 = self.rng.random_range(0.5..1.5);
                    for (o, v) in row.iter_mut().zip(&self.truth[t * D..][..D]) {
                        *o += c * v;
                    }
                    count += 1;
                }
            }
            active.push(count);
        }
        (HostTensor::new(vec![n, D], data).unwrap(), active)
    }
}

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

/// Trains on fresh synthetic batches; returns MMCS and the saved dictionary's L0 on new data.
fn train(config: TrainConfig, steps: usize) -> (f64, f64, Trainer) {
    let mut data = Synthetic::new(42);
    let mut trainer = Trainer::new(config).unwrap();
    let mut last = None;
    for _ in 0..steps {
        let (x, _) = data.batch(512);
        last = Some(trainer.step(&x).unwrap());
    }
    let dev = device("cpu").unwrap();
    let sae = trainer.to_sae(&dev).unwrap();
    let (x, _) = data.batch(2048);
    let codes = sae.encode(x.to_burn::<2>(&dev).unwrap());
    let l0 = codes
        .clone()
        .not_equal_elem(0.0)
        .float()
        .sum()
        .into_scalar::<f32>() as f64
        / 2048.0;
    let w_dec = HostTensor::from_burn(sae.w_dec.clone()).unwrap();
    let mmcs = mmcs_truth_to_dict(&data.truth, &w_dec.data);
    if std::env::var("DENS").is_ok() {
        let c = HostTensor::from_burn(codes.clone()).unwrap();
        let mut dens = vec![0usize; trainer.config.d_sae];
        for r in c.data.chunks(trainer.config.d_sae) {
            for (j, v) in r.iter().enumerate() {
                if *v != 0.0 {
                    dens[j] += 1;
                }
            }
        }
        let mut s = dens.clone();
        s.sort_unstable_by(|a, b| b.cmp(a));
        eprintln!(
            "top densities {:?}, alive {}",
            &s[..12],
            dens.iter().filter(|&&v| v > 0).count()
        );
        let norms: Vec<f32> = w_dec
            .data
            .chunks(D)
            .map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt())
            .collect();
        eprintln!("b_enc sample {:?}", &trainer.params.b_enc[..8]);
        let _ = norms;
    }
    eprintln!(
        "{}: mmcs {mmcs:.3}, l0 {l0:.2}, last step {:?}",
        trainer.config.architecture.name(),
        last.unwrap()
    );
    (mmcs, l0, trainer)
}

fn config(arch: ArchitectureConfig, lr: f32) -> TrainConfig {
    let dict = std::env::var("DICTSIZE")
        .map(|s| s.parse().unwrap())
        .unwrap_or(DICT);
    let mut c = TrainConfig::new(arch, D, dict);
    c.lr = lr;
    c.warmup_steps = 100;
    c.sparsity_warmup_steps = 100;
    c.seed = 7;
    c.dead_after_tokens = 100_000;
    c
}

#[test]
fn relu_l1_recovers_the_directions() {
    let mut c = config(ArchitectureConfig::Relu { l1: 0.1 }, 1e-3);
    c.resample = Some(ResampleConfig {
        every: 500,
        window: 250,
    });
    let (mmcs, l0, _) = train(c, 2000);
    assert!(mmcs >= 0.9, "MMCS {mmcs}");
    assert!((2.5..10.0).contains(&l0), "L0 {l0}");
}

#[test]
fn topk_recovers_the_directions() {
    let (mmcs, l0, _) = train(config(ArchitectureConfig::topk(5), 1e-3), 2000);
    assert!(mmcs >= 0.9, "MMCS {mmcs}");
    assert!(
        (l0 - 5.0).abs() < 1e-9,
        "TopK L0 is k by construction: {l0}"
    );
}

#[test]
fn batch_topk_recovers_the_directions() {
    let mut arch = ArchitectureConfig::batch_topk(5);
    if let ArchitectureConfig::BatchTopK {
        threshold_start_step,
        ..
    } = &mut arch
    {
        *threshold_start_step = 200;
    }
    let (mmcs, l0, _) = train(config(arch, 1e-3), 2000);
    assert!(mmcs >= 0.9, "MMCS {mmcs}");
    assert!((l0 - 5.0).abs() < 1.5, "L0 with the learned threshold {l0}");
}

#[test]
fn jumprelu_recovers_the_directions() {
    let (mmcs, l0, _) = train(config(ArchitectureConfig::jumprelu(0.05), 1e-3), 2000);
    assert!(mmcs >= 0.9, "MMCS {mmcs}");
    assert!((2.5..10.0).contains(&l0), "L0 {l0}");
}

#[test]
fn gated_recovers_the_directions() {
    let (mmcs, l0, _) = train(config(ArchitectureConfig::Gated { l1: 0.1 }, 1e-3), 2000);
    assert!(mmcs >= 0.9, "MMCS {mmcs}");
    assert!((2.5..10.0).contains(&l0), "L0 {l0}");
}

#[test]
#[ignore]
fn tune() {
    let which = std::env::var("TUNE").unwrap();
    let vals: Vec<f32> = std::env::var("VALS")
        .unwrap()
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    let steps: usize = std::env::var("STEPS")
        .map(|s| s.parse().unwrap())
        .unwrap_or(2000);
    for v in vals {
        let arch = match which.as_str() {
            "relu" => ArchitectureConfig::Relu { l1: v },
            "jump" => ArchitectureConfig::JumpRelu {
                l0_coeff: v,
                bandwidth: std::env::var("BW")
                    .map(|s| s.parse().unwrap())
                    .unwrap_or(0.05),
                init_threshold: 0.1,
            },
            "gated" => ArchitectureConfig::Gated { l1: v },
            _ => ArchitectureConfig::BatchTopK {
                k: 5,
                auxk_alpha: std::env::var("ALPHA")
                    .map(|s| s.parse().unwrap())
                    .unwrap_or(1.0 / 32.0),
                threshold_beta: 0.999,
                threshold_start_step: 200,
            },
        };
        let lr = if which == "btk" { v } else { 1e-3 };
        let mut c = config(arch, lr);
        if which == "relu" {
            c.resample = Some(ResampleConfig {
                every: 500,
                window: 250,
            });
        }
        if std::env::var("CLIP").is_ok() {
            c.grad_clip = Some(1.0);
        }
        if std::env::var("NORM").is_ok() {
            c.normalize_activations = true;
        }
        if std::env::var("NORES").is_ok() {
            c.resample = None;
        }
        if std::env::var("DECAY").is_ok() {
            c.decay_start = Some(steps as u64 * 4 / 5);
            c.total_steps = steps as u64;
        }
        if std::env::var("RES").is_ok() {
            c.resample = Some(ResampleConfig {
                every: 500,
                window: 250,
            });
        }
        eprintln!("value {v}");
        train(c, steps);
    }
}
