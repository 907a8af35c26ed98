//! JumpReLU (Rajamanoharan et al.; dictionary_learning's `JumpReluTrainer`):
//! `f = pre · [ReLU(pre) > θ]` with a learned per-feature threshold `θ = e^{log_threshold}`,
//! loss `Σ‖x − x̂‖²/n + λ₀ · L0`; the threshold's gradient is the straight-through estimate of a
//! rectangle kernel of width ε (docs/metrics.md, "Training objectives").

use prism_core::{PrismError, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Defaults, ExportState, Exported, Extras, Objective, SparsityKnob};
use crate::Architecture;
use crate::kernel::dot;
use crate::train::burn_engine::{BurnLoss, BurnStep, LOG_THRESHOLD, Slots};
use crate::train::objective::{HostLoss, HostStep, column_sums_of_rows, for_each_entry};
use crate::train::params::Params;
use crate::train::select::{Cut, threshold_rows};

/// JumpReLU hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct JumpRelu {
    /// L0 coefficient.
    pub l0_coeff: f32,
    /// Rectangle-kernel width of the straight-through estimator (0.001).
    pub bandwidth: f32,
    /// Initial threshold (0.001).
    pub init_threshold: f32,
}

impl JumpRelu {
    /// JumpReLU with bandwidth and initial threshold 0.001.
    pub fn new(l0_coeff: f32) -> Self {
        JumpRelu {
            l0_coeff,
            bandwidth: 0.001,
            init_threshold: 0.001,
        }
    }
}

impl Objective for JumpRelu {
    fn defaults(&self, _d_sae: usize) -> Defaults {
        Defaults {
            lr: 7e-5,
            resample: None,
            sparsity_warmup_steps: 1000,
            apply_b_dec_to_input: false,
        }
    }

    fn sparsity(&mut self) -> SparsityKnob<'_> {
        SparsityKnob::Penalty(&mut self.l0_coeff)
    }

    fn validate(&self, _d_sae: usize) -> Result<()> {
        let JumpRelu {
            bandwidth,
            init_threshold,
            ..
        } = *self;
        if !(bandwidth > 0.0 && init_threshold > 0.0) {
            return Err(PrismError::InvalidInput(format!(
                "JumpReLU bandwidth ({bandwidth}) and initial threshold ({init_threshold}) must \
                 be positive"
            )));
        }
        Ok(())
    }

    fn extras(&self) -> Extras {
        Extras::Threshold(self.init_threshold)
    }

    fn host_pass(&self, s: &HostStep<'_>, grads: &mut Params) -> HostLoss {
        let (n, d, m, p) = (s.n, s.width(), s.m(), s.p);
        let JumpRelu {
            l0_coeff,
            bandwidth,
            ..
        } = *self;
        let theta: Vec<f32> = p.log_threshold.iter().map(|t| t.exp()).collect();
        let codes = threshold_rows(s.a, &p.b_enc, n, m, Cut::Above(&theta));
        let r = s.reconstruct(&codes, grads);
        let sparsity = codes.nnz() as f64 / n as f64;
        let mut ga: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n];
        for_each_entry(&codes, |row, e, j| ga[row].push((j, r.gf[e])));
        column_sums_of_rows(&ga, &mut grads.b_enc);
        // Straight-through estimates for θ over the kernel's window |ReLU(pre) − θ| < ε/2.
        let half = bandwidth / 2.0;
        let (a, g) = (s.a, &r.g);
        let window: Vec<Vec<(u32, f32)>> = (0..n)
            .into_par_iter()
            .map(|row| {
                let (gr, arow) = (&g[row * d..][..d], &a[row * m..][..m]);
                let (active, _) = codes.row(row);
                let mut out = Vec::new();
                for j in 0..m {
                    let pre = (arow[j] + p.b_enc[j]).max(0.0);
                    if (pre - theta[j]).abs() < half {
                        let df = match active.binary_search(&(j as u32)) {
                            Ok(_) => f32::NAN, // filled from gf below
                            Err(_) => dot(gr, &p.w_dec[j * d..][..d]),
                        };
                        out.push((j as u32, df));
                    }
                }
                out
            })
            .collect();
        let l0_grad = l0_coeff / n as f32;
        for (row, entries) in window.iter().enumerate() {
            let (active, _) = codes.row(row);
            for &(j, df) in entries {
                let df = if df.is_nan() {
                    let at = active.binary_search(&j).expect("active entry");
                    r.gf[codes.indptr[row] + at]
                } else {
                    df
                };
                let ju = j as usize;
                let g_theta = -(theta[ju] / bandwidth) * df - l0_grad / bandwidth;
                grads.log_threshold[ju] += g_theta * theta[ju];
            }
        }
        HostLoss {
            codes,
            ga,
            loss: r.recon + l0_coeff as f64 * sparsity,
            recon: r.recon,
            sparsity,
            aux: 0.0,
            token_sq_err: r.token_sq_err,
            min_selected: None,
        }
    }

    fn burn_pass(&self, s: &BurnStep<'_>, grads: &mut Slots) -> Result<BurnLoss> {
        let JumpRelu {
            l0_coeff,
            bandwidth,
            ..
        } = *self;
        let nf = s.n as f32;
        let theta = s.p(LOG_THRESHOLD).exp();
        let mask = (s.pre.clone() - theta.clone())
            .greater_elem(0.0)
            .bool_and(s.positive.clone())
            .float();
        let f = s.pre.clone() * mask.clone();
        let r = s.reconstruct(&f)?;
        let sparsity = s.scalar(mask.clone().sum())? / s.n as f64;
        let loss = r.recon + l0_coeff as f64 * sparsity;
        // Straight-through estimates for θ over the window |ReLU(pre) − θ| < ε/2.
        let window = (s.pre.clone().clamp_min(0.0) - theta.clone())
            .abs()
            .lower_elem(bandwidth / 2.0)
            .float();
        let per_entry = (r.gf.clone() * theta.clone()).mul_scalar(-1.0 / bandwidth)
            - l0_coeff / (nf * bandwidth);
        grads[LOG_THRESHOLD] = Some((per_entry * window).sum_dim(0) * theta);
        let ga = r.gf.clone() * mask;
        Ok(r.finish(ga, loss, sparsity, 0.0))
    }

    fn export(&self, p: &Params, state: &ExportState<'_>) -> Result<Exported> {
        let c = state.input_scale;
        Ok(Exported {
            architecture: Architecture::JumpRelu {
                threshold: state.row(p.log_threshold.iter().map(|t| t.exp() / c).collect()),
            },
            cfg: Vec::new(),
        })
    }
}
