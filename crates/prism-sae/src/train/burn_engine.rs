//! The burn engine: the same objectives and hand-written gradients as the host kernels, as
//! dense burn tensor products on any burn device (`flex` on a CPU, `wgpu`, `cuda`).
//!
//! Codes are dense `[n, m]` matrices with a selection mask; TopK/BatchTopK/AuxK select by a
//! cut-off between the k-th and (k+1)-th largest value of each row (or of the batch) rather
//! than by tracked indices, so no autodiff is involved: every gradient below is the one
//! `objective.rs` computes entry by entry, written as matrix products.
//!
//! The cut-off comes from burn's `topk` for small k (TopK's k = 32) and from a bisection on
//! counts ([`selection_cut`]) for large k: on `wgpu` burn 0.22's `topk` returns `-f32::MAX`
//! for k ≥ 256 (measured: k = 256 of 4096 values and k = 320 of 2048; k = 100 of 1000 was
//! right), and BatchTopK selects k·n values of the batch and AuxK d/2 per row. On `flex` the
//! bisection costs 2.3× burn's `topk` for TopK's k = 32 (348 vs 810 tokens/s at d 512,
//! m 8192, batch 4096), hence both.

use burn::tensor::{Bool, Device, Tensor, TensorData};
use prism_core::{HostTensor, PrismError, Result};

use super::adam::{Adam, AdamConfig};
use super::architecture::ArchitectureConfig;
use super::engine::{Engine, EngineChoice, Reinit, StepStats};
use super::params::{PARAM_NAMES, Params};

pub(crate) const W_ENC: usize = 0;
pub(crate) const B_ENC: usize = 1;
pub(crate) const W_DEC: usize = 2;
pub(crate) const B_DEC: usize = 3;
pub(crate) const LOG_THRESHOLD: usize = 4;
pub(crate) const R_MAG: usize = 5;
pub(crate) const B_MAG: usize = 6;
pub(crate) const W_SKIP: usize = 7;

/// One tensor per entry of [`super::PARAM_NAMES`] (`None` where the architecture has none):
/// `[m, d]` for the encoder, `[m, d_out]` for the decoder, `[1, m]` per feature, `[1, d_out]`
/// for `b_dec`, `[d_out, d]` for a skip transcoder's `w_skip`.
pub(crate) type Slots = [Option<Tensor<2>>; 8];

/// What an architecture's burn pass reads.
pub(crate) struct BurnStep<'a> {
    engine: &'a BurnEngine,
    /// What the features reconstruct `[n, d_out]` (see [`super::objective`]'s notation).
    pub y: Tensor<2>,
    /// What the encoder read `[n, d]`.
    pub x_in: Tensor<2>,
    /// `x_in · W_encᵀ` `[n, m]`.
    pub a: Tensor<2>,
    /// `a + b_enc`.
    pub pre: Tensor<2>,
    /// `pre > 0`.
    pub positive: Tensor<2, Bool>,
    /// Rows, output width, features.
    pub n: usize,
    pub d: usize,
    pub m: usize,
    /// Features counted dead before this batch (AuxK).
    pub dead: &'a [bool],
}

/// A reconstruction on burn and its squared error's gradient (see [`BurnStep::reconstruct`]).
pub(crate) struct BurnRecon {
    /// `x̂` `[n, d]`.
    pub x_hat: Tensor<2>,
    /// `Σ‖x − x̂‖² / n`.
    pub recon: f64,
    /// `‖x − x̂‖²` per token.
    pub token_sq_err: Vec<f32>,
    /// The gradient of `b_dec` so far.
    pub g_b_dec: Tensor<2>,
    /// The gradient of `W_dec` so far.
    pub g_w_dec: Tensor<2>,
    /// A skip transcoder's `W_skip` gradient.
    pub g_w_skip: Option<Tensor<2>>,
    /// `∂L/∂f` `[n, m]` (dense; the caller masks it).
    pub gf: Tensor<2>,
    /// Whether each feature's code is non-zero on some token.
    pub fired: Vec<bool>,
    /// Mean non-zero codes per token.
    pub l0: f64,
}

/// What an architecture's burn pass gives back; the per-feature gradients it sets directly.
pub(crate) struct BurnLoss {
    recon: BurnRecon,
    /// `∂L/∂a` `[n, m]`.
    ga: Tensor<2>,
    loss: f64,
    sparsity: f64,
    aux: f64,
    /// Batch-level selections: the smallest selected activation.
    pub min_selected: Option<f32>,
}

