//! Gated SAE (Rajamanoharan et al.; dictionary_learning's `GatedSAETrainer`): a gate
//! `π = x_in W_encᵀ + b_gate` decides which features are on, a magnitude path
//! `ReLU(e^{r_mag} ⊙ (x_in W_encᵀ) + b_mag)` sets their values; loss
//! `Σ‖x − x̂‖²/n + λ Σ ReLU(π)/n + Σ‖x − x̂_gate‖²/n`, the last through a detached decoder.

use prism_core::Result;
use serde::{Deserialize, Serialize};

use super::{Defaults, ExportState, Exported, Extras, Objective, SparsityKnob};
use crate::Architecture;
use crate::kernel::{decode_into, entry_dots};
use crate::train::burn_engine::{B_DEC, B_ENC, B_MAG, BurnLoss, BurnStep, R_MAG, Slots, W_DEC};
use crate::train::objective::{HostLoss, HostStep, for_each_entry, squared_error_grad};
use crate::train::params::Params;
use crate::train::select::{Cut, threshold_rows};

/// Gated hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gated {
    /// L1 coefficient on the gate.
    pub l1: f32,
}

impl Objective for Gated {
    fn defaults(&self, _d_sae: usize) -> Defaults {
        Defaults {
            lr: 1e-3,
            resample: None,
            sparsity_warmup_steps: 1000,
            apply_b_dec_to_input: true,
        }
    }

    fn trains_skip(&self) -> bool {
        false
    }

    fn sparsity(&mut self) -> SparsityKnob<'_> {
        SparsityKnob::Penalty(&mut self.l1)
    }

    fn extras(&self) -> Extras {
        Extras::Magnitude
    }

    fn host_pass(&self, s: &HostStep<'_>, grads: &mut Params) -> HostLoss {
        let (n, d, m, p, a) = (s.n, s.width(), s.m(), s.p, s.a);
        let gate = threshold_rows(a, &p.b_enc, n, m, Cut::AtLeast(0.0));
        let mut mags = Vec::with_capacity(gate.nnz());
        for_each_entry(&gate, |r, _, j| {
            let j = j as usize;
            mags.push((p.r_mag[j].exp() * a[r * m + j] + p.b_mag[j]).max(0.0));
        });
        let codes = gate.with_values(mags);
        let r = s.reconstruct(&codes, grads);
        let sparsity = gate.val.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let mut x_gate: Vec<f32> = (0..n).flat_map(|_| p.b_dec.iter().copied()).collect();
        decode_into(&gate, &p.w_dec, d, &mut x_gate, s.mode);
        let (aux, _, g_gate) = squared_error_grad(s.y, &x_gate, n, d, 1.0);
        let loss = r.recon + self.l1 as f64 * sparsity + aux;
        // The aux reconstruction uses a detached decoder: no W_dec / b_dec gradient from it.
        let gg = entry_dots(&gate, &g_gate, &p.w_dec, d, s.mode);
        let add = self.l1 / n as f32;
        let mut ga: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n];
        for_each_entry(&codes, |row, e, j| {
            let ju = j as usize;
            let scale = p.r_mag[ju].exp();
            let a_rj = a[row * m + ju];
            let d_mag = if codes.val[e] > 0.0 { r.gf[e] } else { 0.0 };
            let d_gate = gg[e] + add;
            grads.b_mag[ju] += d_mag;
            grads.b_enc[ju] += d_gate;
            grads.r_mag[ju] += d_mag * scale * a_rj;
            ga[row].push((j, d_mag * scale + d_gate));
        });
        HostLoss {
            codes,
            ga,
            loss,
            recon: r.recon,
            sparsity,
            aux,
            token_sq_err: r.token_sq_err,
            min_selected: None,
        }
    }

    fn burn_pass(&self, s: &BurnStep<'_>, grads: &mut Slots) -> Result<BurnLoss> {
        let nf = s.n as f32;
        let mask = s.positive.clone().float();
        let scale = s.p(R_MAG).exp();
        let f = (s.a.clone() * scale.clone() + s.p(B_MAG)).clamp_min(0.0) * mask.clone();
        let r = s.reconstruct(&f)?;
        let w_dec = s.p(W_DEC);
        let gate = s.pre.clone() * mask.clone();
        let sparsity = s.scalar(gate.clone().sum())? / s.n as f64;
        let eg = gate.matmul(w_dec.clone()) + s.p(B_DEC) - s.y.clone();
        let aux = s.scalar(eg.clone().square().sum())? / s.n as f64;
        let loss = r.recon + self.l1 as f64 * sparsity + aux;
        // The aux reconstruction uses a detached decoder: no decoder gradient from it.
        let gg = eg.mul_scalar(2.0 / nf).matmul(w_dec.transpose());
        let d_mag = r.gf.clone() * f.greater_elem(0.0).float();
        let d_gate = (gg + self.l1 / nf) * mask;
        grads[B_MAG] = Some(d_mag.clone().sum_dim(0));
        grads[R_MAG] = Some((d_mag.clone() * scale.clone() * s.a.clone()).sum_dim(0));
        grads[B_ENC] = Some(d_gate.clone().sum_dim(0));
        let ga = d_mag * scale + d_gate;
        Ok(r.finish(ga, loss, sparsity, aux))
    }

    fn export(&self, p: &Params, state: &ExportState<'_>) -> Result<Exported> {
        let c = state.input_scale;
        Ok(Exported {
            architecture: Architecture::Gated {
                r_mag: state.row(p.r_mag.clone()),
                b_mag: state.row(p.b_mag.iter().map(|x| x / c).collect()),
            },
            cfg: Vec::new(),
        })
    }
}
