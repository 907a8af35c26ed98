//! Matryoshka BatchTopK (Bussmann et al., Nabeshima; dictionary_learning's
//! `MatryoshkaBatchTopKTrainer`, SAELens' `matryoshka_batchtopk`): BatchTopK codes, and the
//! dictionary split into nested groups `[0, s₁) ⊂ [0, s₂) ⊂ … ⊂ [0, m)`, each prefix
//! reconstructing the input on its own: `x̂ₜ = b_dec + Σ_{j < sₜ} f_j W_dec_j`, loss
//! `(1/G) Σₜ wₜ Σ‖x − x̂ₜ‖²/n + α·AuxK` (AuxK on the whole dictionary's residual). Early
//! features are pushed to carry the most general directions. Saved like BatchTopK: a JumpReLU
//! dictionary with the tracked threshold on every feature, the prefix widths in `cfg.json`.
//!
//! The gradient: `∂L/∂x̂ₜ = gₜ = 2wₜ(x̂ₜ − x)/(G·n)`; feature `j` of group `t` appears in every
//! prefix from `t` on, so its code's gradient is `Sₜ · W_dec_j` with `Sₜ = Σ_{i ≥ t} gᵢ`, its
//! decoder row's `Σ_r f_rj Sₜ,r`, and `b_dec`'s `Σ_r S₀,r`.

use burn::tensor::Tensor;
use prism_core::{PrismError, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::auxk::{burn_auxk, host_auxk};
use super::batch_topk::{burn_batch_selection, export_thresholded};
use super::{
    BatchTopK, Defaults, ExportState, Exported, Objective, SparsityKnob, ThresholdTracking,
};
use crate::kernel::{Csr, decode_into, dot, transpose_times_into};
use crate::train::burn_engine::{B_DEC, BurnLoss, BurnRecon, BurnStep, Slots, W_DEC};
use crate::train::objective::{
    HostLoss, HostStep, column_sums_into, column_sums_of_rows, for_each_entry, squared_error_grad,
};
use crate::train::params::Params;
use crate::train::select::batch_top_k;

/// Matryoshka BatchTopK hyper-parameters: BatchTopK's, and the groups.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Matryoshka {
    /// The selection, AuxK and threshold tracking, as BatchTopK's.
    #[serde(flatten)]
    pub batch_topk: BatchTopK,
    /// Each group's share of the dictionary (summing to 1): every group but the last has
    /// `⌊f·d_sae⌋` features, the last the rest (dictionary_learning's rule).
    pub group_fractions: Vec<f64>,
    /// Each prefix's weight in the loss; `None` for `1/G` each.
    pub group_weights: Option<Vec<f32>>,
}

impl Matryoshka {
    /// Matryoshka BatchTopK with groups of 1/32, 1/16, 1/8, 1/4 and the remaining 17/32 of the
    /// dictionary, equal weights, and BatchTopK's AuxK and threshold tracking.
    pub fn new(k: usize) -> Self {
        Matryoshka {
            batch_topk: BatchTopK::new(k),
            group_fractions: vec![1.0 / 32.0, 1.0 / 16.0, 1.0 / 8.0, 1.0 / 4.0, 17.0 / 32.0],
            group_weights: None,
        }
    }

    /// The groups' sizes for a dictionary of `d_sae` features.
    ///
    /// ```
    /// use prism_sae::train::Matryoshka;
    /// let mut m = Matryoshka::new(4);
    /// m.group_fractions = vec![0.1, 0.3, 0.6];
    /// assert_eq!(m.group_sizes(50), [5, 15, 30]);
    /// ```
    pub fn group_sizes(&self, d_sae: usize) -> Vec<usize> {
        let g = self.group_fractions.len();
        let mut sizes: Vec<usize> = self.group_fractions[..g.saturating_sub(1)]
            .iter()
            .map(|f| (f * d_sae as f64) as usize)
            .collect();
        let used: usize = sizes.iter().sum();
        sizes.push(d_sae.saturating_sub(used));
        sizes
    }

    /// Where each group ends: the nested prefixes' widths (SAELens' `matryoshka_widths`).
    pub fn widths(&self, d_sae: usize) -> Vec<usize> {
        self.group_sizes(d_sae)
            .iter()
            .scan(0, |end, s| {
                *end += s;
                Some(*end)
            })
            .collect()
    }

