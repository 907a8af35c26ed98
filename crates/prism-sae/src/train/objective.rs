//! The host engine's pass, written once for every architecture: the encoder product, the
//! architecture's codes, loss and gradients ([`super::architecture::Objective::host_pass`]),
//! then the encoder's gradient from the gradient with respect to the pre-activations.
//!
//! Notation: `x` `[n, d]` inputs, `x_in = x − b_dec` (when the bias is applied to the input),
//! `a = x_in · W_encᵀ` `[n, m]` (the one dense product), codes `f` sparse, `x̂ = f · W_dec + b_dec`,
//! reconstruction loss `Σ‖x − x̂‖² / n` (dictionary_learning's `recon_loss`).
//!
//! A transcoder reconstructs a target `y` `[n, d_out]` (another hook's activations) instead of
//! `x`; a skip transcoder's output adds `x · W_skipᵀ`. The architectures see one target, `y −
//! x · W_skipᵀ` (the part the features must supply), so the same loss code serves all three;
//! the main reconstruction's gradient `g` then also gives `∂L/∂W_skip = gᵀ x`.

use std::borrow::Cow;

use prism_core::{PrismError, Result};
use rayon::prelude::*;

use crate::kernel::{Csr, KernelMode, View, decode_into, entry_dots, transpose_times_into};

use super::architecture::{ArchitectureConfig, Extras};
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
    /// The reconstruction's target `[n, d_out]` (a transcoder's output hook); `None`
    /// reconstructs `x` itself.
    pub target: Option<&'a [f32]>,
}

/// What an architecture's host pass reads.
pub(crate) struct HostStep<'a> {
    /// The parameters.
    pub p: &'a Params,
    /// What the features reconstruct `[n, d_out]`: the input itself for an autoencoder, the
    /// target less the skip term for a transcoder.
    pub y: &'a [f32],
    /// What the encoder read `[n, d]` (the skip term's input).
    pub x_in: &'a [f32],
    /// `x_in · W_encᵀ` `[n, m]`, before `b_enc`.
    pub a: &'a [f32],
    /// Rows of the batch.
    pub n: usize,
    /// Features counted dead before this batch (AuxK).
    pub dead: Option<&'a [bool]>,
    /// The code products' kernels.
    pub mode: KernelMode,
}

/// What an architecture's host pass gives back; its gradients are in the `grads` it was given
/// (all but the encoder weights', and `b_dec`'s path through the encoder, which follow from `ga`).
pub(crate) struct HostLoss {
    /// The codes.
    pub codes: Csr,
    /// The gradient of the loss with respect to `a`, as `(feature, value)` lists per row.
    pub ga: Vec<Vec<(u32, f32)>>,
    /// Total loss.
    pub loss: f64,
    /// `Σ‖x − x̂‖² / n` of the whole dictionary's reconstruction.
    pub recon: f64,
    /// The sparsity term before its coefficient.
    pub sparsity: f64,
    /// The auxiliary term, 0 when absent.
    pub aux: f64,
    /// Squared reconstruction error per token.
    pub token_sq_err: Vec<f32>,
    /// Batch-level selections: the smallest selected activation.
    pub min_selected: Option<f32>,
}

/// A reconstruction `x̂ = f · W_dec + b_dec` and its squared error's gradient.
pub(crate) struct Recon {
    /// `x̂` `[n, d]`.
    pub x_hat: Vec<f32>,
    /// `Σ‖x − x̂‖² / n`.
    pub recon: f64,
    /// `‖x − x̂‖²` per token.
    pub token_sq_err: Vec<f32>,
    /// `∂/∂x̂ = 2(x̂ − x)/n` `[n, d]`.
    pub g: Vec<f32>,
    /// `∂/∂f` at each stored code entry: `g_r · W_dec_j`.
    pub gf: Vec<f32>,
}

