//! Each architecture's loss and its hand-written gradient, on the host kernels.
//!
//! Notation: `x` `[n, d]` inputs, `x_in = x − b_dec` (when the bias is applied to the input),
//! `a = x_in · W_encᵀ` `[n, m]` (the one dense product), codes `f` sparse, `x̂ = f · W_dec + b_dec`,
//! reconstruction loss `Σ‖x − x̂‖² / n` (dictionary_learning's `recon_loss`).

use std::borrow::Cow;

use prism_core::{PrismError, Result};
use rayon::prelude::*;

use crate::kernel::{Csr, KernelMode, View, decode_into, dot, entry_dots, transpose_times_into};

use super::config::ArchitectureConfig;
use super::engine::StepStats;
use super::params::{PARAM_NAMES, Params};

/// What one forward/backward pass on the host kernels measured, and the codes.
#[derive(Clone, Debug)]
pub struct Pass {
    /// The measurements every engine reports.
    pub stats: StepStats,
    /// The codes.
    pub codes: Csr,
}

/// Per-step inputs besides the parameters.
#[derive(Clone, Copy, Debug)]
pub struct StepInputs<'a> {
    /// Features counted dead for AuxK (TopK/BatchTopK) before this batch (those that fire in
    /// it are not); `None` or all false for no AuxK.
    pub dead: Option<&'a [bool]>,
    /// Whether `b_dec` is subtracted from the input before encoding.
    pub apply_b_dec_to_input: bool,
    /// Which kernel implementation the code products use.
    pub mode: KernelMode,
}

/// Checks that the inputs of [`loss_and_grads`] fit together.
fn check_inputs(
    objective: &ArchitectureConfig,
    p: &Params,
    x: &[f32],
    n: usize,
    inputs: &StepInputs<'_>,
    grads: &Params,
) -> Result<()> {
    let (d, m) = (p.d, p.m);
    let shape = |m: String| Err(PrismError::Shape(m));
    if Some(x.len()) != n.checked_mul(d) {
        return shape(format!(
            "a batch of {} values is not {n} rows of {d}",
            x.len()
        ));
    }
    let per_feature = match objective {
        ArchitectureConfig::JumpRelu { .. } => [m, 0, 0],
        ArchitectureConfig::Gated { .. } => [0, m, m],
        _ => [p.log_threshold.len(), p.r_mag.len(), p.b_mag.len()],
    };
    let want = [
        m * d,
        m,
        m * d,
        d,
        per_feature[0],
        per_feature[1],
        per_feature[2],
    ];
    for (name, (have, want)) in PARAM_NAMES.iter().zip(p.tensors().iter().zip(want)) {
        if have.len() != want {
            return shape(format!(
                "parameter `{name}` has {} values; a {} dictionary {d} → {m} needs {want}",
                have.len(),
                objective.name()
            ));
        }
    }
    if grads.d != d
        || grads.m != m
        || grads
            .tensors()
            .iter()
            .zip(p.tensors())
            .any(|(g, v)| g.len() != v.len())
    {
        return shape("the gradients' shapes differ from the parameters'".into());
    }
    if let Some(dead) = inputs.dead
        && dead.len() != m
    {
        return shape(format!(
            "{} dead-feature flags for {m} features",
            dead.len()
        ));
    }
    if let ArchitectureConfig::TopK { k, .. } | ArchitectureConfig::BatchTopK { k, .. } = objective
        && !(1..=m).contains(k)
    {
        return Err(PrismError::InvalidInput(format!(
            "k = {k} must be in 1..={m}"
        )));
    }
    Ok(())
}

/// What the encoder reads: the rows of `x` less `b_dec` when the bias applies to the input,
/// else `x` itself.
pub(crate) fn encoder_input<'a>(x: &'a [f32], b_dec: &[f32], apply_b_dec: bool) -> Cow<'a, [f32]> {
    if apply_b_dec {
        Cow::Owned(
            x.par_chunks(b_dec.len())
                .flat_map_iter(|r| r.iter().zip(b_dec).map(|(x, b)| x - b))
                .collect(),
        )
    } else {
        Cow::Borrowed(x)
    }
}