impl BurnRecon {
    /// The pass's result: `ga` the gradient with respect to `a`, and the loss's terms.
    pub fn finish(self, ga: Tensor<2>, loss: f64, sparsity: f64, aux: f64) -> BurnLoss {
        BurnLoss {
            recon: self,
            ga,
            loss,
            sparsity,
            aux,
            min_selected: None,
        }
    }
}

impl BurnStep<'_> {
    /// A parameter.
    pub fn p(&self, slot: usize) -> Tensor<2> {
        self.engine.p(slot)
    }

    /// Host values onto the device.
    pub fn upload(&self, values: Vec<f32>, shape: [usize; 2]) -> Tensor<2> {
        self.engine.upload(values, shape)
    }

    /// A one-value tensor's value.
    pub fn scalar(&self, t: Tensor<1>) -> Result<f64> {
        scalar(t)
    }

    /// A tensor's values on the host.
    pub fn readback(&self, t: Tensor<2>) -> Result<Vec<f32>> {
        readback(t)
    }

    /// Which features fired in codes `f`, and the mean non-zero codes per token.
    pub fn fired_and_l0(&self, f: &Tensor<2>) -> Result<(Vec<bool>, f64)> {
        let nonzero = f.clone().not_equal_elem(0.0);
        let fired = mask_readback(nonzero.clone().any_dim(0))?;
        let l0 = scalar(nonzero.float().sum())? / self.n as f64;
        Ok((fired, l0))
    }

    /// `x̂ = f · W_dec + b_dec`, its squared error and that error's gradient.
    pub fn reconstruct(&self, f: &Tensor<2>) -> Result<BurnRecon> {
        let (w_dec, b_dec) = (self.p(W_DEC), self.p(B_DEC));
        let x_hat = f.clone().matmul(w_dec.clone()) + b_dec;
        let e = x_hat.clone() - self.y.clone();
        let token_sq_err = readback(e.clone().square().sum_dim(1))?;
        let recon = token_sq_err.iter().map(|&v| v as f64).sum::<f64>() / self.n as f64;
        let g = e.mul_scalar(2.0 / self.n as f32);
        let g_b_dec = g.clone().sum_dim(0);
        let g_w_dec = f.clone().transpose().matmul(g.clone());
        let g_w_skip = self.engine.params[W_SKIP]
            .is_some()
            .then(|| g.clone().transpose().matmul(self.x_in.clone()));
        let gf = g.matmul(w_dec.transpose());
        let (fired, l0) = self.fired_and_l0(f)?;
        Ok(BurnRecon {
            x_hat,
            recon,
            token_sq_err,
            g_b_dec,
            g_w_dec,
            g_w_skip,
            gf,
            fired,
            l0,
        })
    }
}

/// Parameters, gradient and Adam's moments as burn tensors on one device.
#[derive(Clone)]
pub struct BurnEngine {
    device: Device,
    d: usize,
    d_out: usize,
    m: usize,
    params: Slots,
    grads: Slots,
    moment1: Slots,
    moment2: Slots,
    adam: AdamConfig,
    t: u64,
}

impl std::fmt::Debug for BurnEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BurnEngine")
            .field("device", &self.device)
            .field("d", &self.d)
            .field("d_out", &self.d_out)
            .field("m", &self.m)
            .field("adam_steps", &self.t)
            .finish_non_exhaustive()
    }
}

fn readback(t: Tensor<2>) -> Result<Vec<f32>> {
    Ok(HostTensor::from_burn(t)?.data)
}

fn scalar(t: Tensor<1>) -> Result<f64> {
    Ok(HostTensor::from_burn(t)?
        .data
        .first()
        .copied()
        .unwrap_or(f32::NAN) as f64)
}

/// The largest k for which burn's `topk` is used (see the module's documentation).
const TOPK_MAX: usize = 64;

/// Per row of `values` `[r, c]`, a cut-off `[r, 1]`: `values ≥ cut` holds for the row's `k`
/// largest values (and ties); the caller keeps the positive ones.
pub(crate) fn cut_for_top(values: Tensor<2>, k: usize) -> Tensor<2> {
    let k = k.min(values.dims()[1]);
    if k <= TOPK_MAX {
        values.topk(k, 1).min_dim(1)
    } else {
        selection_cut(values, k)
    }
}

/// Bisection steps of [`selection_cut`]: the interval shrinks to 2⁻⁴⁰ of the row's maximum.
const CUT_STEPS: usize = 40;