impl HostStep<'_> {
    /// The width the decoder writes (`d_out`; `d` for an autoencoder).
    pub fn width(&self) -> usize {
        self.p.d_out
    }

    /// Number of features.
    pub fn m(&self) -> usize {
        self.p.m
    }

    /// `x̂ = codes · W_dec + b_dec`, its squared error, and that error's gradient: added to
    /// `grads.b_dec`, `grads.w_dec` (and a skip transcoder's `grads.w_skip`), and returned with
    /// respect to each code entry.
    pub fn reconstruct(&self, codes: &Csr, grads: &mut Params) -> Recon {
        let (n, d, p) = (self.n, self.width(), self.p);
        let mut x_hat: Vec<f32> = (0..n).flat_map(|_| p.b_dec.iter().copied()).collect();
        decode_into(codes, &p.w_dec, d, &mut x_hat, self.mode);
        let (recon, token_sq_err, g) = squared_error_grad(self.y, &x_hat, n, d, 1.0);
        column_sums_into(&g, d, &mut grads.b_dec);
        if !p.w_skip.is_empty() {
            // ŷ = x̂ + x · W_skipᵀ: ∂L/∂W_skip = gᵀ x.
            crate::kernel::matmul(
                View::new(&g, n, d).t(),
                View::new(self.x_in, n, p.d),
                &mut grads.w_skip,
                true,
            );
        }
        transpose_times_into(codes, &g, d, &mut grads.w_dec, self.mode);
        let gf = entry_dots(codes, &g, &p.w_dec, d, self.mode);
        Recon {
            x_hat,
            recon,
            token_sq_err,
            g,
            gf,
        }
    }
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
    let (d, d_out, m) = (p.d, p.d_out, p.m);
    let shape = |m: String| Err(PrismError::Shape(m));
    if Some(x.len()) != n.checked_mul(d) {
        return shape(format!(
            "a batch of {} values is not {n} rows of {d}",
            x.len()
        ));
    }
    check_target(inputs.target.map(<[f32]>::len), n, d, d_out)?;
    check_params(objective, p, inputs.apply_b_dec_to_input)?;
    if grads.d != d
        || grads.d_out != d_out
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
    objective.validate(m)
}

/// Checks that the parameters' sizes fit `objective` (both engines check this before a step):
/// a `[d_out, d]` skip matrix or none, which only architectures with a single reconstruction
/// train, and `b_dec` subtracted from the input only where the input and output widths agree.
pub(crate) fn check_params(
    objective: &ArchitectureConfig,
    p: &Params,
    apply_b_dec_to_input: bool,
) -> Result<()> {
    let (d, d_out, m) = (p.d, p.d_out, p.m);
    let per_feature = match objective.objective().extras() {
        Extras::Threshold(_) => [m, 0, 0],
        Extras::Magnitude => [0, m, m],
        Extras::None => [p.log_threshold.len(), p.r_mag.len(), p.b_mag.len()],
    };
    let skip = if p.w_skip.is_empty() { 0 } else { d_out * d };
    let want = [
        m * d,
        m,
        m * d_out,
        d_out,
        per_feature[0],
        per_feature[1],
        per_feature[2],
        skip,
    ];
    for (name, (have, want)) in PARAM_NAMES.iter().zip(p.tensors().iter().zip(want)) {
        if have.len() != want {
            return Err(PrismError::Shape(format!(
                "parameter `{name}` has {} values; a {} dictionary {d} → {m} → {d_out} needs {want}",
                have.len(),
                objective.name()
            )));
        }
    }
    check_output(objective, d, d_out, skip > 0, apply_b_dec_to_input)
}

/// A batch's target, of `len` values (`None`: the batch itself), against a dictionary `d → d_out`
/// (both engines check it before a step): `n` rows of `d_out`, and one is needed exactly when
/// the widths differ.
pub(crate) fn check_target(len: Option<usize>, n: usize, d: usize, d_out: usize) -> Result<()> {
    match len {
        Some(len) if Some(len) != n.checked_mul(d_out) => Err(PrismError::Shape(format!(
            "a target of {len} values is not {n} rows of {d_out}"
        ))),
        None if d_out != d => Err(PrismError::Shape(format!(
            "a dictionary {d} → {d_out} needs a target of width {d_out} (it is a transcoder)"
        ))),
        _ => Ok(()),
    }
}