/// Loss at `x` (`[n, d]`, row-major) and its gradient, written into `grads` (overwritten).
///
/// Inputs that do not fit together — a batch that is not `n` rows of `d`, parameters or
/// gradients of the wrong sizes for the architecture, a dead-feature mask that is not one flag
/// per feature, a `k` outside `1..=m` — are a [`PrismError::Shape`] / `InvalidInput`.
pub fn loss_and_grads(
    objective: &ArchitectureConfig,
    p: &Params,
    x: &[f32],
    n: usize,
    inputs: StepInputs<'_>,
    grads: &mut Params,
) -> Result<Pass> {
    check_inputs(objective, p, x, n, &inputs, grads)?;
    let (d, m) = (p.d, p.m);
    grads.fill_zero();
    let x_in = encoder_input(x, &p.b_dec, inputs.apply_b_dec_to_input);
    // The pre-activations, into a buffer the GEMM writes whole (not zeroed first: 134 MB at the
    // benchmark's sizes).
    let a = prism_core::dense::matmul_new(View::new(&x_in, n, d), View::new(&p.w_enc, m, d).t());

    // Codes, and for Gated the gate pre-activations on the same pattern.
    let (codes, gate, min_selected) = encode_train(objective, p, &a, n);

    // Main reconstruction.
    let mut x_hat: Vec<f32> = (0..n).flat_map(|_| p.b_dec.iter().copied()).collect();
    decode_into(&codes, &p.w_dec, d, &mut x_hat, inputs.mode);
    let (recon, token_sq_err, g) = squared_error_grad(x, &x_hat, n, d, 1.0);
    column_sums_into(&g, d, &mut grads.b_dec);
    transpose_times_into(&codes, &g, d, &mut grads.w_dec, inputs.mode);
    let gf = entry_dots(&codes, &g, &p.w_dec, d, inputs.mode);

    let mut sparsity = 0.0;
    let mut aux = 0.0;
    let mut loss;
    // Gradient with respect to `a`, entry by entry, as per-row lists.
    let mut ga_rows: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n];
    match *objective {
        ArchitectureConfig::Relu { l1 } => {
            sparsity = codes.val.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
            loss = recon + l1 as f64 * sparsity;
            let add = l1 / n as f32;
            for_each_entry(&codes, |r, e, j| ga_rows[r].push((j, gf[e] + add)));
            column_sums_of_rows(&ga_rows, &mut grads.b_enc);
        }
        ArchitectureConfig::TopK { auxk_alpha, .. }
        | ArchitectureConfig::BatchTopK { auxk_alpha, .. } => {
            loss = recon;
            for_each_entry(&codes, |r, e, j| ga_rows[r].push((j, gf[e])));
            // As in dictionary_learning, a latent that fires in this batch is not dead.
            let dead: Option<Vec<bool>> = inputs.dead.map(|dd| {
                let mut dd = dd.to_vec();
                for &j in &codes.idx {
                    dd[j as usize] = false;
                }
                dd
            });
            if let Some(dead) = dead.as_deref().filter(|dd| dd.iter().any(|&v| v)) {
                let k_aux = (d / 2).min(dead.iter().filter(|&&v| v).count());
                let aux_codes = top_k_rows(&a, &p.b_enc, n, m, k_aux, Some(dead));
                if aux_codes.nnz() > 0 {
                    let mut x_aux = vec![0f32; n * d];
                    decode_into(&aux_codes, &p.w_dec, d, &mut x_aux, inputs.mode);
                    // Target: the main reconstruction's residual, held constant.
                    let residual: Vec<f32> = x.iter().zip(&x_hat).map(|(x, h)| x - h).collect();
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
                    if denom > 0.0 {
                        let scale = auxk_alpha as f64 / denom;
                        let (l2_aux, _, g_aux) =
                            squared_error_grad(&residual, &x_aux, n, d, scale as f32);
                        aux = l2_aux / denom;
                        loss += auxk_alpha as f64 * aux;
                        transpose_times_into(&aux_codes, &g_aux, d, &mut grads.w_dec, inputs.mode);
                        let g_aux_codes = entry_dots(&aux_codes, &g_aux, &p.w_dec, d, inputs.mode);
                        for_each_entry(&aux_codes, |r, e, j| ga_rows[r].push((j, g_aux_codes[e])));
                    }
                }
            }
            column_sums_of_rows(&ga_rows, &mut grads.b_enc);
        }
        ArchitectureConfig::JumpRelu {
            l0_coeff,
            bandwidth,
            ..
        } => {
            sparsity = codes.nnz() as f64 / n as f64;
            loss = recon + l0_coeff as f64 * sparsity;
            for_each_entry(&codes, |r, e, j| ga_rows[r].push((j, gf[e])));
            column_sums_of_rows(&ga_rows, &mut grads.b_enc);
            // Straight-through estimates for θ over the kernel's window |ReLU(pre) − θ| < ε/2.
            let theta: Vec<f32> = p.log_threshold.iter().map(|t| t.exp()).collect();
            let half = bandwidth / 2.0;
            let window: Vec<Vec<(u32, f32)>> = (0..n)
                .into_par_iter()
                .map(|r| {
                    let (gr, arow) = (&g[r * d..][..d], &a[r * m..][..m]);
                    let (active, _) = codes.row(r);
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
            for (r, entries) in window.iter().enumerate() {
                let (active, _) = codes.row(r);
                for &(j, df) in entries {
                    let df = if df.is_nan() {
                        let at = active.binary_search(&j).expect("active entry");
                        gf[codes.indptr[r] + at]
                    } else {
                        df
                    };
                    let ju = j as usize;
                    let g_theta = -(theta[ju] / bandwidth) * df - l0_grad / bandwidth;
                    grads.log_threshold[ju] += g_theta * theta[ju];
                }
            }
        }
        ArchitectureConfig::Gated { l1 } => {
            let gate = gate.expect("gated codes carry gate values");
            sparsity = gate.val.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
            let mut x_gate: Vec<f32> = (0..n).flat_map(|_| p.b_dec.iter().copied()).collect();
            decode_into(&gate, &p.w_dec, d, &mut x_gate, inputs.mode);
            let (l_aux, _, g_gate) = squared_error_grad(x, &x_gate, n, d, 1.0);
            aux = l_aux;
            loss = recon + l1 as f64 * sparsity + aux;
            // The aux reconstruction uses a detached decoder: no W_dec / b_dec gradient from it.
            let gg = entry_dots(&gate, &g_gate, &p.w_dec, d, inputs.mode);
            let add = l1 / n as f32;
            for_each_entry(&codes, |r, e, j| {
                let ju = j as usize;
                let scale = p.r_mag[ju].exp();
                let a_rj = a[r * m + ju];
                let d_mag = if codes.val[e] > 0.0 { gf[e] } else { 0.0 };
                let d_gate = gg[e] + add;
                grads.b_mag[ju] += d_mag;
                grads.b_enc[ju] += d_gate;
                grads.r_mag[ju] += d_mag * scale * a_rj;
                ga_rows[r].push((j, d_mag * scale + d_gate));
            });
        }
    }
    let ga = Csr::from_rows(m, ga_rows);
    transpose_times_into(&ga, &x_in, d, &mut grads.w_enc, inputs.mode);
    if inputs.apply_b_dec_to_input {
        // x_in = x − b_dec: the bias also reaches the loss through the encoder.
        let mut ga_sum = vec![0f32; m];
        for (&j, &v) in ga.idx.iter().zip(&ga.val) {
            ga_sum[j as usize] += v;
        }
        for (j, s) in ga_sum.iter().enumerate() {
            if *s != 0.0 {
                crate::kernel::axpy(-s, &p.w_enc[j * d..][..d], &mut grads.b_dec);
            }
        }
    }
    let mut fired = vec![false; m];
    let mut nonzero = 0usize;
    for (&j, &v) in codes.idx.iter().zip(&codes.val) {
        if v != 0.0 {
            fired[j as usize] = true;
            nonzero += 1;
        }
    }
    Ok(Pass {
        stats: StepStats {
            loss,
            recon,
            sparsity,
            aux,
            l0: nonzero as f64 / n as f64,
            fired,
            token_sq_err,
            min_selected,
        },
        codes,
    })
}

/// Codes for training (and Gated's gate values on the same pattern, BatchTopK's cut-off).
fn encode_train(
    objective: &ArchitectureConfig,
    p: &Params,
    a: &[f32],
    n: usize,
) -> (Csr, Option<Csr>, Option<f32>) {
    let m = p.m;
    match *objective {
        ArchitectureConfig::Relu { .. } => (
            threshold_rows(a, &p.b_enc, n, m, Cut::AtLeast(0.0)),
            None,
            None,
        ),
        ArchitectureConfig::TopK { k, .. } => (top_k_rows(a, &p.b_enc, n, m, k, None), None, None),
        ArchitectureConfig::BatchTopK { k, .. } => {
            let (codes, cut) = batch_top_k(a, &p.b_enc, n, m, k * n);
            (codes, None, cut)
        }
        ArchitectureConfig::JumpRelu { .. } => {
            let theta: Vec<f32> = p.log_threshold.iter().map(|t| t.exp()).collect();
            (
                threshold_rows(a, &p.b_enc, n, m, Cut::Above(&theta)),
                None,
                None,
            )
        }
        ArchitectureConfig::Gated { .. } => {
            let gate = threshold_rows(a, &p.b_enc, n, m, Cut::AtLeast(0.0));
            let mut mags = Vec::with_capacity(gate.nnz());
            for_each_entry(&gate, |r, _, j| {
                let j = j as usize;
                mags.push((p.r_mag[j].exp() * a[r * m + j] + p.b_mag[j]).max(0.0));
            });
            (gate.with_values(mags), Some(gate), None)
        }
    }
}

/// Which entries a threshold selection keeps (besides requiring `a + b > 0`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Cut<'a> {
    /// `a + b ≥ floor` for every feature (ReLU and Gated: 0; BatchTopK: the batch's cut-off).
    AtLeast(f32),
    /// `a + b > threshold[j]` (JumpReLU).
    Above(&'a [f32]),
}

/// Entries with `a + b > 0` that pass `cut`, valued `a + b`, in column order per row.
pub(crate) fn threshold_rows(a: &[f32], b: &[f32], n: usize, m: usize, cut: Cut<'_>) -> Csr {
    let rows = (0..n)
        .into_par_iter()
        .map(|r| {
            let row = &a[r * m..][..m];
            match cut {
                Cut::AtLeast(floor) => positive_at_or_above(row, b, floor),
                Cut::Above(theta) => (0..m)
                    .filter_map(|j| {
                        let v = row[j] + b[j];
                        (v > 0.0 && v > theta[j]).then_some((j as u32, v))
                    })
                    .collect(),
            }
        })
        .collect();
    Csr::from_rows(m, rows)
}

/// Per row of `a` (`[n, m]`), the `k` largest positive `a + b` (only among `allowed` features
/// when given): the TopK encoder's selection. Ties break toward the lower index, so the
/// selection is deterministic.
///
/// ```
/// use prism_sae::train::top_k_rows;
/// let a = [0.5, -1.0, 2.0, 0.1, /* row 1 */ 3.0, 1.0, -2.0, 1.0];
/// let codes = top_k_rows(&a, &[0.0, 0.0, 0.0, -0.5], 2, 4, 2, None);
/// assert_eq!(codes.idx, [0, 2, 0, 1]); // row 0: 2.0 and 0.5; row 1: 3.0 and 1.0 (not 1.0 − 0.5)
/// assert_eq!(codes.val, [0.5, 2.0, 3.0, 1.0]);
/// ```
pub fn top_k_rows(
    a: &[f32],
    b: &[f32],
    n: usize,
    m: usize,
    k: usize,
    allowed: Option<&[bool]>,
) -> Csr {
    let rows = (0..n)
        .into_par_iter()
        .map_init(Vec::new, |maxima, r| {
            let row = &a[r * m..][..m];
            // Entries below a lower bound on the k-th largest cannot be selected: skipping them
            // leaves a few dozen candidates instead of every positive entry.
            let mut cand: Vec<(u32, f32)> = match allowed {
                None => {
                    let floor = kth_lower_bound(row, b, k, maxima).unwrap_or(f32::NEG_INFINITY);
                    positive_at_or_above(row, b, floor)
                }
                Some(al) => (0..m)
                    .filter(|&j| al[j])
                    .map(|j| (j as u32, row[j] + b[j]))
                    .filter(|e| e.1 > 0.0)
                    .collect(),
            };
            if cand.len() > k {
                let order =
                    |x: &(u32, f32), y: &(u32, f32)| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0));
                if k > 0 {
                    cand.select_nth_unstable_by(k - 1, order);
                }
                cand.truncate(k);
            }
            cand
        })
        .collect();
    Csr::from_rows(m, rows)
}