/// Per row of `values` `[r, c]`, a cut-off `t` `[r, 1]` such that `values ≥ t` holds for the
/// row's `k` largest positive values and no others (all positive values when fewer than `k`
/// are positive; the caller also requires `> 0`). Found by bisection of `[0, max]` on the count
/// of values above the midpoint, all on the device (no read-back); exact unless the k-th and
/// (k+1)-th largest values are closer than 2⁻⁴⁰ of the maximum.
pub(crate) fn selection_cut(values: Tensor<2>, k: usize) -> Tensor<2> {
    let max = values.clone().max_dim(1).clamp_min(0.0);
    let mut lo = max.zeros_like();
    // Strictly above the maximum, so that `count(≥ hi) = 0 < k`.
    let mut hi = max.clone() + max.abs().mul_scalar(1e-6) + 1e-30;
    for _ in 0..CUT_STEPS {
        let mid = (lo.clone() + hi.clone()).mul_scalar(0.5);
        let count = (values.clone() - mid.clone())
            .greater_equal_elem(0.0)
            .int()
            .sum_dim(1);
        let enough = count.greater_equal_elem(k as i64);
        lo = lo.mask_where(enough.clone(), mid.clone());
        hi = mid.mask_where(enough, hi);
    }
    lo
}

fn mask_readback(t: Tensor<2, Bool>) -> Result<Vec<bool>> {
    Ok(readback(t.float())?.into_iter().map(|v| v != 0.0).collect())
}

impl BurnEngine {
    /// Moves host parameters and optimiser state onto `device`.
    pub fn new(params: &Params, adam: &Adam, device: Device) -> Result<Self> {
        let (d, d_out, m) = (params.d, params.d_out, params.m);
        let upload = |set: &Params| -> Result<Slots> {
            let mut out: Slots = Default::default();
            for (i, t) in set.tensors().into_iter().enumerate() {
                if t.is_empty() {
                    continue;
                }
                let shape = Self::shape(i, d, d_out, m);
                if t.len() != shape[0] * shape[1] {
                    return Err(PrismError::Shape(format!(
                        "parameter {} has {} values, expected {}",
                        PARAM_NAMES[i],
                        t.len(),
                        shape[0] * shape[1]
                    )));
                }
                out[i] = Some(Tensor::from_data(
                    TensorData::new(t.clone(), shape),
                    &device,
                ));
            }
            Ok(out)
        };
        let p = upload(params)?;
        let zeros = p.clone().map(|t| t.map(|t| t.zeros_like()));
        Ok(Self {
            grads: zeros,
            moment1: upload(&adam.m)?,
            moment2: upload(&adam.v)?,
            params: p,
            adam: adam.config,
            t: adam.t,
            device,
            d,
            d_out,
            m,
        })
    }

    fn shape(slot: usize, d: usize, d_out: usize, m: usize) -> [usize; 2] {
        match slot {
            W_ENC => [m, d],
            W_DEC => [m, d_out],
            B_DEC => [1, d_out],
            W_SKIP => [d_out, d],
            _ => [1, m],
        }
    }

    fn p(&self, slot: usize) -> Tensor<2> {
        self.params[slot]
            .clone()
            .expect("the architecture has this parameter")
    }

    fn upload(&self, values: Vec<f32>, shape: [usize; 2]) -> Tensor<2> {
        Tensor::from_data(TensorData::new(values, shape), &self.device)
    }

    /// `Σ f(g)` over every entry of every gradient tensor, left on the device (one read-back
    /// for the caller instead of one per tensor); `None` before any gradient exists.
    fn sum_over_grads(&self, f: impl Fn(Tensor<2>) -> Tensor<2>) -> Option<Tensor<1>> {
        self.grads
            .iter()
            .flatten()
            .map(|g| f(g.clone()).sum())
            .reduce(|a, b| a + b)
    }

    fn download(&self, set: &Slots) -> Result<Params> {
        let mut out = Params {
            d: self.d,
            d_out: self.d_out,
            m: self.m,
            w_enc: Vec::new(),
            b_enc: Vec::new(),
            w_dec: Vec::new(),
            b_dec: Vec::new(),
            log_threshold: Vec::new(),
            r_mag: Vec::new(),
            b_mag: Vec::new(),
            w_skip: Vec::new(),
        };
        for (slot, t) in set.iter().zip(out.tensors_mut()) {
            if let Some(s) = slot {
                *t = readback(s.clone())?;
            }
        }
        Ok(out)
    }
}

