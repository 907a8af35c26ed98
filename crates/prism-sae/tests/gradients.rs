//! Every architecture's hand-written gradient against central finite differences of an
//! independent f64 implementation of its loss (plain loops, written from the papers' formulas).

//! Both engines (the host kernels, and burn — here on `flex`; `training.rs` checks that burn on
//! `wgpu` trains like the host) are checked the same way.

use crate::common;

use prism_sae::kernel::KernelMode;
use prism_sae::train::{
    Adam, AdamConfig, ArchitectureConfig as Objective, BatchTopK, Engine, Gated, JumpRelu,
    Matryoshka, PARAM_NAMES, Params, Relu, StepInputs, TopK, loss_and_grads,
};

/// A small deterministic pseudo-random stream.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f64) -> Vec<f32> {
        (0..n).map(|_| (self.next() * scale) as f32).collect()
    }
}

const N: usize = 12;
const D: usize = 6;
const M: usize = 10;
/// A transcoder's output width in the tests (different from `D`, so a width mix-up fails).
const D_OUT: usize = 5;

/// What the dictionary writes: its own input (an autoencoder), or another target (a
/// transcoder, optionally with a skip term).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Output {
    Autoencoder,
    Transcoder { skip: bool },
}

impl Output {
    fn width(self) -> usize {
        match self {
            Output::Autoencoder => D,
            Output::Transcoder { .. } => D_OUT,
        }
    }
}

fn params(rng: &mut Lcg, objective: &Objective) -> Params {
    params_for(rng, objective, Output::Autoencoder)
}

fn params_for(rng: &mut Lcg, objective: &Objective, output: Output) -> Params {
    let d_out = output.width();
    let per = |on: bool, rng: &mut Lcg, s: f64, off: f64| {
        if on {
            rng.vec(M, s).into_iter().map(|v| v + off as f32).collect()
        } else {
            Vec::new()
        }
    };
    let jump = matches!(objective, Objective::JumpRelu(_));
    let gated = matches!(objective, Objective::Gated(_));
    Params {
        d: D,
        d_out,
        m: M,
        w_enc: rng.vec(M * D, 0.8),
        b_enc: rng.vec(M, 0.3),
        w_dec: rng.vec(M * d_out, 0.8),
        b_dec: rng.vec(d_out, 0.3),
        log_threshold: per(jump, rng, 0.3, -0.5),
        r_mag: per(gated, rng, 0.3, 0.0),
        b_mag: per(gated, rng, 0.3, 0.0),
        w_skip: if output == (Output::Transcoder { skip: true }) {
            rng.vec(d_out * D, 0.4)
        } else {
            Vec::new()
        },
    }
}