/// A lower bound on the `k`-th largest `row[j] + b[j]`: the `k`-th largest of the maxima of
/// disjoint groups of entries (each lane's maximum over a stretch of 256 entries, 16 lanes; the
/// tail's entries are groups of one). `k` groups with maxima at or above it hold `k` distinct
/// entries that are, so the `k`-th largest entry is too. `None` when there are fewer than `k`
/// groups (or `k` is 0).
fn kth_lower_bound(row: &[f32], b: &[f32], k: usize, maxima: &mut Vec<f32>) -> Option<f32> {
    maxima.clear();
    group_maxima(row, b, maxima);
    // NaN is never selected; as −∞ it cannot raise the bound.
    let finite_or_low = |v: f32| if v.is_nan() { f32::NEG_INFINITY } else { v };
    let full = row.len() / STRETCH * STRETCH;
    maxima.extend(
        row[full..]
            .iter()
            .zip(&b[full..])
            .map(|(a, b)| finite_or_low(a + b)),
    );
    if k == 0 || maxima.len() < k {
        return None;
    }
    Some(
        *maxima
            .select_nth_unstable_by(k - 1, |x, y| y.total_cmp(x))
            .1,
    )
}

const LANES: usize = 16;
const STRETCH: usize = 256;

prism_core::simd_dispatch! {
    /// Appends to `maxima` each lane's maximum of `row + b` over each whole stretch of 256.
    fn group_maxima(row: &[f32], b: &[f32], maxima: &mut Vec<f32>) => group_maxima_body
}

