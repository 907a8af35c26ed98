//! "Percent loss recovered" and KL: the model run clean, with the dictionary's output spliced
//! in at the hook it writes, and with that hook's activation zeroed (docs/metrics.md). For a
//! transcoder the output replaces what it stands for (the MLP's output, computed from the MLP's
//! input of the same run), and zeroing it ablates the MLP.

use burn::tensor::Tensor;
use prism_core::{
    Activation, Dictionary, Edit, HookPoint, Hooks, HostTensor, Intervention, PrismError, Result,
};
use prism_models::{Model, PositionScores, TokenBatch};

use crate::reconstruction::ReconstructionStats;

/// Where a dictionary reads and what it writes: one hook for a sparse autoencoder, an input and
/// an output hook for a transcoder.
///
/// ```
/// use prism_core::HookPoint;
/// use prism_stats::Placement;
/// let sae: Placement = HookPoint::MlpOut(3).into();
/// assert_eq!(sae.reads, sae.writes);
/// let t = Placement::transcoding(HookPoint::MlpIn(3), HookPoint::MlpOut(3)).unwrap();
/// assert_eq!(t.to_string(), "blocks.3.mlp.hook_in → blocks.3.hook_mlp_out");
/// // Writing before it reads cannot be spliced into one forward pass.
/// assert!(Placement::transcoding(HookPoint::MlpOut(3), HookPoint::MlpIn(3)).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The hook it reads.
    pub reads: HookPoint,
    /// The hook whose activation its output replaces.
    pub writes: HookPoint,
}

impl Placement {
    /// A transcoder from `reads` to `writes`, which must come later in the forward pass (its
    /// output is spliced in from the same run's input).
    pub fn transcoding(reads: HookPoint, writes: HookPoint) -> Result<Placement> {
        if writes.forward_position() <= reads.forward_position() {
            return Err(PrismError::InvalidInput(format!(
                "a transcoder must write a hook after the one it reads: {writes} does not come \
                 after {reads}"
            )));
        }
        Ok(Placement { reads, writes })
    }
}

impl From<HookPoint> for Placement {
    fn from(hook: HookPoint) -> Placement {
        Placement {
            reads: hook,
            writes: hook,
        }
    }
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.reads == self.writes {
            write!(f, "{}", self.reads)
        } else {
            write!(f, "{} → {}", self.reads, self.writes)
        }
    }
}

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

/// The downstream metrics, under docs/metrics.md's names.
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

/// Adds one dictionary's losses and KLs over the batch to `down`: `run` is its spliced run among
/// the scored runs (0 the clean run, 1 the zeroed one), positions added in order (the same
/// result whatever the threads that scored them).
fn add_downstream(down: &mut DownstreamStats, scores: &[PositionScores], run: usize) {
    for p in scores {
        down.positions += 1.0;
        if let Some(nll) = &p.nll {
            down.targets += 1.0;
            down.loss_original += nll[0];
            down.loss_zero += nll[1];
            down.loss_reconstructed += nll[run];
        }
        down.kl_ablation += p.kl[0];
        down.kl_sae += p.kl[run - 1];
    }
}

/// Evaluates one batch for every dictionary of `dicts` (one `(recon, down)` pair of sums
/// each): reconstruction metrics on the real (unpadded) positions — the dictionary's output for
/// the activation at `at.reads` against the activation at `at.writes` — and the runs for loss
/// recovered and KL — the clean run, then the run with `at.writes` zeroed and one run per
/// dictionary with its output spliced in there, from the block of `at.reads` on
/// ([`prism_models::Transformer::capture_only_from`]), each to the final norm, and all of them
/// scored in one blocked unembedding ([`prism_models::Transformer::score_runs`]); the clean and
/// zeroed runs are shared by all the dictionaries. Both hooks must carry one vector per token.
pub fn evaluate_batch(
    model: &Model,
    dicts: &[&dyn Dictionary],
    at: Placement,
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
    // from the residual stream entering the hook's block. Every run stops at the final norm;
    // `score_runs` unembeds them a vocabulary block at a time.
    let transformer = &model.transformer;
    let Placement { reads, writes } = at;
    let resume_at = reads.layer();
    let mut capture = Hooks::new()
        .capture(reads)
        .capture(writes)
        .capture(HookPoint::LnFinal);
    if let Some(l) = resume_at {
        capture = capture.capture(HookPoint::ResidPre(l));
    }
    let clean = transformer.capture_only(batch, &capture)?;
    let resume = match resume_at {
        Some(l) => Some((
            l,
            clean.captures[&HookPoint::ResidPre(l)]
                .clone()
                .into_rank3()?,
        )),
        None => None,
    };
    let finish = |hooks: Hooks| -> Result<Tensor<3>> {
        let hooks = hooks.capture(HookPoint::LnFinal);
        let mut out = match &resume {
            Some((l, resid)) => transformer.capture_only_from(batch, *l, resid.clone(), &hooks)?,
            None => transformer.capture_only(batch, &hooks)?,
        };
        out.take(HookPoint::LnFinal)?.into_rank3()
    };
    let original = clean.captures[&HookPoint::LnFinal].clone().into_rank3()?;
    let per_token = |hook: HookPoint| -> Result<Tensor<3>> {
        clean.captures[&hook]
            .clone()
            .into_rank3()
            .map_err(|_| PrismError::Hook {
                hook: hook.to_string(),
                message: "dictionaries are evaluated on hooks with one vector per token".into(),
            })
    };
    let (act, target) = (per_token(reads)?, per_token(writes)?);
    let [b, s, d] = act.dims();
    let d_out = target.dims()[2];
    if let Some(dict) = dicts
        .iter()
        .find(|dict| dict.d_in() != d || dict.d_out() != d_out)
    {
        return Err(PrismError::Shape(format!(
            "the dictionary maps width {} to {}; {at} has widths {d} and {d_out}",
            dict.d_in(),
            dict.d_out()
        )));
    }
    let x = act.reshape([b * s, d]);
    let y = target.reshape([b * s, d_out]);
    // Reconstruction metrics on real positions only.
    let real: Vec<usize> = batch.real_positions().map(|(i, t)| i * s + t).collect();
    let keep = |t: HostTensor| -> Result<HostTensor> {
        let w = t.shape[1];
        let mut data = Vec::with_capacity(real.len() * w);
        for &r in &real {
            data.extend_from_slice(&t.data[r * w..(r + 1) * w]);
        }
        HostTensor::new(vec![real.len(), w], data)
    };
    let y_real = keep(HostTensor::from_burn(y)?)?;
    let zeroed = finish(Hooks::new().intervene(Intervention::new(writes, Edit::Zero)))?;
    let mut finals = vec![original, zeroed];
    for (dict, (recon, _)) in dicts.iter().zip(stats.iter_mut()) {
        let codes = dict.encode(x.clone());
        let y_hat = dict.output(x.clone(), codes.clone());
        recon.add(
            &y_real,
            &keep(HostTensor::from_burn(y_hat.clone())?)?,
            &keep(HostTensor::from_burn(codes)?)?,
        )?;
        finals.push(finish(Hooks::new().intervene(Intervention::new(
            writes,
            Edit::Replace(Activation::Rank3(y_hat.reshape([b, s, d_out]))),
        )))?);
    }
    let scores = transformer.score_runs(batch, &finals)?;
    for (run, (_, down)) in (2..).zip(stats.iter_mut()) {
        add_downstream(down, &scores, run);
    }
    Ok(())
}
