//! AuxK (Gao et al., as dictionary_learning implements it), shared by the TopK family: the
//! `k_aux = min(d/2, dead)` largest pre-activations of latents that are dead (and did not fire
//! in this batch) reconstruct the main reconstruction's residual, held constant;
//! `aux = ‖residual − f_aux W_dec‖² / Σ‖residual − mean(residual)‖²` (both over the batch),
//! added to the loss with weight α. No `b_dec` in the auxiliary reconstruction.

use burn::tensor::Tensor;
use prism_core::Result;

use crate::kernel::{decode_into, entry_dots, transpose_times_into};
use crate::train::burn_engine::{BurnRecon, BurnStep, W_DEC};
use crate::train::objective::{HostStep, column_sums_into, for_each_entry, squared_error_grad};
use crate::train::params::Params;
use crate::train::select::top_k_rows;

/// AuxK's term on the host, its gradient added to `grads.w_dec` and (per code entry) to `ga`;
/// returns `aux` before α (0 without dead latents). `fired` holds the codes' columns.
pub(crate) fn host_auxk(
    s: &HostStep<'_>,
    fired: &[u32],
    x_hat: &[f32],
    alpha: f32,
    grads: &mut Params,
    ga: &mut [Vec<(u32, f32)>],
) -> f64 {
    let (n, d, m, p) = (s.n, s.width(), s.m(), s.p);
    // As in dictionary_learning, a latent that fires in this batch is not dead.
    let dead: Option<Vec<bool>> = s.dead.map(|dd| {
        let mut dd = dd.to_vec();
        for &j in fired {
            dd[j as usize] = false;
        }
        dd
    });
    let Some(dead) = dead.as_deref().filter(|dd| dd.iter().any(|&v| v)) else {
        return 0.0;
    };
    let k_aux = (d / 2).min(dead.iter().filter(|&&v| v).count());
    let aux_codes = top_k_rows(s.a, &p.b_enc, n, m, k_aux, Some(dead));
    if aux_codes.nnz() == 0 {
        return 0.0;
    }
    let mut x_aux = vec![0f32; n * d];
    decode_into(&aux_codes, &p.w_dec, d, &mut x_aux, s.mode);
    // Target: the main reconstruction's residual, held constant.
    let residual: Vec<f32> = s.y.iter().zip(x_hat).map(|(x, h)| x - h).collect();
    let mut mean = vec![0f32; d];
    column_sums_into(&residual, d, &mut mean);
    let denom = residual
        .chunks(d)
        .map(|r| {
            r.iter()
                .zip(&mean)
                .map(|(v, s)| {
                    let c = (v - s / n as f32) as f64;
                    c * c
                })
                .sum::<f64>()
        })
        .sum::<f64>()
        / n as f64;
    if denom.is_nan() || denom <= 0.0 {
        return 0.0;
    }
    let scale = alpha as f64 / denom;
    let (l2_aux, _, g_aux) = squared_error_grad(&residual, &x_aux, n, d, scale as f32);
    transpose_times_into(&aux_codes, &g_aux, d, &mut grads.w_dec, s.mode);
    let g_aux_codes = entry_dots(&aux_codes, &g_aux, &p.w_dec, d, s.mode);
    for_each_entry(&aux_codes, |r, e, j| ga[r].push((j, g_aux_codes[e])));
    l2_aux / denom
}

/// AuxK on burn: returns `ga` with AuxK's gradient added, and `aux` before α; adds its decoder
/// gradient to `r.g_w_dec`.
pub(crate) fn burn_auxk(
    s: &BurnStep<'_>,
    r: &mut BurnRecon,
    ga: Tensor<2>,
    alpha: f32,
) -> Result<(Tensor<2>, f64)> {
    let (n, d, m) = (s.n, s.d, s.m);
    // As in dictionary_learning, a latent that fires in this batch is not dead.
    let dead_now: Vec<f32> = s
        .dead
        .iter()
        .zip(&r.fired)
        .map(|(&dd, &fi)| if dd && !fi { 1.0 } else { 0.0 })
        .collect();
    let count = dead_now.iter().filter(|&&v| v > 0.0).count();
    if count == 0 {
        return Ok((ga, 0.0));
    }
    let k_aux = (d / 2).min(count);
    // Live features sink far below zero, so the top k_aux are dead ones and the positivity
    // test drops the live ones.
    let shift = (s.upload(dead_now, [1, m]) - 1.0).mul_scalar(1e30);
    let pre_dead = s.pre.clone() + shift;
    let cut = crate::train::burn_engine::cut_for_top(pre_dead.clone(), k_aux);
    let aux_mask = (pre_dead.clone() - cut)
        .greater_equal_elem(0.0)
        .bool_and(pre_dead.greater_elem(0.0))
        .float();
    let selected = s.scalar(aux_mask.clone().sum())?;
    if selected.is_nan() || selected <= 0.0 {
        return Ok((ga, 0.0));
    }
    let residual = s.y.clone() - r.x_hat.clone();
    let mean = residual.clone().mean_dim(0);
    let denom = s.scalar((residual.clone() - mean).square().sum())? / n as f64;
    if denom.is_nan() || denom <= 0.0 {
        return Ok((ga, 0.0));
    }
    let w_dec = s.p(W_DEC);
    let aux_codes = s.pre.clone() * aux_mask.clone();
    let diff = aux_codes.clone().matmul(w_dec.clone()) - residual;
    let aux = s.scalar(diff.clone().square().sum())? / n as f64 / denom;
    let g_aux = diff.mul_scalar((2.0 * alpha as f64 / denom) as f32 / n as f32);
    r.g_w_dec = r.g_w_dec.clone() + aux_codes.transpose().matmul(g_aux.clone());
    let ga = ga + g_aux.matmul(w_dec.transpose()) * aux_mask;
    Ok((ga, aux))
}