#[inline(always)]
fn group_maxima_body(row: &[f32], b: &[f32], maxima: &mut Vec<f32>) {
    let full = row.len() / STRETCH * STRETCH;
    for (a, b) in row[..full]
        .chunks_exact(STRETCH)
        .zip(b[..full].chunks_exact(STRETCH))
    {
        let mut lanes = [f32::NEG_INFINITY; LANES];
        let (a, _) = a.as_chunks::<LANES>();
        let (b, _) = b.as_chunks::<LANES>();
        for (a, b) in a.iter().zip(b) {
            // One vector max per stretch of 16 (`f32::max`'s NaN rule made LLVM gather
            // across stretches instead); a NaN sum compares false and leaves the lane as it was.
            for i in 0..LANES {
                let v = a[i] + b[i];
                lanes[i] = if v > lanes[i] { v } else { lanes[i] };
            }
        }
        maxima.extend_from_slice(&lanes);
    }
}

prism_core::simd_dispatch! {
    /// The entries `(j, row[j] + b[j])` that are positive and at least `floor`, in column order.
    /// A stretch of 16 is first tested as a whole (a comparison that vectorises), so a floor near
    /// the top of the row costs one pass of vector compares.
    fn positive_at_or_above(row: &[f32], b: &[f32], floor: f32) -> Vec<(u32, f32)> => positive_at_or_above_body
}