impl Engine for BurnEngine {
    fn forward_backward(
        &mut self,
        objective: &ArchitectureConfig,
        x_host: &[f32],
        target: Option<&[f32]>,
        n: usize,
        dead: &[bool],
        apply_b_dec_to_input: bool,
    ) -> Result<StepStats> {
        let (d, d_out, m) = (self.d, self.d_out, self.m);
        if x_host.len() != n * d {
            return Err(PrismError::Shape(format!(
                "batch of {} values is not {n} rows of {d}",
                x_host.len()
            )));
        }
        super::objective::check_target(target.map(<[f32]>::len), n, d, d_out)?;
        // As the host engine checks: `k` in range, penalties ≥ 0, the architecture's own rules
        // (a Matryoshka dictionary's groups), a transcoder's — the passes below rely on them.
        objective.validate(m)?;
        let skip = self.params[W_SKIP].clone();
        super::objective::check_output(objective, d, d_out, skip.is_some(), apply_b_dec_to_input)?;
        let x = self.upload(x_host.to_vec(), [n, d]);
        let (w_enc, b_enc, b_dec) = (self.p(W_ENC), self.p(B_ENC), self.p(B_DEC));
        let y = match target {
            Some(t) => self.upload(t.to_vec(), [n, d_out]),
            None => x.clone(),
        };
        let y = match skip {
            Some(w_skip) => y - x.clone().matmul(w_skip.transpose()),
            None => y,
        };
        let x_in = if apply_b_dec_to_input {
            x.clone() - b_dec
        } else {
            x.clone()
        };
        let a = x_in.clone().matmul(w_enc.clone().transpose());
        let pre = a.clone() + b_enc;
        let positive = pre.clone().greater_elem(0.0);
        let step = BurnStep {
            engine: self,
            y,
            x_in: x_in.clone(),
            a,
            pre,
            positive,
            n,
            d: d_out,
            m,
            dead,
        };
        let mut grads: Slots = Default::default();
        let out = objective.objective().burn_pass(&step, &mut grads)?;
        let BurnLoss {
            recon: r,
            ga,
            loss,
            sparsity,
            aux,
            min_selected,
        } = out;
        let mut g_b_dec = r.g_b_dec;
        let ga_sum = ga.clone().sum_dim(0);
        if grads[B_ENC].is_none() {
            grads[B_ENC] = Some(ga_sum.clone());
        }
        grads[W_ENC] = Some(ga.transpose().matmul(x_in));
        if apply_b_dec_to_input {
            // x_in = x − b_dec: the bias also reaches the loss through the encoder.
            g_b_dec = g_b_dec - ga_sum.matmul(w_enc);
        }
        grads[W_DEC] = Some(r.g_w_dec);
        grads[B_DEC] = Some(g_b_dec);
        grads[W_SKIP] = r.g_w_skip;
        self.grads = grads;
        Ok(StepStats {
            loss,
            recon: r.recon,
            sparsity,
            aux,
            l0: r.l0,
            fired: r.fired,
            token_sq_err: r.token_sq_err,
            min_selected,
        })
    }

    fn gradients_finite(&self) -> Result<bool> {
        // x − x is 0 for every finite x and NaN for ±∞ and NaN; one read-back for all tensors.
        match self.sum_over_grads(|g| g.clone() - g) {
            Some(total) => Ok(scalar(total)?.is_finite()),
            None => Ok(true),
        }
    }

    fn update(&mut self, lr: f32, clip: Option<f32>) -> Result<()> {
        let w_dec = self.p(W_DEC);
        if let Some(g) = self.grads[W_DEC].take() {
            let along = (w_dec.clone() * g.clone()).sum_dim(1);
            self.grads[W_DEC] = Some(g - w_dec * along);
        }
        if let Some(clip) = clip {
            let norm = match self.sum_over_grads(|g| g.square()) {
                Some(sq) => scalar(sq)?.sqrt(),
                None => 0.0,
            };
            if norm > clip as f64 {
                let s = (clip as f64 / norm) as f32;
                for g in self.grads.iter_mut().flatten() {
                    *g = g.clone().mul_scalar(s);
                }
            }
        }
        self.t += 1;
        let [beta1, beta2, eps, step, bc2_sqrt] = self.adam.coefficients(self.t, lr);
        for i in 0..PARAM_NAMES.len() {
            let Some(g) = self.grads[i].clone() else {
                continue;
            };
            let p = self.params[i]
                .take()
                .expect("gradients match the parameters");
            let m1 = self.moment1[i]
                .take()
                .expect("moments match the parameters");
            let m2 = self.moment2[i]
                .take()
                .expect("moments match the parameters");
            let m1 = m1.mul_scalar(beta1) + g.clone().mul_scalar(1.0 - beta1);
            let m2 = m2.mul_scalar(beta2) + g.square().mul_scalar(1.0 - beta2);
            let denom = m2.clone().sqrt().div_scalar(bc2_sqrt).add_scalar(eps);
            self.params[i] = Some(p - m1.clone().mul_scalar(step) / denom);
            self.moment1[i] = Some(m1);
            self.moment2[i] = Some(m2);
        }
        let w_dec = self.p(W_DEC);
        let norm = w_dec.clone().square().sum_dim(1).sqrt();
        let safe = norm.clone() + norm.equal_elem(0.0).float();
        self.params[W_DEC] = Some(w_dec / safe);
        Ok(())
    }