/// A transcoder's rules (both engines check them before a step): only architectures with a
/// single reconstruction train a skip term, and `b_dec` — the output's bias — is subtracted
/// from the input only by an autoencoder without one.
pub(crate) fn check_output(
    objective: &ArchitectureConfig,
    d: usize,
    d_out: usize,
    skip: bool,
    apply_b_dec_to_input: bool,
) -> Result<()> {
    if skip && !objective.objective().trains_skip() {
        return Err(PrismError::InvalidInput(format!(
            "{} dictionaries cannot train a skip connection (their other reconstructions would \
             need it too): use relu, topk, batchtopk or jumprelu",
            objective.name()
        )));
    }
    if apply_b_dec_to_input && (d_out != d || skip) {
        return Err(PrismError::InvalidInput(
            "a transcoder's input is not centred by b_dec (the output's bias): \
             set apply_b_dec_to_input = false"
                .into(),
        ));
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
    let y = features_target(p, x, inputs.target, n);
    // The pre-activations, into a buffer the GEMM writes whole (not zeroed first: 134 MB at the
    // benchmark's sizes).
    let a = prism_core::dense::matmul_new(View::new(&x_in, n, d), View::new(&p.w_enc, m, d).t());
    let step = HostStep {
        p,
        y: &y,
        x_in: &x_in,
        a: &a,
        n,
        dead: inputs.dead,
        mode: inputs.mode,
    };
    let out = objective.objective().host_pass(&step, grads);
    let ga = Csr::from_rows(m, out.ga);
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
    let codes = out.codes;
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
            loss: out.loss,
            recon: out.recon,
            sparsity: out.sparsity,
            aux: out.aux,
            l0: nonzero as f64 / n as f64,
            fired,
            token_sq_err: out.token_sq_err,
            min_selected: out.min_selected,
        },
        codes,
    })
}

/// What the features reconstruct: `x` (an autoencoder), the target `y`, or `y − x · W_skipᵀ`
/// (a skip transcoder).
fn features_target<'a>(
    p: &Params,
    x: &'a [f32],
    target: Option<&'a [f32]>,
    n: usize,
) -> Cow<'a, [f32]> {
    let y = target.unwrap_or(x);
    if p.w_skip.is_empty() {
        return Cow::Borrowed(y);
    }
    let skip =
        prism_core::dense::matmul_new(View::new(x, n, p.d), View::new(&p.w_skip, p.d_out, p.d).t());
    Cow::Owned(y.iter().zip(&skip).map(|(y, s)| y - s).collect())
}

/// Calls `f(row, entry, column)` for every stored entry, in order.
pub(crate) fn for_each_entry(codes: &Csr, mut f: impl FnMut(usize, usize, u32)) {
    for r in 0..codes.rows {
        for e in codes.indptr[r]..codes.indptr[r + 1] {
            f(r, e, codes.idx[e]);
        }
    }
}

/// `Σ_r ‖target_r − pred_r‖² / n`, the per-row squared errors, and the gradient with respect
/// to `pred` times `scale`: `2·scale·(pred − target) / n`.
pub(crate) fn squared_error_grad(
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
pub(crate) fn column_sums_into(rows: &[f32], d: usize, out: &mut [f32]) {
    for r in rows.chunks(d) {
        for (o, v) in out.iter_mut().zip(r) {
            *o += v;
        }
    }
}

/// `out[j] += Σ` of every `(j, v)` entry.
pub(crate) fn column_sums_of_rows(rows: &[Vec<(u32, f32)>], out: &mut [f32]) {
    for r in rows {
        for &(j, v) in r {
            out[j as usize] += v;
        }
    }
}