#[inline(always)]
fn positive_at_or_above_body(row: &[f32], b: &[f32], floor: f32) -> Vec<(u32, f32)> {
    let mut out = Vec::new();
    let mut keep = |j: usize, v: f32| {
        if v > 0.0 && v >= floor {
            out.push((j as u32, v));
        }
    };
    let full = row.len() / LANES * LANES;
    for (c, (a, b)) in row[..full]
        .chunks_exact(LANES)
        .zip(b[..full].chunks_exact(LANES))
        .enumerate()
    {
        let mut hit = false;
        for (&a, &b) in a.iter().zip(b) {
            hit |= a + b >= floor;
        }
        if hit {
            for (i, (&a, &b)) in a.iter().zip(b).enumerate() {
                keep(c * LANES + i, a + b);
            }
        }
    }
    for j in full..row.len() {
        keep(j, row[j] + b[j]);
    }
    out
}

/// The `total` largest positive `a + b` over the whole batch; returns them and the smallest.
pub(crate) fn batch_top_k(
    a: &[f32],
    b: &[f32],
    n: usize,
    m: usize,
    total: usize,
) -> (Csr, Option<f32>) {
    let mut positive: Vec<f32> = a
        .par_chunks(m)
        .flat_map_iter(|row| row.iter().zip(b).map(|(a, b)| a + b).filter(|&v| v > 0.0))
        .collect();
    if positive.is_empty() || total == 0 {
        return (Csr::from_rows(m, vec![Vec::new(); n]), None);
    }
    let cut = if positive.len() > total {
        *positive
            .select_nth_unstable_by(total - 1, |x, y| y.total_cmp(x))
            .1
    } else {
        positive.iter().copied().fold(f32::INFINITY, f32::min)
    };
    (threshold_rows(a, b, n, m, Cut::AtLeast(cut)), Some(cut))
}

/// Calls `f(row, entry, column)` for every stored entry, in order.
fn for_each_entry(codes: &Csr, mut f: impl FnMut(usize, usize, u32)) {
    for r in 0..codes.rows {
        for e in codes.indptr[r]..codes.indptr[r + 1] {
            f(r, e, codes.idx[e]);
        }
    }
}