/// What the reference holds fixed (detached in the original implementations).
struct Detached {
    /// AuxK's target: the main reconstruction's residual at the base point.
    residual: Vec<f64>,
    /// Gated's aux path uses the decoder at the base point.
    w_dec: Vec<f64>,
    b_dec: Vec<f64>,
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Indices of the `k` largest positive values among `allowed` (ties → lower index).
fn top(values: &[f64], k: usize, allowed: &[bool]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len())
        .filter(|&j| allowed[j] && values[j] > 0.0)
        .collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// The loss, from the definitions, in f64: the dictionary's output `f · W_dec + b_dec (+ x ·
/// W_skipᵀ)` against `y` (`x` itself for an autoencoder).
#[allow(clippy::too_many_arguments)]
fn reference_loss(
    obj: &Objective,
    p: &[Vec<f64>; 8],
    x: &[f64],
    y: Option<&[f64]>,
    dead: &[bool],
    apply_b_dec: bool,
    detached: Option<&Detached>,
) -> (f64, Vec<f64>) {
    let [w_enc, b_enc, w_dec, b_dec, log_th, r_mag, b_mag, w_skip] = p;
    let dout = b_dec.len();
    let target = y.unwrap_or(x);
    let mut a = vec![0.0; N * M];
    for r in 0..N {
        for j in 0..M {
            a[r * M + j] = (0..D)
                .map(|i| {
                    (x[r * D + i] - if apply_b_dec { b_dec[i] } else { 0.0 }) * w_enc[j * D + i]
                })
                .sum();
        }
    }
    let pre: Vec<f64> = (0..N * M).map(|e| a[e] + b_enc[e % M]).collect();
    let mut f = vec![0.0; N * M];
    let mut sparsity_term = 0.0;
    let mut gate_codes = vec![0.0; N * M];
    match *obj {
        Objective::Relu(Relu { l1 }) => {
            for e in 0..N * M {
                f[e] = pre[e].max(0.0);
            }
            sparsity_term = l1 as f64 * f.iter().sum::<f64>() / N as f64;
        }
        Objective::TopK(TopK { k, .. }) => {
            for r in 0..N {
                for j in top(&pre[r * M..(r + 1) * M], k, &[true; M]) {
                    f[r * M + j] = pre[r * M + j];
                }
            }
        }
        Objective::BatchTopK(BatchTopK { k, .. })
        | Objective::Matryoshka(Matryoshka {
            batch_topk: BatchTopK { k, .. },
            ..
        }) => {
            let mut all: Vec<usize> = (0..N * M).filter(|&e| pre[e] > 0.0).collect();
            all.sort_by(|&a, &b| pre[b].total_cmp(&pre[a]));
            for &e in all.iter().take(k * N) {
                f[e] = pre[e];
            }
        }
        Objective::JumpRelu(JumpRelu { l0_coeff, .. }) => {
            for e in 0..N * M {
                if pre[e].max(0.0) > log_th[e % M].exp() {
                    f[e] = pre[e];
                }
            }
            let l0 = f.iter().filter(|&&v| v != 0.0).count() as f64;
            sparsity_term = l0_coeff as f64 * l0 / N as f64;
        }
        Objective::Gated(Gated { l1 }) => {
            for e in 0..N * M {
                if pre[e] > 0.0 {
                    gate_codes[e] = pre[e];
                    let j = e % M;
                    f[e] = (r_mag[j].exp() * a[e] + b_mag[j]).max(0.0);
                }
            }
            sparsity_term = l1 as f64 * gate_codes.iter().sum::<f64>() / N as f64;
        }
    }
    let skip_term = |r: usize, o: usize| -> f64 {
        if w_skip.is_empty() {
            0.0
        } else {
            (0..D).map(|i| x[r * D + i] * w_skip[o * D + i]).sum()
        }
    };
    let decode = |codes: &[f64], w: &[f64], bias: Option<&[f64]>| -> Vec<f64> {
        let mut out = vec![0.0; N * dout];
        for r in 0..N {
            for i in 0..dout {
                out[r * dout + i] = bias.map_or(0.0, |b| b[i])
                    + (0..M)
                        .map(|j| codes[r * M + j] * w[j * dout + i])
                        .sum::<f64>();
            }
        }
        out
    };
    let sq = |a: &[f64], b: &[f64]| {
        a.iter().zip(b).map(|(u, v)| (u - v).powi(2)).sum::<f64>() / N as f64
    };
    let mut x_hat = decode(&f, w_dec, Some(b_dec));
    for (e, v) in x_hat.iter_mut().enumerate() {
        *v += skip_term(e / dout, e % dout);
    }
    let residual: Vec<f64> = target.iter().zip(&x_hat).map(|(a, b)| a - b).collect();
    let mut loss = sq(target, &x_hat) + sparsity_term;
    if let Objective::Matryoshka(mat) = obj {
        // Each nested prefix reconstructs on its own: the mean of the weighted prefix errors.
        let widths = mat.widths(M);
        let g = widths.len() as f64;
        let weights = mat
            .group_weights
            .clone()
            .unwrap_or(vec![1.0 / g as f32; widths.len()]);
        loss = 0.0;
        for (&end, &weight) in widths.iter().zip(&weights) {
            let prefix: Vec<f64> = (0..N * M)
                .map(|e| if e % M < end { f[e] } else { 0.0 })
                .collect();
            loss += weight as f64 * sq(target, &decode(&prefix, w_dec, Some(b_dec))) / g;
        }
    }
    match *obj {
        Objective::TopK(TopK { auxk_alpha, .. })
        | Objective::BatchTopK(BatchTopK { auxk_alpha, .. })
        | Objective::Matryoshka(Matryoshka {
            batch_topk: BatchTopK { auxk_alpha, .. },
            ..
        }) if (0..M).any(|j| dead[j] && (0..N).all(|r| f[r * M + j] == 0.0)) => {
            let res = detached.map_or(residual.clone(), |dt| dt.residual.clone());
            // Latents firing in this batch are not dead.
            let dead: Vec<bool> = (0..M)
                .map(|j| dead[j] && (0..N).all(|r| f[r * M + j] == 0.0))
                .collect();
            let dead = &dead[..];
            let k_aux = (dout / 2).min(dead.iter().filter(|&&v| v).count());
            let mut fa = vec![0.0; N * M];
            for r in 0..N {
                for j in top(&pre[r * M..(r + 1) * M], k_aux, dead) {
                    fa[r * M + j] = pre[r * M + j];
                }
            }
            let x_aux = decode(&fa, w_dec, None);
            let mean: Vec<f64> = (0..dout)
                .map(|i| (0..N).map(|r| res[r * dout + i]).sum::<f64>() / N as f64)
                .collect();
            let centred: Vec<f64> = (0..N * dout).map(|e| res[e] - mean[e % dout]).collect();
            loss += auxk_alpha as f64 * sq(&res, &x_aux) / sq(&centred, &vec![0.0; N * dout]);
        }
        Objective::Gated(_) => {
            let (w, b) = detached.map_or((w_dec.clone(), b_dec.clone()), |dt| {
                (dt.w_dec.clone(), dt.b_dec.clone())
            });
            loss += sq(target, &decode(&gate_codes, &w, Some(&b)));
        }
        _ => {}
    }
    (loss, residual)
}

fn as_array(p: &Params) -> [Vec<f64>; 8] {
    p.tensors().map(|t| f64s(t))
}

fn check(objective: Objective, apply_b_dec: bool, dead: &[bool], seed: u64) {
    check_output(objective, apply_b_dec, dead, seed, Output::Autoencoder)
}

fn check_output(objective: Objective, apply_b_dec: bool, dead: &[bool], seed: u64, output: Output) {
    let mut rng = Lcg(seed);
    let mut p = params_for(&mut rng, &objective, output);
    // Latents counted dead fire less, so that some stay silent in the batch and AuxK acts.
    for (j, _) in dead.iter().enumerate().filter(|e| *e.1) {
        p.b_enc[j] -= 0.8;
    }
    let x32 = rng.vec(N * D, 1.5);
    let x = f64s(&x32);
    let y32 = (output != Output::Autoencoder).then(|| rng.vec(N * D_OUT, 1.5));
    let y = y32.as_deref().map(f64s);
    let base = as_array(&p);
    let (want_loss, residual) =
        reference_loss(&objective, &base, &x, y.as_deref(), dead, apply_b_dec, None);
    let detached = Detached {
        residual,
        w_dec: base[2].clone(),
        b_dec: base[3].clone(),
    };
    // The finite differences, once for all engines.
    let h = 1e-5;
    let fd: Vec<Vec<f64>> = (0..PARAM_NAMES.len())
        .map(|t| {
            if PARAM_NAMES[t] == "log_threshold" {
                return Vec::new(); // a straight-through estimate: checked separately
            }
            (0..base[t].len())
                .map(|e| {
                    let mut plus = base.clone();
                    plus[t][e] += h;
                    let mut minus = base.clone();
                    minus[t][e] -= h;
                    let at = |q: &[Vec<f64>; 8]| {
                        let (y, d) = (y.as_deref(), Some(&detached));
                        reference_loss(&objective, q, &x, y, dead, apply_b_dec, d).0
                    };
                    (at(&plus) - at(&minus)) / (2.0 * h)
                })
                .collect()
        })
        .collect();
    for (label, choice) in common::engines() {
        let adam = Adam::new(&p, AdamConfig::default());
        let mut engine = choice.build(p.clone(), adam, KernelMode::Sparse).unwrap();
        let pass = engine
            .forward_backward(&objective, &x32, y32.as_deref(), N, dead, apply_b_dec)
            .unwrap();
        let grads = engine.gradients().unwrap();
        if dead.iter().any(|&v| v) {
            assert!(
                pass.aux > 0.0,
                "{label} {objective:?}: the test should exercise AuxK"
            );
        }
        assert!(
            (pass.loss - want_loss).abs() < 1e-4 * (1.0 + want_loss.abs()),
            "{label} {objective:?}: loss {} vs reference {want_loss}",
            pass.loss
        );
        let mut checked = 0;
        for (t, name) in PARAM_NAMES.iter().enumerate() {
            for (e, &fd) in fd[t].iter().enumerate() {
                let got = grads.tensors()[t][e] as f64;
                assert!(
                    (got - fd).abs() < 2e-3 * (1.0 + fd.abs()),
                    "{label} {objective:?} d loss / d {name}[{e}]: analytic {got}, finite \
                     difference {fd}"
                );
                checked += 1;
            }
        }
        assert!(checked > 100);
        if output == (Output::Transcoder { skip: true }) {
            assert!(grads.w_skip.iter().any(|&g| g != 0.0));
        }
    }
}

/// A dead-latent mask with the given latents dead.
fn dead_at(latents: &[usize]) -> [bool; M] {
    let mut dead = [false; M];
    for &j in latents {
        dead[j] = true;
    }
    dead
}

#[test]
fn relu_l1_gradient_matches_finite_differences() {
    check(Objective::relu(0.3), true, &[false; M], 1);
    check(Objective::relu(0.1), false, &[false; M], 2);
}

#[test]
fn topk_gradient_with_auxk_matches_finite_differences() {
    let dead = dead_at(&[1, 4, 5, 8]);
    check(
        Objective::TopK(TopK {
            k: 3,
            auxk_alpha: 0.5,
        }),
        true,
        &dead,
        3,
    );
    check(
        Objective::TopK(TopK {
            k: 2,
            auxk_alpha: 0.5,
        }),
        true,
        &[false; M],
        4,
    );
}

#[test]
fn batch_topk_gradient_matches_finite_differences() {
    let dead = dead_at(&[2, 3, 7, 9]);
    check(
        Objective::BatchTopK(BatchTopK {
            k: 2,
            auxk_alpha: 0.25,
            threshold_beta: 0.999,
            threshold_start_step: 0,
        }),
        true,
        &dead,
        5,
    );
}

#[test]
fn jumprelu_gradient_matches_finite_differences_and_the_threshold_estimator() {
    let objective = Objective::JumpRelu(JumpRelu {
        l0_coeff: 0.2,
        bandwidth: 0.4,
        init_threshold: 0.001,
    });
    check(objective.clone(), false, &[false; M], 6);
    // The threshold's straight-through estimate, from its formula:
    // ∂/∂θ_j = Σ_{t: |ReLU(pre)−θ| < ε/2} [ −(θ/ε) ∂L/∂f_tj − λ/(n ε) ], times θ for log θ.
    let mut rng = Lcg(6);
    let p = params(&mut rng, &objective);
    let x32 = rng.vec(N * D, 1.5);
    let mut grads = p.zeros_like();
    let pass = loss_and_grads(
        &objective,
        &p,
        &x32,
        N,
        StepInputs {
            dead: None,
            apply_b_dec_to_input: false,
            mode: KernelMode::Dense,
            target: None,
        },
        &mut grads,
    )
    .unwrap();
    let codes = pass.codes.to_dense();
    let (eps, lam) = (0.4f64, 0.2f64);
    let mut windows = 0;
    for j in 0..M {
        let theta = (p.log_threshold[j] as f64).exp();
        let mut want = 0.0;
        for r in 0..N {
            let pre: f64 = (0..D)
                .map(|i| x32[r * D + i] as f64 * p.w_enc[j * D + i] as f64)
                .sum::<f64>()
                + p.b_enc[j] as f64;
            if (pre.max(0.0) - theta).abs() < eps / 2.0 {
                windows += 1;
                let x_hat: Vec<f64> = (0..D)
                    .map(|i| {
                        p.b_dec[i] as f64
                            + (0..M)
                                .map(|q| codes[r * M + q] as f64 * p.w_dec[q * D + i] as f64)
                                .sum::<f64>()
                    })
                    .collect();
                let df: f64 = (0..D)
                    .map(|i| {
                        2.0 * (x_hat[i] - x32[r * D + i] as f64) / N as f64
                            * p.w_dec[j * D + i] as f64
                    })
                    .sum();
                want += -(theta / eps) * df - lam / (N as f64 * eps);
            }
        }
        let got = grads.log_threshold[j] as f64;
        assert!(
            (got - want * theta).abs() < 1e-4 * (1.0 + got.abs()),
            "θ_{j}: {got} vs {}",
            want * theta
        );
    }
    assert!(
        windows > 3,
        "the test should exercise the estimator's window"
    );
    // The burn engine's estimate equals the host's, checked above against the formula.
    for (label, choice) in common::engines() {
        let adam = Adam::new(&p, AdamConfig::default());
        let mut engine = choice.build(p.clone(), adam, KernelMode::Dense).unwrap();
        engine
            .forward_backward(&objective, &x32, None, N, &[false; M], false)
            .unwrap();
        let got = engine.gradients().unwrap().log_threshold;
        for (a, b) in got.iter().zip(&grads.log_threshold) {
            assert!(
                (a - b).abs() < 1e-4 * (1.0 + b.abs()),
                "{label}: θ {a} vs {b}"
            );
        }
    }
}

/// Matryoshka groups of 3, 3 and 4 features for the tests' M = 10.
fn matryoshka(k: usize, weights: Option<Vec<f32>>) -> Objective {
    let mut m = Matryoshka::new(k);
    m.group_fractions = vec![0.3, 0.3, 0.4];
    m.group_weights = weights;
    m.batch_topk.auxk_alpha = 0.25;
    Objective::Matryoshka(m)
}

#[test]
fn matryoshka_gradient_with_auxk_matches_finite_differences() {
    let dead = dead_at(&[2, 3, 7, 9]);
    check(matryoshka(2, None), true, &dead, 5);
    check(
        matryoshka(3, Some(vec![0.5, 1.0, 2.0])),
        false,
        &[false; M],
        9,
    );
}

#[test]
fn gated_gradient_matches_finite_differences() {
    check(Objective::gated(0.2), true, &[false; M], 7);
}

/// Transcoders: the loss against another hook's target of another width, with and without a
/// trained skip term, on both engines — a mix-up of the two widths, a skip term left out of
/// the prediction or of AuxK's residual, or a wrong `∂L/∂W_skip` fails here.
#[test]
fn transcoder_gradients_match_finite_differences() {
    let plain = Output::Transcoder { skip: false };
    let skip = Output::Transcoder { skip: true };
    check_output(Objective::relu(0.3), false, &[false; M], 11, skip);
    let dead = dead_at(&[1, 4, 5, 8]);
    let topk = Objective::TopK(TopK {
        k: 3,
        auxk_alpha: 0.5,
    });
    check_output(topk.clone(), false, &dead, 12, skip);
    check_output(topk, false, &dead, 13, plain);
    let batch = Objective::BatchTopK(BatchTopK {
        k: 2,
        auxk_alpha: 0.25,
        threshold_beta: 0.999,
        threshold_start_step: 0,
    });
    check_output(batch, false, &dead_at(&[2, 3, 7, 9]), 14, skip);
    let jump = Objective::JumpRelu(JumpRelu {
        l0_coeff: 0.2,
        bandwidth: 0.4,
        init_threshold: 0.001,
    });
    check_output(jump, false, &[false; M], 15, skip);
    // Without a skip term every architecture trains as a transcoder.
    check_output(Objective::gated(0.2), false, &[false; M], 16, plain);
    check_output(
        matryoshka(2, None),
        false,
        &dead_at(&[2, 3, 7, 9]),
        21,
        plain,
    );
}

#[test]
fn sparse_dense_and_burn_engines_give_the_same_gradients() {
    let (n, d, m) = (64usize, 24usize, 96usize);
    let mut rng = Lcg(9);
    for objective in [
        Objective::relu(0.1),
        Objective::TopK(TopK {
            k: 5,
            auxk_alpha: 0.1,
        }),
        Objective::BatchTopK(BatchTopK {
            k: 5,
            auxk_alpha: 0.1,
            threshold_beta: 0.999,
            threshold_start_step: 0,
        }),
        Objective::JumpRelu(JumpRelu {
            l0_coeff: 0.1,
            bandwidth: 0.3,
            init_threshold: 0.001,
        }),
        Objective::gated(0.1),
        {
            let mut m = Matryoshka::new(5);
            m.group_fractions = vec![0.125, 0.25, 0.625];
            m.group_weights = Some(vec![1.0, 0.5, 2.0]);
            Objective::Matryoshka(m)
        },
    ] {
        let p = Params {
            d,
            d_out: d,
            m,
            w_enc: rng.vec(m * d, 0.5),
            b_enc: rng.vec(m, 0.2),
            w_dec: rng.vec(m * d, 0.5),
            b_dec: rng.vec(d, 0.2),
            // Thresholds around 0.5 (log −0.7): some codes open, some shut, some within the
            // estimator's bandwidth.
            log_threshold: if matches!(objective, Objective::JumpRelu(_)) {
                rng.vec(m, 0.5).iter().map(|v| v - 0.7).collect()
            } else {
                Vec::new()
            },
            r_mag: if matches!(objective, Objective::Gated(_)) {
                rng.vec(m, 0.2)
            } else {
                Vec::new()
            },
            b_mag: if matches!(objective, Objective::Gated(_)) {
                rng.vec(m, 0.2)
            } else {
                Vec::new()
            },
            w_skip: Vec::new(),
        };
        let x = rng.vec(n * d, 1.0);
        let dead: Vec<bool> = (0..m).map(|j| j % 3 == 0).collect();
        let run = |mode| {
            let mut g = p.zeros_like();
            let pass = loss_and_grads(
                &objective,
                &p,
                &x,
                n,
                StepInputs {
                    dead: Some(&dead),
                    apply_b_dec_to_input: true,
                    mode,
                    target: None,
                },
                &mut g,
            )
            .unwrap();
            (pass.stats.loss, g)
        };
        let (ls, gs) = run(KernelMode::Sparse);
        let (ld, gd) = run(KernelMode::Dense);
        assert!(
            gs.tensors().iter().all(|t| t.iter().all(|v| v.is_finite()))
                && gs.tensors().iter().any(|t| t.iter().any(|v| *v != 0.0)),
            "{objective:?}: the gradient should be finite and not all zero"
        );
        assert!((ls - ld).abs() < 1e-5 * (1.0 + ld.abs()));
        let same = |label: &str, g: &Params| {
            for (a, b) in g.tensors().iter().zip(gd.tensors()) {
                for (u, v) in a.iter().zip(b.iter()) {
                    assert!(
                        (u - v).abs() < 1e-4 * (1.0 + v.abs()),
                        "{label} {objective:?}: {u} vs {v}"
                    );
                }
            }
        };
        same("sparse", &gs);
        // The burn engines' dense products give the same gradient.
        for (label, choice) in common::engines().into_iter().skip(1) {
            let adam = Adam::new(&p, AdamConfig::default());
            let mut engine = choice.build(p.clone(), adam, KernelMode::Dense).unwrap();
            let pass = engine
                .forward_backward(&objective, &x, None, n, &dead, true)
                .unwrap();
            assert!(
                (pass.loss - ld).abs() < 1e-5 * (1.0 + ld.abs()),
                "{label} {objective:?}: loss {} vs {ld}",
                pass.loss
            );
            same(label, &engine.gradients().unwrap());
        }
    }
}

/// Inputs that do not fit together are typed errors, not panics or reads out of bounds: a batch
/// that is not `n` rows of `d`, a JumpReLU step without thresholds, gradients of other shapes, a
/// dead mask of the wrong length, `k` above the number of features.
#[test]
fn mismatched_inputs_are_typed_errors() {
    use prism_core::PrismError;
    let mut rng = Lcg(9);
    let inputs = |dead| StepInputs {
        dead,
        apply_b_dec_to_input: false,
        mode: KernelMode::Dense,
        target: None,
    };
    let relu = Objective::relu(0.1);
    let p = params(&mut rng, &relu);
    let x = rng.vec(N * D, 1.0);
    let mut g = p.zeros_like();
    let shape_error = |r: Result<_, PrismError>| matches!(r, Err(PrismError::Shape(_)));
    assert!(shape_error(loss_and_grads(
        &relu,
        &p,
        &x[1..],
        N,
        inputs(None),
        &mut g
    )));
    assert!(shape_error(loss_and_grads(
        &Objective::jumprelu(0.1),
        &p,
        &x,
        N,
        inputs(None),
        &mut g
    )));
    let mut small = p.zeros_like();
    small.b_enc.pop();
    assert!(shape_error(loss_and_grads(
        &relu,
        &p,
        &x,
        N,
        inputs(None),
        &mut small
    )));
    let dead = vec![false; M - 1];
    assert!(shape_error(loss_and_grads(
        &relu,
        &p,
        &x,
        N,
        inputs(Some(&dead)),
        &mut g
    )));
    let topk = Objective::topk(M + 1);
    let e = loss_and_grads(&topk, &params(&mut rng, &topk), &x, N, inputs(None), &mut g);
    assert!(matches!(e, Err(PrismError::InvalidInput(_))), "{e:?}");
    // The same inputs, fitting, pass.
    assert!(loss_and_grads(&relu, &p, &x, N, inputs(None), &mut g).is_ok());
    // A transcoder: a target of the wrong width, or none, is a shape error; a skip term under
    // an architecture that cannot train one, or an input centred by the output's bias, is
    // refused by name.
    let tc = params_for(&mut rng, &relu, Output::Transcoder { skip: true });
    let mut tg = tc.zeros_like();
    let y = rng.vec(N * D_OUT, 1.0);
    let with_target = |t: &'static [f32]| StepInputs {
        target: Some(t),
        ..inputs(None)
    };
    let y: &'static [f32] = Vec::leak(y);
    assert!(loss_and_grads(&relu, &tc, &x, N, with_target(y), &mut tg).is_ok());
    assert!(shape_error(loss_and_grads(
        &relu,
        &tc,
        &x,
        N,
        with_target(&y[1..]),
        &mut tg
    )));
    assert!(shape_error(loss_and_grads(
        &relu,
        &tc,
        &x,
        N,
        inputs(None),
        &mut tg
    )));
    let gated = Objective::gated(0.1);
    let mut gp = params_for(&mut rng, &gated, Output::Transcoder { skip: true });
    let mut gg = gp.zeros_like();
    let e = loss_and_grads(&gated, &gp, &x, N, with_target(y), &mut gg);
    assert!(
        matches!(&e, Err(PrismError::InvalidInput(m)) if m.contains("skip")),
        "{e:?}"
    );
    gp.w_skip.clear();
    let mut gg = gp.zeros_like();
    assert!(loss_and_grads(&gated, &gp, &x, N, with_target(y), &mut gg).is_ok());
    let centred = StepInputs {
        apply_b_dec_to_input: true,
        ..with_target(y)
    };
    let e = loss_and_grads(&relu, &tc, &x, N, centred, &mut tg);
    assert!(
        matches!(&e, Err(PrismError::InvalidInput(m)) if m.contains("b_dec")),
        "{e:?}"
    );
}
