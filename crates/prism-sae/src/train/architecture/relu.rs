//! ReLU codes with an L1 penalty (dictionary_learning's `StandardTrainer`):
//! `f = ReLU(x_in W_encᵀ + b_enc)`, loss `Σ‖x − x̂‖²/n + λ Σ f / n`.

use prism_core::Result;
use serde::{Deserialize, Serialize};

use super::{Defaults, ExportState, Exported, Objective, SparsityKnob};
use crate::Architecture;
use crate::train::burn_engine::{BurnLoss, BurnStep, Slots};
use crate::train::config::ResampleConfig;
use crate::train::objective::{HostLoss, HostStep, column_sums_of_rows, for_each_entry};
use crate::train::params::Params;
use crate::train::select::{Cut, threshold_rows};

/// ReLU + L1 hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Relu {
    /// L1 coefficient λ.
    pub l1: f32,
}

impl Objective for Relu {
    fn defaults(&self, _d_sae: usize) -> Defaults {
        Defaults {
            lr: 1e-3,
            resample: Some(ResampleConfig {
                every: 25_000,
                window: 12_500,
            }),
            sparsity_warmup_steps: 1000,
            apply_b_dec_to_input: true,
        }
    }

    fn sparsity(&mut self) -> SparsityKnob<'_> {
        SparsityKnob::Penalty(&mut self.l1)
    }

    fn fits_initial_scale(&self) -> bool {
        true
    }

    fn host_pass(&self, s: &HostStep<'_>, grads: &mut Params) -> HostLoss {
        let (n, m) = (s.n, s.m());
        let codes = threshold_rows(s.a, &s.p.b_enc, n, m, Cut::AtLeast(0.0));
        let r = s.reconstruct(&codes, grads);
        let sparsity = codes.val.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let add = self.l1 / n as f32;
        let mut ga: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n];
        for_each_entry(&codes, |row, e, j| ga[row].push((j, r.gf[e] + add)));
        column_sums_of_rows(&ga, &mut grads.b_enc);
        HostLoss {
            codes,
            ga,
            loss: r.recon + self.l1 as f64 * sparsity,
            recon: r.recon,
            sparsity,
            aux: 0.0,
            token_sq_err: r.token_sq_err,
            min_selected: None,
        }
    }

    fn burn_pass(&self, s: &BurnStep<'_>, _grads: &mut Slots) -> Result<BurnLoss> {
        let mask = s.positive.clone().float();
        let f = s.pre.clone() * mask.clone();
        let r = s.reconstruct(&f)?;
        let sparsity = s.scalar(f.sum())? / s.n as f64;
        let loss = r.recon + self.l1 as f64 * sparsity;
        let ga = (r.gf.clone() + self.l1 / s.n as f32) * mask;
        Ok(r.finish(ga, loss, sparsity, 0.0))
    }

    fn export(&self, _p: &Params, _state: &ExportState<'_>) -> Result<Exported> {
        Ok(Exported {
            architecture: Architecture::Standard,
            cfg: Vec::new(),
        })
    }
}