/// `Σ_r ‖target_r − pred_r‖² / n`, the per-row squared errors, and the gradient with respect
/// to `pred` times `scale`: `2·scale·(pred − target) / n`.
fn squared_error_grad(
    target: &[f32],
    pred: &[f32],
    n: usize,
    d: usize,
    scale: f32,
) -> (f64, Vec<f32>, Vec<f32>) {
    let c = 2.0 * scale / n as f32;
    let mut grad = vec![0f32; n * d];
    let per_row: Vec<f32> = grad
        .par_chunks_mut(d)
        .enumerate()
        .map(|(r, g)| {
            let mut s = 0f64;
            for i in 0..d {
                let e = pred[r * d + i] - target[r * d + i];
                s += (e as f64) * (e as f64);
                g[i] = c * e;
            }
            s as f32
        })
        .collect();
    let total = per_row.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    (total, per_row, grad)
}

/// `out[i] += Σ_r rows[r, i]`.
fn column_sums_into(rows: &[f32], d: usize, out: &mut [f32]) {
    for r in rows.chunks(d) {
        for (o, v) in out.iter_mut().zip(r) {
            *o += v;
        }
    }
}

/// `out[j] += Σ` of every `(j, v)` entry.
fn column_sums_of_rows(rows: &[Vec<(u32, f32)>], out: &mut [f32]) {
    for r in rows {
        for &(j, v) in r {
            out[j as usize] += v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pre-filtered selections equal their definitions — TopK a full sort (value descending,
    /// lower index first among ties, positive values only), thresholds a plain filter — on rows
    /// with a tail past the last whole stretch, many tied values, fewer positive entries than
    /// `k`, and NaNs; a bound above the true k-th value, or a stretch test that skips a stretch
    /// holding an entry, would drop entries and fail this.
    #[test]
    fn top_k_and_threshold_rows_equal_their_definitions() {
        let (n, m) = (24, 2 * 256 + 37);
        let mut seed = 3u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 40) as f32 / (1u64 << 24) as f32
        };
        let mut a: Vec<f32> = (0..n * m).map(|_| next() * 4.0 - 2.0).collect();
        let b: Vec<f32> = (0..m).map(|_| next() - 0.5).collect();
        for r in 0..n {
            let row = &mut a[r * m..(r + 1) * m];
            match r % 4 {
                // Ties: values on a coarse grid.
                1 => row.iter_mut().for_each(|v| *v = (*v * 2.0).round()),
                // Few positive entries.
                2 => row.iter_mut().for_each(|v| *v -= 2.4),
                3 => row.iter_mut().step_by(7).for_each(|v| *v = f32::NAN),
                _ => {}
            }
        }
        // Thresholds (ReLU's 0, BatchTopK's cut-off, JumpReLU's per-feature cut-offs) against
        // the definition.
        let cuts: Vec<f32> = (0..m).map(|j| (j % 5) as f32 * 0.3 - 0.4).collect();
        let kept = |cut: Cut<'_>, j: usize, v: f32| {
            v > 0.0
                && match cut {
                    Cut::AtLeast(floor) => v >= floor,
                    Cut::Above(theta) => v > theta[j],
                }
        };
        for cut in [Cut::AtLeast(0.0), Cut::AtLeast(0.7), Cut::Above(&cuts)] {
            let got = threshold_rows(&a, &b, n, m, cut);
            for r in 0..n {
                let want: Vec<(u32, f32)> = (0..m)
                    .map(|j| (j as u32, a[r * m + j] + b[j]))
                    .filter(|&(j, v)| kept(cut, j as usize, v))
                    .collect();
                let (idx, val) = got.row(r);
                let have: Vec<(u32, f32)> = idx.iter().copied().zip(val.iter().copied()).collect();
                assert_eq!(have, want, "row {r} {cut:?}");
            }
        }
        for k in [1, 5, 32, 200] {
            let got = top_k_rows(&a, &b, n, m, k, None);
            for r in 0..n {
                let mut all: Vec<(u32, f32)> = (0..m)
                    .map(|j| (j as u32, a[r * m + j] + b[j]))
                    .filter(|e| e.1 > 0.0)
                    .collect();
                all.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
                all.truncate(k);
                let mut want: Vec<u32> = all.iter().map(|e| e.0).collect();
                want.sort_unstable();
                let mut have = got.row(r).0.to_vec();
                have.sort_unstable();
                assert_eq!(have, want, "row {r}, k {k}");
            }
        }
    }
}