    /// Each prefix's weight divided by the number of groups (the loss averages the weighted
    /// terms, as dictionary_learning does).
    fn scaled_weights(&self) -> Vec<f32> {
        let g = self.group_fractions.len();
        match &self.group_weights {
            Some(w) => w.iter().map(|w| w / g as f32).collect(),
            None => vec![1.0 / g as f32 / g as f32; g],
        }
    }

    /// `(start, end)` of each group.
    fn bounds(&self, d_sae: usize) -> Vec<(usize, usize)> {
        let widths = self.widths(d_sae);
        let starts = std::iter::once(0).chain(widths.iter().copied());
        starts.zip(widths.iter().copied()).collect()
    }
}

impl Objective for Matryoshka {
    fn defaults(&self, d_sae: usize) -> Defaults {
        self.batch_topk.defaults(d_sae)
    }

    fn fit_to_steps(&mut self, steps: u64) {
        self.batch_topk.fit_to_steps(steps);
    }

    fn trains_skip(&self) -> bool {
        false
    }

    fn sparsity(&mut self) -> SparsityKnob<'_> {
        self.batch_topk.sparsity()
    }

    fn validate(&self, d_sae: usize) -> Result<()> {
        let bad = |m: String| Err(PrismError::InvalidInput(m));
        let f = &self.group_fractions;
        let total: f64 = f.iter().sum();
        if f.is_empty() || f.iter().any(|v| v.is_nan() || *v <= 0.0) || (total - 1.0).abs() > 1e-9 {
            return bad(format!(
                "Matryoshka group fractions {f:?} must be positive and sum to 1"
            ));
        }
        let sizes = self.group_sizes(d_sae);
        if sizes.contains(&0) {
            return bad(format!(
                "Matryoshka groups {sizes:?} of a {d_sae}-feature dictionary must all be non-empty"
            ));
        }
        if let Some(w) = &self.group_weights
            && (w.len() != f.len() || w.iter().any(|v| !(v.is_finite() && *v >= 0.0)))
        {
            return bad(format!(
                "Matryoshka group weights {w:?}: one finite weight ≥ 0 per group ({})",
                f.len()
            ));
        }
        Ok(())
    }

    fn auxk(&self) -> bool {
        true
    }

    fn threshold_tracking(&self) -> Option<ThresholdTracking> {
        self.batch_topk.threshold_tracking()
    }

    fn host_pass(&self, s: &HostStep<'_>, grads: &mut Params) -> HostLoss {
        let (n, d, m, p) = (s.n, s.width(), s.m(), s.p);
        let (codes, cut) = batch_top_k(s.a, &p.b_enc, n, m, self.batch_topk.k * n);
        let bounds = self.bounds(m);
        let weights = self.scaled_weights();
        // The codes of each group, and each prefix's reconstruction, error and gradient.
        let parts: Vec<Csr> = bounds
            .iter()
            .map(|&(lo, hi)| {
                let rows = (0..n)
                    .map(|r| {
                        let (idx, val) = codes.row(r);
                        idx.iter()
                            .zip(val)
                            .filter(|(j, _)| (lo..hi).contains(&(**j as usize)))
                            .map(|(&j, &v)| (j, v))
                            .collect()
                    })
                    .collect();
                Csr::from_rows(m, rows)
            })
            .collect();
        let mut x_hat: Vec<f32> = (0..n).flat_map(|_| p.b_dec.iter().copied()).collect();
        let mut loss = 0.0;
        let mut last = (0.0, Vec::new());
        let mut g_prefix = Vec::with_capacity(parts.len());
        for (part, &w) in parts.iter().zip(&weights) {
            decode_into(part, &p.w_dec, d, &mut x_hat, s.mode);
            let (l, per_token, g) = squared_error_grad(s.y, &x_hat, n, d, w);
            loss += w as f64 * l;
            last = (l, per_token);
            g_prefix.push(g);
        }
        // Suffix sums: Sₜ = Σ_{i ≥ t} gᵢ, in place.
        for t in (0..g_prefix.len().saturating_sub(1)).rev() {
            let (head, tail) = g_prefix.split_at_mut(t + 1);
            head[t].iter_mut().zip(&tail[0]).for_each(|(a, b)| *a += b);
        }
        column_sums_into(&g_prefix[0], d, &mut grads.b_dec);
        for (part, suffix) in parts.iter().zip(&g_prefix) {
            transpose_times_into(part, suffix, d, &mut grads.w_dec, s.mode);
        }
        let group_of = |j: usize| bounds.partition_point(|&(_, hi)| hi <= j);
        let gf: Vec<f32> = (0..n)
            .into_par_iter()
            .flat_map_iter(|r| {
                let (idx, _) = codes.row(r);
                let g_prefix = &g_prefix;
                idx.iter().map(move |&j| {
                    let j = j as usize;
                    dot(&g_prefix[group_of(j)][r * d..][..d], &p.w_dec[j * d..][..d])
                })
            })
            .collect();
        let mut ga: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n];
        for_each_entry(&codes, |row, e, j| ga[row].push((j, gf[e])));
        let aux = host_auxk(
            s,
            &codes.idx,
            &x_hat,
            self.batch_topk.auxk_alpha,
            grads,
            &mut ga,
        );
        column_sums_of_rows(&ga, &mut grads.b_enc);
        let (recon, token_sq_err) = last;
        HostLoss {
            codes,
            ga,
            loss: loss + self.batch_topk.auxk_alpha as f64 * aux,
            recon,
            sparsity: 0.0,
            aux,
            token_sq_err,
            min_selected: cut,
        }
    }

    fn burn_pass(&self, s: &BurnStep<'_>, _grads: &mut Slots) -> Result<BurnLoss> {
        let (n, d, m) = (s.n, s.d, s.m);
        let (selected, smallest) = burn_batch_selection(s, self.batch_topk.k)?;
        let mask = selected.float();
        let f = s.pre.clone() * mask.clone();
        let w_dec = s.p(W_DEC);
        let bounds = self.bounds(m);
        let weights = self.scaled_weights();
        let codes_of = |(lo, hi): (usize, usize)| f.clone().slice([0..n, lo..hi]);
        let rows_of = |(lo, hi): (usize, usize)| w_dec.clone().slice([lo..hi, 0..d]);
        let mut x_hat = s.p(B_DEC).expand([n, d]);
        let mut loss = 0.0;
        let mut g_prefix = Vec::with_capacity(bounds.len());
        let mut last = (0.0, Vec::new());
        for (&b, &w) in bounds.iter().zip(&weights) {
            x_hat = x_hat + codes_of(b).matmul(rows_of(b));
            let e = x_hat.clone() - s.y.clone();
            let per_token = s.readback(e.clone().square().sum_dim(1))?;
            let l = per_token.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
            loss += w as f64 * l;
            last = (l, per_token);
            g_prefix.push(e.mul_scalar(2.0 * w / n as f32));
        }
        let mut suffix: Option<Tensor<2>> = None;
        let mut gf_parts = Vec::with_capacity(bounds.len());
        let mut g_w_dec_parts = Vec::with_capacity(bounds.len());
        for (&b, g) in bounds.iter().zip(g_prefix).rev() {
            let sum = match suffix {
                Some(t) => t + g,
                None => g,
            };
            gf_parts.push(sum.clone().matmul(rows_of(b).transpose()));
            g_w_dec_parts.push(codes_of(b).transpose().matmul(sum.clone()));
            suffix = Some(sum);
        }
        gf_parts.reverse();
        g_w_dec_parts.reverse();
        let suffix = suffix.expect("at least one group");
        let (fired, l0) = s.fired_and_l0(&f)?;
        let (recon, token_sq_err) = last;
        let mut r = BurnRecon {
            x_hat,
            recon,
            token_sq_err,
            g_b_dec: suffix.sum_dim(0),
            g_w_dec: Tensor::cat(g_w_dec_parts, 0),
            // Matryoshka trains no skip term (`trains_skip`).
            g_w_skip: None,
            gf: Tensor::cat(gf_parts, 1),
            fired,
            l0,
        };
        let ga = r.gf.clone() * mask;
        let (ga, aux) = burn_auxk(s, &mut r, ga, self.batch_topk.auxk_alpha)?;
        let mut out = r.finish(ga, loss + self.batch_topk.auxk_alpha as f64 * aux, 0.0, aux);
        out.min_selected = smallest;
        Ok(out)
    }

    fn export(&self, p: &Params, state: &ExportState<'_>) -> Result<Exported> {
        Ok(Exported {
            architecture: export_thresholded(p.m, self.batch_topk.threshold_start_step, state)?,
            cfg: vec![
                ("batch_k", serde_json::json!(self.batch_topk.k)),
                ("matryoshka_widths", serde_json::json!(self.widths(p.m))),
            ],
        })
    }
}
