//! "Percent loss recovered" and KL: the model run clean, with the reconstruction spliced in at
//! the hook point, and with the activation zeroed (METRICS.md).

use prism_core::{
    Activation, Dictionary, Edit, HookPoint, Hooks, HostTensor, Intervention, PrismError, Result,
};
use prism_models::{Model, TokenBatch};

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

/// One position's contribution, from the three runs' logit rows: the next-token NLL of each
/// (when `target` is given) and KL(original ‖ reconstructed), KL(original ‖ zeroed). Read in
/// one pass per row with f64 sums; `scratch` holds exp(original − max) between passes.
fn position_sums(rows: [&[f32]; 3], target: Option<usize>, scratch: &mut Vec<f32>) -> [f64; 5] {
    let [o, r, z] = rows;
    let max = |row: &[f32]| row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = |row: &[f32], m: f32| {
        m as f64
            + row
                .iter()
                .map(|&x| ((x - m).exp()) as f64)
                .sum::<f64>()
                .ln()
    };
    let mo = max(o);
    scratch.clear();
    scratch.extend(o.iter().map(|&x| (x - mo).exp()));
    let sum_o: f64 = scratch.iter().map(|&e| e as f64).sum();
    let lse_o = mo as f64 + sum_o.ln();
    let (lse_r, lse_z) = (lse(r, max(r)), lse(z, max(z)));
    // KL(p ‖ q) = Σ p (x − y) − lse_p + lse_q, p = exp(x − lse_p).
    let (mut dr, mut dz) = (0.0f64, 0.0f64);
    for ((&e, &x), (&y, &w)) in scratch.iter().zip(o).zip(r.iter().zip(z)) {
        dr += e as f64 * (x - y) as f64;
        dz += e as f64 * (x - w) as f64;
    }
    let nll = |lse: f64, row: &[f32]| target.map_or(0.0, |t| lse - row[t] as f64);
    [
        nll(lse_o, o),
        nll(lse_r, r),
        nll(lse_z, z),
        dr / sum_o - lse_o + lse_r,
        dz / sum_o - lse_o + lse_z,
    ]
}

/// Adds the batch's losses and KLs to `down`: the three runs' logits are read back once and
/// scored position by position on all cores (padding skipped).
fn add_downstream(
    down: &mut DownstreamStats,
    batch: &TokenBatch,
    [o, r, z]: [&HostTensor; 3],
) -> Result<()> {
    use rayon::prelude::*;
    let (s, v) = (batch.seq, o.shape[2]);
    if let Some(bad) = batch.ids.iter().find(|&&t| t as usize >= v) {
        return Err(PrismError::InvalidInput(format!(
            "token id {bad} is outside the vocabulary of {v}"
        )));
    }
    let positions: Vec<(usize, usize)> = (0..batch.batch)
        .flat_map(|i| (0..batch.lengths[i]).map(move |t| (i, t)))
        .collect();
    // Per-position sums in order, then added in order: the same result whatever the threads.
    let per_position: Vec<[f64; 5]> = positions
        .par_iter()
        .map_init(
            || Vec::with_capacity(v),
            |scratch, &(i, t)| {
                let at = (i * s + t) * v;
                let target = (t + 1 < batch.lengths[i]).then(|| batch.ids[i * s + t + 1] as usize);
                let rows = [
                    &o.data[at..at + v],
                    &r.data[at..at + v],
                    &z.data[at..at + v],
                ];
                position_sums(rows, target, scratch)
            },
        )
        .collect();
    let sums = per_position
        .iter()
        .fold([0.0f64; 5], |a, p| std::array::from_fn(|k| a[k] + p[k]));
    down.targets += batch
        .lengths
        .iter()
        .map(|&l| l.saturating_sub(1) as f64)
        .sum::<f64>();
    down.positions += positions.len() as f64;
    down.loss_original += sums[0];
    down.loss_reconstructed += sums[1];
    down.loss_zero += sums[2];
    down.kl_sae += sums[3];
    down.kl_ablation += sums[4];
    Ok(())
}

/// Evaluates one batch for every dictionary of `dicts` (one `(recon, down)` pair of sums
/// each): reconstruction metrics on the real (unpadded) positions and the runs for loss
/// recovered and KL — the clean run whole, then the zeroed run and one spliced run per
/// dictionary from the hook's block on ([`prism_models::Transformer::forward_from`]); the clean
/// and zeroed runs are shared by all the dictionaries. The hook must carry one vector per token.
pub fn evaluate_batch(
    model: &Model,
    dicts: &[&dyn Dictionary],
    hook: HookPoint,
    batch: &TokenBatch,
    stats: &mut [(ReconstructionStats, DownstreamStats)],
) -> Result<()> {
    if dicts.len() != stats.len() {
        return Err(PrismError::InvalidInput(format!(
            "{} dictionaries but {} sets of sums",
            dicts.len(),
            stats.len()
        )));
    }
    // The spliced and zeroed runs share the clean run's blocks before the hook's: they resume
    // from the residual stream entering the hook's block.
    let resume_at = hook.layer();
    let mut capture = Hooks::new().capture(hook);
    if let Some(l) = resume_at {
        capture = capture.capture(HookPoint::ResidPre(l));
    }
    let mut clean = model.forward(batch, &capture)?;
    let resume = match resume_at {
        Some(l) if hook == HookPoint::ResidPre(l) => {
            Some((l, clean.captures[&hook].clone().into_rank3()?))
        }
        Some(l) => Some((l, clean.take(HookPoint::ResidPre(l))?.into_rank3()?)),
        None => None,
    };
    let finish = |hooks: &Hooks| match &resume {
        Some((l, resid)) => model
            .transformer
            .forward_from(batch, *l, resid.clone(), hooks),
        None => model.forward(batch, hooks),
    };
    let act = clean
        .take(hook)?
        .into_rank3()
        .map_err(|_| PrismError::Hook {
            hook: hook.to_string(),
            message: "dictionaries are evaluated on hooks with one vector per token".into(),
        })?;
    let [b, s, d] = act.dims();
    if let Some(dict) = dicts.iter().find(|dict| dict.d_in() != d) {
        return Err(PrismError::Shape(format!(
            "the dictionary reads d_in = {}, {hook} has d = {d}",
            dict.d_in()
        )));
    }
    let x = act.reshape([b * s, d]);
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
    let x_real = keep(HostTensor::from_burn(x.clone())?)?;
    let original = HostTensor::from_burn(clean.logits()?)?;
    let zeroed = HostTensor::from_burn(
        finish(&Hooks::new().intervene(Intervention::new(hook, Edit::Zero)))?.logits()?,
    )?;
    for (dict, (recon, down)) in dicts.iter().zip(stats.iter_mut()) {
        let codes = dict.encode(x.clone());
        let x_hat = dict.decode(codes.clone());
        recon.add(
            &x_real,
            &keep(HostTensor::from_burn(x_hat.clone())?)?,
            &keep(HostTensor::from_burn(codes)?)?,
        )?;
        let spliced = Hooks::new().intervene(Intervention::new(
            hook,
            Edit::Replace(Activation::Rank3(x_hat.reshape([b, s, d]))),
        ));
        let reconstructed = HostTensor::from_burn(finish(&spliced)?.logits()?)?;
        add_downstream(down, batch, [&original, &reconstructed, &zeroed])?;
    }
    Ok(())
}
