//! "Percent loss recovered" and KL: the model run clean, with the reconstruction spliced in at
//! the hook point, and with the activation zeroed (METRICS.md).

use burn::tensor::Tensor;
use burn::tensor::TensorData;
use burn::tensor::activation::log_softmax;
use prism_core::{
    Activation, Dictionary, Edit, HookPoint, Hooks, HostTensor, Intervention, PrismError, Result,
};
use prism_models::{Model, TokenBatch, next_token_nll};

use crate::reconstruction::ReconstructionStats;

/// Running sums for the downstream metrics.
#[derive(Clone, Debug, Default)]
pub struct DownstreamStats {
    targets: f64,
    positions: f64,
    loss_original: f64,
    loss_reconstructed: f64,
    loss_zero: f64,
    kl_sae: f64,
    kl_ablation: f64,
}

/// The downstream metrics, under METRICS.md's names.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DownstreamMetrics {
    /// Mean next-token cross-entropy of the unmodified model.
    pub loss_original: f64,
    /// … with the hook's activation replaced by the dictionary's reconstruction.
    pub loss_reconstructed: f64,
    /// … with the hook's activation replaced by zeros.
    pub loss_zero: f64,
    /// (loss_reconstructed − loss_zero) / (loss_original − loss_zero).
    pub frac_recovered: f64,
    /// KL(p_original ‖ p_reconstructed), summed over the vocabulary, mean over positions.
    pub kl_div_with_sae: f64,
    /// KL(p_original ‖ p_zeroed).
    pub kl_div_with_ablation: f64,
    /// (KL_ablation − KL_sae) / KL_ablation.
    pub kl_div_score: f64,
}

impl DownstreamStats {
    /// The metrics over everything added so far.
    pub fn finish(&self) -> Result<DownstreamMetrics> {
        if self.targets == 0.0 {
            return Err(PrismError::InvalidInput(
                "no next-token targets were evaluated".into(),
            ));
        }
        let (lo, lr, lz) = (
            self.loss_original / self.targets,
            self.loss_reconstructed / self.targets,
            self.loss_zero / self.targets,
        );
        let (ks, ka) = (
            self.kl_sae / self.positions,
            self.kl_ablation / self.positions,
        );
        Ok(DownstreamMetrics {
            loss_original: lo,
            loss_reconstructed: lr,
            loss_zero: lz,
            frac_recovered: (lr - lz) / (lo - lz),
            kl_div_with_sae: ks,
            kl_div_with_ablation: ka,
            kl_div_score: (ka - ks) / ka,
        })
    }
}

/// Sum of the masked next-token NLL of `logits`, as f64.
fn nll_sum(logits: Tensor<3>, batch: &TokenBatch) -> Result<f64> {
    let (nll, mask) = next_token_nll(logits, batch)?;
    Ok((nll * mask).sum().into_scalar::<f32>() as f64)
}

/// Sum over real positions of KL(p ‖ q), the distributions given by logits `[b, s, V]`.
fn kl_sum(p_logits: &Tensor<3>, q_logits: Tensor<3>, mask: &Tensor<2>) -> f64 {
    let [b, s, _] = p_logits.dims();
    let lp = log_softmax(p_logits.clone(), 2);
    let lq = log_softmax(q_logits, 2);
    let kl = (lp.clone().exp() * (lp - lq)).sum_dim(2).reshape([b, s]);
    (kl * mask.clone()).sum().into_scalar::<f32>() as f64
}

/// Evaluates one batch: reconstruction metrics on the real (unpadded) positions and the three
/// runs for loss recovered and KL. The hook must carry one vector per token.
pub fn evaluate_batch(
    model: &Model,
    dict: &dyn Dictionary,
    hook: HookPoint,
    batch: &TokenBatch,
    recon: &mut ReconstructionStats,
    down: &mut DownstreamStats,
) -> Result<()> {
    let mut clean = model.forward(batch, &Hooks::new().capture(hook))?;
    let act = clean
        .take(hook)?
        .into_rank3()
        .map_err(|_| PrismError::Hook {
            hook: hook.to_string(),
            message: "dictionaries are evaluated on hooks with one vector per token".into(),
        })?;
    let [b, s, d] = act.dims();
    if d != dict.d_in() {
        return Err(PrismError::Shape(format!(
            "the dictionary reads d_in = {}, {hook} has d = {d}",
            dict.d_in()
        )));
    }
    let x = act.reshape([b * s, d]);
    let codes = dict.encode(x.clone());
    let x_hat = dict.decode(codes.clone());

    // Reconstruction metrics on real positions only.
    let real: Vec<usize> = (0..b)
        .flat_map(|i| (0..batch.lengths[i]).map(move |t| i * s + t))
        .collect();
    let keep = |t: HostTensor| -> Result<HostTensor> {
        let w = t.shape[1];
        let mut data = Vec::with_capacity(real.len() * w);
        for &r in &real {
            data.extend_from_slice(&t.data[r * w..(r + 1) * w]);
        }
        HostTensor::new(vec![real.len(), w], data)
    };
    recon.add(
        &keep(HostTensor::from_burn(x)?)?,
        &keep(HostTensor::from_burn(x_hat.clone())?)?,
        &keep(HostTensor::from_burn(codes)?)?,
    )?;

    // The three runs.
    let original = clean.logits()?;
    let spliced = Hooks::new().intervene(Intervention::new(
        hook,
        Edit::Replace(Activation::Rank3(x_hat.reshape([b, s, d]))),
    ));
    let reconstructed = model.forward(batch, &spliced)?.logits()?;
    let zeroed = model
        .forward(
            batch,
            &Hooks::new().intervene(Intervention::new(hook, Edit::Zero)),
        )?
        .logits()?;
    let mask: Vec<f32> = (0..b)
        .flat_map(|i| (0..s).map(move |t| if t < batch.lengths[i] { 1.0 } else { 0.0 }))
        .collect();
    let mask = Tensor::<2>::from_data(TensorData::new(mask, [b, s]), &original.device());
    down.targets += batch
        .lengths
        .iter()
        .map(|&l| l.saturating_sub(1) as f64)
        .sum::<f64>();
    down.positions += batch.lengths.iter().sum::<usize>() as f64;
    down.loss_original += nll_sum(original.clone(), batch)?;
    down.loss_reconstructed += nll_sum(reconstructed.clone(), batch)?;
    down.loss_zero += nll_sum(zeroed.clone(), batch)?;
    down.kl_sae += kl_sum(&original, reconstructed, &mask);
    down.kl_ablation += kl_sum(&original, zeroed, &mask);
    Ok(())
}