    fn b_dec(&self) -> Result<Vec<f32>> {
        readback(self.p(B_DEC))
    }

    fn set_b_dec(&mut self, b_dec: &[f32]) -> Result<()> {
        if b_dec.len() != self.d_out {
            return Err(PrismError::Shape(format!(
                "b_dec of {} values for an output width of {}",
                b_dec.len(),
                self.d_out
            )));
        }
        self.params[B_DEC] = Some(self.upload(b_dec.to_vec(), [1, self.d_out]));
        Ok(())
    }

    fn encoder_row_norms(&self) -> Result<Vec<f32>> {
        readback(self.p(W_ENC).square().sum_dim(1).sqrt())
    }

    fn reinitialise(&mut self, features: &[Reinit]) -> Result<()> {
        if features.is_empty() {
            return Ok(());
        }
        let (d, d_out, m) = (self.d, self.d_out, self.m);
        let mut keep = vec![1f32; m];
        let mut dec = vec![0f32; m * d_out];
        let mut enc = vec![0f32; m * d];
        for r in features {
            keep[r.feature] = 0.0;
            dec[r.feature * d_out..][..d_out].copy_from_slice(&r.decoder);
            enc[r.feature * d..][..d].copy_from_slice(&r.encoder);
        }
        let keep_row = self.upload(keep.clone(), [1, m]);
        let keep_col = self.upload(keep, [m, 1]);
        let replace = [(W_DEC, dec, d_out), (W_ENC, enc, d)];
        for (slot, values, width) in replace {
            let fresh = self.upload(values, [m, width]);
            self.params[slot] = Some(self.p(slot) * keep_col.clone() + fresh);
        }
        self.params[B_ENC] = Some(self.p(B_ENC) * keep_row.clone());
        for set in [&mut self.moment1, &mut self.moment2] {
            for (i, t) in set.iter_mut().enumerate() {
                if i == B_DEC || i == W_SKIP {
                    continue;
                }
                if let Some(v) = t.take() {
                    *t = Some(if i == W_ENC || i == W_DEC {
                        v * keep_col.clone()
                    } else {
                        v * keep_row.clone()
                    });
                }
            }
        }
        Ok(())
    }

    fn params(&self) -> Result<Params> {
        self.download(&self.params)
    }

    fn gradients(&self) -> Result<Params> {
        self.download(&self.grads)
    }

    fn optimiser(&self) -> Result<Adam> {
        Ok(Adam {
            config: self.adam,
            m: self.download(&self.moment1)?,
            v: self.download(&self.moment2)?,
            t: self.t,
        })
    }

    fn choice(&self) -> EngineChoice {
        EngineChoice::Burn(self.device.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bisection selects exactly a row's k largest positive values, like a sort.
    #[test]
    fn selection_cut_keeps_the_k_largest_positive_values() {
        let device = Device::flex();
        let (rows, cols) = (6, 300);
        let mut state = 7u64;
        let values: Vec<f32> = (0..rows * cols)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                (state >> 40) as f32 / (1u64 << 24) as f32 - 0.3
            })
            .collect();
        let t = Tensor::<2>::from_data(TensorData::new(values.clone(), [rows, cols]), &device);
        for k in [1, 65, 100, 250] {
            let cut = readback(selection_cut(t.clone(), k)).unwrap();
            for (r, row) in values.chunks(cols).enumerate() {
                let mut sorted: Vec<f32> = row.iter().copied().filter(|&v| v > 0.0).collect();
                sorted.sort_by(|a, b| b.total_cmp(a));
                let want = sorted.len().min(k);
                let got = row.iter().filter(|&&v| v > 0.0 && v >= cut[r]).count();
                assert_eq!(got, want, "row {r}, k {k}: cut {}", cut[r]);
            }
        }
    }
}
